// esbuild entry of the lockbox crypto bundle (build.py writes it to vendor/crypto.<hash>.mjs).
//
// One ES module with every JS/WASM primitive the browser crypto backend
// (pycore/lockbox/crypto/browser.py) needs, plus a thin synchronous glue API.
// Usage (a worker, or the Pyodide test runner under Node):
//
//     const mod = await import("./vendor/crypto.<hash>.mjs");
//     globalThis.lockboxCrypto = await mod.init();   // WASM instantiated once, here
//
// After init() every glue function is synchronous, so Python calls it like a
// plain function through `import js; js.lockboxCrypto.<name>(...)`.
//
// Byte arguments may be JS Uint8Arrays or Pyodide PyProxies of Python buffers
// (bytes, bytearray, memoryview): Python bytes passed to a JS function arrive
// as a PyProxy, and `getBuffer()` gives a zero-copy view of Pyodide's heap, so
// no Python->JS copy is made before libsodium / hash-wasm copy the data into
// their own WASM memory. Byte results are fresh Uint8Arrays.
//
// Libraries (pinned in webapp/package-lock.json):
//   libsodium-wrappers-sumo: ChaCha20-Poly1305 IETF, Argon2id (crypto_pwhash; only in -sumo)
//   hash-wasm argon2id:      Argon2id for parameters libsodium refuses (salt != 16 bytes,
//                            p > 1, tag < 16 bytes; lockbox archives never use them). It is
//                            async (a Promise), so Python awaits it with JSPI (run_sync)
//   @noble/hashes argon2id:  the same in pure synchronous JS, for when JSPI is not available
//   @noble/post-quantum:     ML-KEM-1024 (FIPS 203)
//   hash-wasm createBLAKE3:  BLAKE3 (WASM, ~25x faster than pure JS)
//   libsodium crypto_sign_verify_detached: Ed25519 verification (signed .sync containers)
//   age-encryption:          age passphrase (scrypt) decryption (.sync vault payloads);
//                            async, so Python awaits it with JSPI (run_sync); without JSPI
//                            Python decrypts from libsodium's scrypt and ChaCha20-Poly1305
//   zstddec:                 zstd decoding (WASM, the reference decoder) of authenticated
//                            frame plaintext in frame batches (below)
//
// Frame batches (frameBatch): many sealed frames opened at once -- authenticated with
// ChaCha20-Poly1305 and, when the frame plaintext is the common case, decoded (zstd) -- by a
// small pool of module Workers started from this very bundle (new Worker(import.meta.url,
// {type: "module", name: POOL_WORKER_NAME})) when Workers exist, else in this thread. The
// batch's results are handed over only when every frame of it is done, so Python gets no
// plaintext of a frame whose tag did not verify.

import sodium from "libsodium-wrappers-sumo";
import { argon2id as nobleArgon2id } from "@noble/hashes/argon2.js";
import { ml_kem1024 } from "@noble/post-quantum/ml-kem.js";
import { argon2id as hashWasmArgon2id, createBLAKE3 } from "hash-wasm";
import { Decrypter as AgeDecrypter, Encrypter as AgeEncrypter } from "age-encryption";
import { ZSTDDecoder } from "zstddec";

// 2: ed25519Verify, ageDecryptPassphrase, scrypt; 3: frameBatch, poolInfo, configurePool
export const API_VERSION = 3;
export const POOL_WORKER_NAME = "lockbox-crypto-pool";

let blake3Wasm = null; // the one hash-wasm BLAKE3 instance (WASM state), shared by all hashers
let blake3Owner = null; // the Blake3 whose state is currently loaded in blake3Wasm

