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

import sodium from "libsodium-wrappers-sumo";
import { argon2id as nobleArgon2id } from "@noble/hashes/argon2.js";
import { ml_kem1024 } from "@noble/post-quantum/ml-kem.js";
import { argon2id as hashWasmArgon2id, createBLAKE3 } from "hash-wasm";
import { Decrypter as AgeDecrypter, Encrypter as AgeEncrypter } from "age-encryption";

export const API_VERSION = 2; // 2: ed25519Verify, ageDecryptPassphrase, scrypt

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
    // The libraries themselves, for the viewer and for cross-checks in tests.
    libs: Object.freeze({ sodium, ml_kem1024, nobleArgon2id, hashWasmArgon2id, createBLAKE3 }),
  });
  return api;
}