/** Run fn(Uint8Array) on a JS byte array or a zero-copy view of a Python buffer. */
function withBytes(value, fn) {
  if (value instanceof Uint8Array) return fn(value);
  if (value === undefined || value === null) return fn(new Uint8Array(0));
  if (typeof value.getBuffer === "function") {
    const buf = value.getBuffer("u8");
    try {
      if (!buf.c_contiguous) return fn(Uint8Array.from(buf.data));
      return fn(buf.data);
    } finally {
      buf.release();
    }
  }
  if (ArrayBuffer.isView(value)) {
    return fn(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
  }
  if (value instanceof ArrayBuffer) return fn(new Uint8Array(value));
  throw new TypeError("expected bytes (Uint8Array or a Python buffer)");
}

/** A copy (for inputs a library may keep or that must outlive a PyProxy call). */
function copyBytes(value) {
  return withBytes(value, (b) => b.slice());
}

// -- ChaCha20-Poly1305 (RFC 8439, IETF: 12-byte nonce, tag appended) -------------------------

/** Views of several byte arguments at once (see withBytes), then fn(...views). */
function withAll(values, fn, views = []) {
  if (views.length === values.length) return fn(...views);
  return withBytes(values[views.length], (v) => withAll(values, fn, [...views, v]));
}

function aeadSeal(key, nonce, plaintext, aad) {
  return withAll([key, nonce, plaintext, aad], (k, n, m, a) =>
    sodium.crypto_aead_chacha20poly1305_ietf_encrypt(m, a.length ? a : null, null, n, k));
}

/**
 * The plaintext, or undefined when authentication fails (wrong key, nonce, AAD or bytes).
 * (undefined, not null: Pyodide turns undefined into None but null into a JsNull object.)
 */
function aeadOpen(key, nonce, sealed, aad) {
  return withAll([key, nonce, sealed, aad], (k, n, c, a) => {
    if (c.length < sodium.crypto_aead_chacha20poly1305_ietf_ABYTES) return undefined;
    try {
      return sodium.crypto_aead_chacha20poly1305_ietf_decrypt(
        null, c, a.length ? a : null, n, k);
    } catch (_err) {
      return undefined;
    }
  });
}

// -- Argon2id v0x13 ---------------------------------------------------------------------------

// libsodium.js reports its *_MAX limits as signed 32-bit numbers (OPSLIMIT_MAX = -1,
// MEMLIMIT_MAX = -2**31): read them back as unsigned.
const u32 = (value) => value >>> 0;

/** Which implementation argon2id() uses for these parameters ("libsodium" or "noble"). */
function argon2idEngine(saltLength, timeCost, memoryKib, parallelism, length) {
  const memBytes = memoryKib * 1024;
  if (parallelism === 1 && saltLength === sodium.crypto_pwhash_SALTBYTES
      && length >= sodium.crypto_pwhash_BYTES_MIN && length <= u32(sodium.crypto_pwhash_BYTES_MAX)
      && timeCost >= sodium.crypto_pwhash_OPSLIMIT_MIN
      && timeCost <= u32(sodium.crypto_pwhash_OPSLIMIT_MAX)
      && memBytes >= sodium.crypto_pwhash_MEMLIMIT_MIN
      && memBytes <= u32(sodium.crypto_pwhash_MEMLIMIT_MAX)) {
    return "libsodium";
  }
  return "noble";
}

/**
 * Raw Argon2id tag, synchronously: libsodium when argon2idEngine() says so, otherwise
 * noble (pure JS, 4-5x slower). Parameters are validated by the Python caller first.
 */
function argon2id(password, salt, timeCost, memoryKib, parallelism, length) {
  const pw = copyBytes(password);
  const s = copyBytes(salt);
  try {
    if (argon2idEngine(s.length, timeCost, memoryKib, parallelism, length) === "libsodium") {
      return sodium.crypto_pwhash(length, pw, s, timeCost, memoryKib * 1024,
        sodium.crypto_pwhash_ALG_ARGON2ID13);
    }
    return nobleArgon2id(pw, s, {
      t: timeCost, m: memoryKib, p: parallelism, dkLen: length,
      maxmem: 2 ** 32 - 1,
    });
  } finally {
    pw.fill(0);
  }
}

/** Raw Argon2id tag with hash-wasm (any parameters): a Promise of a Uint8Array. */
async function argon2idAsync(password, salt, timeCost, memoryKib, parallelism, length) {
  const pw = copyBytes(password);
  try {
    return await hashWasmArgon2id({
      password: pw, salt: copyBytes(salt), iterations: timeCost, memorySize: memoryKib,
      parallelism, hashLength: length, outputType: "binary",
    });
  } finally {
    pw.fill(0);
  }
}

// -- ML-KEM-1024 (FIPS 203) ------------------------------------------------------------------

function mlkemPublicKey(seed) {
  return withBytes(seed, (s) => ml_kem1024.keygen(s.slice()).publicKey);
}

/** {sharedSecret, cipherText}, or undefined if the key fails the FIPS 203 §7.2 modulus check. */
function mlkemEncapsulate(publicKey) {
  const ek = copyBytes(publicKey);
  try {
    const { cipherText, sharedSecret } = ml_kem1024.encapsulate(ek);
    return { cipherText, sharedSecret: sharedSecret.slice() };
  } catch (err) {
    if (/modulus/i.test(String(err && err.message))) return undefined;
    throw err;
  }
}

function mlkemDecapsulate(seed, cipherText) {
  const { secretKey } = withBytes(seed, (s) => ml_kem1024.keygen(s.slice()));
  try {
    return ml_kem1024.decapsulate(copyBytes(cipherText), secretKey).slice();
  } finally {
    secretKey.fill(0);
  }
}

// -- BLAKE3 -----------------------------------------------------------------------------------

function claimBlake3(hasher) {
  if (blake3Owner === hasher) return;
  if (blake3Owner !== null) blake3Owner.state = blake3Wasm.save();
  if (hasher.state === null) blake3Wasm.init();
  else blake3Wasm.load(hasher.state);
  blake3Owner = hasher;
}

/**
 * An incremental BLAKE3 hash. All hashers share one WASM instance: the active
 * one keeps its state inside WASM, the others hold a saved copy (~2 KB), so a
 * sequence of updates on one hasher costs no state copies at all.
 */
class Blake3 {
  constructor() {
    this.state = null; // null: fresh (nothing hashed yet)
  }

  update(data) {
    claimBlake3(this);
    withBytes(data, (d) => blake3Wasm.update(d));
  }

  /** The 32-byte hash so far; the hasher stays usable (more updates may follow). */
  digest() {
    claimBlake3(this);
    this.state = blake3Wasm.save();
    const out = blake3Wasm.digest("binary");
    blake3Owner = null;
    return out;
  }
}

function blake3() {
  return new Blake3();
}

// -- frame batches: authenticate + decrypt + decode many frames, in a worker pool ------------

// A frame's plaintext (docs/FORMAT.md §5): codec byte (0 raw, 1 zstd), uvarint plain size,
// body. decodeFramePlain decodes only the common, well-formed case, with conditions under
// which Python's decode_plain (lockbox.formats.lbox.frames) gives exactly the same bytes:
// a minimal varint <= limit; raw: the body's length is the size; zstd: size > 0, exactly
// one frame spanning the body (its blocks walked), no dictionary, its declared content size
// equal to size, decoding to exactly size bytes. Anything else comes back undecoded
// (FRAME_PLAIN) and Python decodes it -- or raises the error it always raised.
const FRAME_FAILED = 0; // the tag did not verify: no plaintext
const FRAME_PAYLOAD = 1; // authenticated and decoded: the frame's payload
const FRAME_PLAIN = 2; // authenticated, not decoded here: the whole frame plaintext
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

let zstdDecoder = null;

/** [value, next position] of a minimal uvarint of at most 5 bytes at pos, or null. */
function readUvarint(b, pos) {
  let value = 0;
  for (let i = 0; i < 5; i++) {
    if (pos + i >= b.length) return null;
    const byte = b[pos + i];
    value += (byte & 0x7f) * 2 ** (7 * i);
    if (!(byte & 0x80)) {
      if (byte === 0 && i > 0) return null; // not minimal: Python refuses it
      return [value, pos + i + 1];
    }
  }
  return null;
}

/** Whether body is exactly one zstd frame without dictionary, declaring size bytes. */
function oneZstdFrame(body, size) {
  const n = body.length;
  if (n < 6) return false;
  for (let i = 0; i < 4; i++) if (body[i] !== ZSTD_MAGIC[i]) return false;
  const descriptor = body[4];
  if (descriptor & 0x1b) return false; // unused/reserved bits, dictionary id
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor & 0x20) !== 0;
  const fcsSize = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag];
  if (fcsSize === 0) return false; // no declared content size
  let pos = 5 + (singleSegment ? 0 : 1);
  if (pos + fcsSize > n) return false;
  let declared = 0;
  for (let i = fcsSize - 1; i >= 0; i--) declared = declared * 256 + body[pos + i];
  if (fcsSize === 2) declared += 256;
  if (declared !== size) return false;
  pos += fcsSize;
  for (;;) {
    if (pos + 3 > n) return false;
    const bh = body[pos] | (body[pos + 1] << 8) | (body[pos + 2] << 16);
    const type = (bh >> 1) & 3;
    if (type === 3) return false;
    pos += 3 + (type === 1 ? 1 : bh >>> 3);
    if (pos > n) return false;
    if (bh & 1) break;
  }
  if (descriptor & 0x04) pos += 4; // content checksum
  return pos === n;
}

/** The payload of an authenticated frame plaintext, or null (left to Python). */
function decodeFramePlain(plain, limit) {
  if (plain.length < 2) return null;
  const codec = plain[0];
  const varint = readUvarint(plain, 1);
  if (varint === null) return null;
  const [size, start] = varint;
  if (size > limit) return null;
  const body = plain.subarray(start);
  if (codec === 0) return body.length === size ? body : null;
  if (codec !== 1 || size === 0 || zstdDecoder === null || !oneZstdFrame(body, size)) {
    return null;
  }
  try {
    const out = zstdDecoder.decode(body, size);
    return out.length === size ? out : null;
  } catch (_err) {
    return null;
  }
}

/** [status, bytes] of one sealed frame (see FRAME_*). */
function openFrame(key, nonce, sealed, aad, limit) {
  if (sealed.length < sodium.crypto_aead_chacha20poly1305_ietf_ABYTES) return [FRAME_FAILED, null];
  let plain;
  try {
    plain = sodium.crypto_aead_chacha20poly1305_ietf_decrypt(
      null, sealed, aad.length ? aad : null, nonce, key);
  } catch (_err) {
    return [FRAME_FAILED, null];
  }
  const payload = decodeFramePlain(plain, limit);
  return payload === null ? [FRAME_PLAIN, plain] : [FRAME_PAYLOAD, payload];
}

/** The pool: module Workers running this bundle, each taking up to 2 frames at a time. */
class CryptoPool {
  constructor(size, factory) {
    this.size = size;
    this.factory = factory;
    this.workers = null;
    this.nextId = 1;
    this.waiting = []; // jobs not yet sent: {msg, transfer, resolve, reject}
    this.broken = null; // why the pool cannot be used (a worker failed to start or died)
    this.frames = 0; // frames opened by the pool so far
  }

  start() {
    this.workers = [];
    for (let i = 0; i < this.size; i++) {
      const worker = this.factory();
      const slot = { worker, inflight: new Map() };
      const onMessage = (event) => this.answer(slot, event.data);
      const onError = (event) => this.fail(`a crypto worker failed: ${event && event.message
        ? event.message : event}`);
      if (typeof worker.addEventListener === "function") {
        worker.addEventListener("message", onMessage);
        worker.addEventListener("error", onError);
      } else {
        worker.onmessage = onMessage;
        worker.onerror = onError;
      }
      this.workers.push(slot);
    }
  }

  /** A Promise of [status, bytes] for one frame. */
  open(job, limit) {
    if (this.broken !== null) return Promise.reject(new Error(this.broken));
    if (this.workers === null) this.start();
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const msg = { id, key: job.key, nonce: job.nonce, sealed: job.sealed, aad: job.aad, limit };
      this.waiting.push({ id, msg, transfer: [job.sealed.buffer], resolve, reject });
      this.pump();
    });
  }

  pump() {
    while (this.waiting.length) {
      let best = null;
      for (const slot of this.workers) {
        if (slot.inflight.size < 2 && (best === null || slot.inflight.size < best.inflight.size)) {
          best = slot;
        }
      }
      if (best === null) return;
      const job = this.waiting.shift();
      best.inflight.set(job.id, job);
      try {
        best.worker.postMessage(job.msg, job.transfer);
      } catch (err) {
        this.fail(`a crypto worker refused a frame: ${err && err.message ? err.message : err}`);
        return;
      }
    }
  }

  answer(slot, data) {
    const job = slot.inflight.get(data && data.id);
    if (!job) return;
    slot.inflight.delete(data.id);
    if (data.error !== undefined) {
      job.reject(new Error(data.error));
    } else {
      this.frames++;
      job.resolve([data.status, data.bytes]);
    }
    this.pump();
  }

  fail(reason) {
    this.broken = reason;
    for (const slot of this.workers || []) {
      for (const job of slot.inflight.values()) job.reject(new Error(reason));
      slot.inflight.clear();
      try {
        slot.worker.terminate();
      } catch (_err) { /* already gone */ }
    }
    for (const job of this.waiting.splice(0)) job.reject(new Error(reason));
  }
}

let pool = null; // a CryptoPool, once configured (configurePool, or the default on first use)
let poolConfigured = false;

/** The default: Workers from this bundle's URL, when this runtime has module Workers. */
function defaultPoolFactory() {
  if (typeof Worker !== "function" || typeof import.meta.url !== "string"
      || !/^https?:/.test(import.meta.url)) {
    return null; // Node (the test runner), or a bundle not loaded from a web origin
  }
  const url = import.meta.url;
  return () => new Worker(url, { type: "module", name: POOL_WORKER_NAME });
}

/**
 * One Worker more than the cores, at most 4: the thread running Python (checks, BLAKE3,
 * copies) needs a share too, and measured on 2 cores (browser_read_bench.py, alternating)
 * 3 Workers read a 256 MiB file at 197-200 MiB/s where 2 gave 149-190 and 1 gave 125-183.
 */
function defaultPoolSize() {
  const cores = (globalThis.navigator && globalThis.navigator.hardwareConcurrency) || 2;
  return Math.max(2, Math.min(4, cores + 1));
}

/**
 * Set up the pool: {size, factory} (factory() returns a Worker-like object: postMessage,
 * addEventListener or onmessage/onerror, terminate), {size: 0} for none (in-thread only),
 * or {} for the default. Tests use it to run the pool's protocol over MessageChannels.
 */
function configurePool(options) {
  const opts = options || {};
  if (pool !== null && pool.workers !== null) pool.fail("the pool was reconfigured");
  const size = opts.size === undefined ? defaultPoolSize() : Number(opts.size);
  const factory = opts.factory || defaultPoolFactory();
  pool = size > 0 && factory ? new CryptoPool(size, factory) : null;
  poolConfigured = true;
  return poolInfo();
}

function currentPool() {
  if (!poolConfigured) configurePool({});
  return pool !== null && pool.broken === null ? pool : null;
}

/**
 * {size, started, broken, frames}: the pool as it is (size 0: frames are opened in this
 * thread; frames: how many it opened).
 */
function poolInfo() {
  const p = poolConfigured ? pool : (defaultPoolFactory() ? { size: defaultPoolSize() } : null);
  return { size: p ? p.size : 0, started: Boolean(p && p.workers),
    broken: p ? p.broken || null : null, frames: p ? p.frames || 0 : 0 };
}

/**
 * A batch of sealed frames to open (see FRAME_*). add() copies its arguments (PyProxy
 * buffers do not outlive the call); run() opens them in the pool when there is one and
 * more than one frame, else here; status(i)/bytes(i) read the results once it resolved.
 * runHere() is the same, synchronously, always in this thread.
 */
class FrameBatch {
  constructor(limit) {
    this.limit = limit;
    this.jobs = [];
    this.results = null;
    this.where = null;
  }

  add(key, nonce, sealed, aad) {
    this.jobs.push({ key: copyBytes(key), nonce: copyBytes(nonce), sealed: copyBytes(sealed),
      aad: copyBytes(aad) });
  }

  get length() {
    return this.jobs.length;
  }

  runHere() {
    this.results = this.jobs.map((j) => openFrame(j.key, j.nonce, j.sealed, j.aad, this.limit));
    this.jobs = [];
    this.where = "thread";
    return this.where;
  }

  /**
   * A Promise of where the frames were opened: "pool", "thread", or "broken" (the pool
   * failed: a worker did not load or died; the frames went to it and are gone, so the
   * caller adds them to a new batch and uses runHere(); the pool is not used again).
   */
  async run() {
    const p = currentPool();
    if (p === null || this.jobs.length < 2) return this.runHere();
    try {
      this.results = await Promise.all(this.jobs.map((j) => p.open(j, this.limit)));
    } catch (_err) {
      this.jobs = [];
      this.where = "broken";
      return this.where;
    }
    this.jobs = [];
    this.where = "pool";
    return this.where;
  }

  status(i) {
    return this.results[i][0];
  }

  bytes(i) {
    return this.results[i][1];
  }
}

function frameBatch(limit) {
  return new FrameBatch(limit);
}

// -- the pool worker's side: this same bundle, started with name POOL_WORKER_NAME -----------

/** Answer {id, key, nonce, sealed, aad, limit} with {id, status, bytes} (bytes transferred). */
async function poolWorkerMessage(ready, post, event) {
  const { id, key, nonce, sealed, aad, limit } = event.data || {};
  try {
    await ready;
    const [status, bytes] = openFrame(key, nonce, sealed, aad, limit);
    if (bytes === null) post({ id, status, bytes }, []);
    else post({ id, status, bytes }, [bytes.buffer]);
  } catch (err) {
    post({ id, error: String(err && err.message ? err.message : err) }, []);
  }
}

/** Make a MessagePort-like endpoint answer pool requests (the worker's self, or a test's port). */
function servePool(endpoint) {
  const ready = initPrimitives();
  const post = (msg, transfer) => endpoint.postMessage(msg, transfer);
  endpoint.onmessage = (event) => poolWorkerMessage(ready, post, event);
}

/**
 * A Worker-like object answered in this thread over a MessageChannel: the pool's protocol
 * and transfers without a thread (for tests: Node has no Web Workers). configurePool({size,
 * factory: inThreadWorker}).
 */
function inThreadWorker() {
  // (Under Node the ports keep the process alive until terminate(): configurePool({size: 0})
  // after use. Unreferenced ports would let Node exit while Python waits for an answer.)
  const channel = new MessageChannel();
  servePool(channel.port2);
  const port = channel.port1;
  return {
    postMessage: (msg, transfer) => port.postMessage(msg, transfer),
    addEventListener: (type, fn) => {
      if (type === "message") port.onmessage = fn;
    },
    terminate: () => {
      port.close();
      channel.port2.close();
    },
  };
}

let zstdInit = null;

/** Instantiate zstddec once (a Promise; until it resolves frames are left to Python). */
function startZstd() {
  if (zstdInit === null) {
    const decoder = new ZSTDDecoder();
    zstdInit = decoder.init().then(() => { zstdDecoder = decoder; }, () => {});
  }
  return zstdInit;
}

async function initPrimitives() {
  await sodium.ready;
  await startZstd();
}

if (typeof WorkerGlobalScope !== "undefined" && globalThis instanceof WorkerGlobalScope
    && globalThis.name === POOL_WORKER_NAME) {
  servePool(globalThis);
}

// -- Ed25519 (RFC 8032) ----------------------------------------------------------------------

/** Whether signature (64 bytes) verifies for message under publicKey (32 bytes). */
function ed25519Verify(publicKey, message, signature) {
  return withAll([publicKey, message, signature], (pk, m, sig) => {
    try {
      return sodium.crypto_sign_verify_detached(sig, m, pk) === true;
    } catch (_err) {
      return false;
    }
  });
}

// -- age (age-encryption.org/v1), passphrase (scrypt) files ----------------------------------

// typage's error messages -> the kinds browser.py maps to its error classes; anything else
// (a STREAM chunk that fails authentication, a cut payload) is "integrity".
const AGE_ERROR_KINDS = [
  [/no identity matched/i, "wrongkey"],
  [/invalid header HMAC/i, "integrity"],
  [/work factor is too high/i, "limit"],
  [/invalid (scrypt )?stanza|invalid version|invalid header|non-ASCII|not the only one/i,
    "format"],
];

/**
 * A Promise of {kind: "ok", plaintext} or {kind: "wrongkey"|"integrity"|"format"|"limit",
 * message}. The ciphertext is copied before the first await (a PyProxy argument does not
 * outlive the synchronous call).
 */
async function ageDecryptPassphrase(ciphertext, passphrase) {
  const data = copyBytes(ciphertext);
  const decrypter = new AgeDecrypter();
  decrypter.addPassphrase(String(passphrase));
  try {
    const plaintext = await decrypter.decrypt(data);
    return { kind: "ok", plaintext, message: "" };
  } catch (err) {
    const message = String(err && err.message ? err.message : err);
    const match = AGE_ERROR_KINDS.find(([pattern]) => pattern.test(message));
    return { kind: match ? match[1] : "integrity", message };
  }
}

/**
 * scrypt(N = 2^logN, r = 8, p = 1), synchronously (libsodium's low-level scrypt, WASM): the
 * key derivation of age passphrase files when age-encryption cannot be awaited (no JSPI).
 */
function scrypt(password, salt, logN, length) {
  return withAll([password, salt], (pw, s) =>
    sodium.crypto_pwhash_scryptsalsa208sha256_ll(pw, s, 2 ** logN, 8, 1, length));
}

/** An age passphrase file (for the viewer and the tests): a Promise of a Uint8Array. */
async function ageEncryptPassphrase(plaintext, passphrase, logN) {
  const data = copyBytes(plaintext);
  const encrypter = new AgeEncrypter();
  encrypter.setPassphrase(String(passphrase));
  encrypter.setScryptWorkFactor(logN);
  return await encrypter.encrypt(data);
}

// -- randomness -------------------------------------------------------------------------------

const RANDOM_CHUNK = 65536; // getRandomValues refuses more per call

function randomBytes(size) {
  const out = new Uint8Array(size);
  for (let pos = 0; pos < size; pos += RANDOM_CHUNK) {
    globalThis.crypto.getRandomValues(out.subarray(pos, Math.min(pos + RANDOM_CHUNK, size)));
  }
  return out;
}

// -- entry point ------------------------------------------------------------------------------

let api = null;

/** Instantiate the WASM modules (once) and return the glue API to put on globalThis. */
export async function init() {
  if (api !== null) return api;
  await sodium.ready;
  startZstd(); // not awaited: the viewer's start-up does not wait for it
  blake3Wasm = await createBLAKE3();
  api = Object.freeze({
    API_VERSION,
    versions: Object.freeze({
      libsodium: sodium.SODIUM_VERSION_STRING,
    }),
    aeadSeal,
    aeadOpen,
    argon2id,
    argon2idAsync,
    argon2idEngine,
    mlkemPublicKey,
    mlkemEncapsulate,
    mlkemDecapsulate,
    blake3,
    randomBytes,
    ed25519Verify,
    ageDecryptPassphrase,
    ageEncryptPassphrase,
    scrypt,
    frameBatch,
    FRAME_FAILED,
    FRAME_PAYLOAD,
    FRAME_PLAIN,
    configurePool,
    poolInfo,
    servePool,
    inThreadWorker,
    // The libraries themselves, for the viewer and for cross-checks in tests.
    libs: Object.freeze({ sodium, ml_kem1024, nobleArgon2id, hashWasmArgon2id, createBLAKE3 }),
  });
  return api;
}
