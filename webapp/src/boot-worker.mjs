// lockbox boot worker: a module Web Worker that starts Python (Pyodide) with lockbox.
//
// Start it from a page with the name the site's manifest gives:
//
//     const manifest = await (await fetch("manifest.json", {cache: "no-cache"})).json();
//     const worker = new Worker(manifest.entries["boot-worker"], {type: "module"});
//
// Everything is loaded from this site (no CDN): the worker reads manifest.json next to
// itself, then asks for everything at once: the Pyodide runtime (manifest.entries.pyodide
// is its indexURL), the wheels (manifest.python_wheels, then lockbox's: written into
// manifest.wheel_dir and put on sys.path as zips, nothing unpacked), the crypto bundle
// (its init() result set on globalThis.lockboxCrypto, what
// lockbox.crypto.browser.BrowserCryptoBackend uses) and the memory snapshot
// (manifest.snapshot, made by build.py: Python with lockbox's viewer modules imported).
// Python is restored from the snapshot when it checks out (made from this runtime folder
// and these wheels, its SHA-256 and size as in the manifest; Pyodide checks its BUILD_ID);
// anything else (no snapshot, a failed check or restore) falls back to a normal start,
// and "ready" says which (boot.snapshot, boot.fallback).
//
// Message protocol (page -> worker -> page); every message is a plain object:
//
//   worker -> page  {type: "progress", stage, detail}   while starting (stage: "manifest",
//                                                        "pyodide", ["snapshot-failed"],
//                                                        "crypto", "wheel", "ready")
//   worker -> page  {type: "ready", versions, seconds,   once Python and lockbox are ready;
//                    boot: {snapshot, fallback?, steps}}  steps: when each start-up step
//                                                        ended (s since the worker started)
//   worker -> page  {type: "failed", error}              if start-up failed (nothing else follows)
//   page -> worker  {id, code}                           run Python `code` (async allowed:
//                                                        top-level await works); requests
//                                                        sent before "ready" wait for it
//   worker -> page  {id, result}                         the value of the last expression,
//                                                        converted with toJs (dicts -> Objects);
//                                                        return JSON strings for anything rich
//   worker -> page  {id, error}                          the Python traceback (or JS error) text
//
// The viewer's calls (lockbox.viewer.session.Session, one per worker; they run concurrently,
// interleaving at their awaits, and never wait for the {id, code} queue):
//
//   page -> worker  {id, call, args, blob?}              Session.call(call, JSON(args), blob):
//                                                        blob is a File/Blob (open_blob)
//   worker -> page  {id, result}                         result = {ok: value} | {error: {kind,
//                                                        title, message, detail, path?}}
//   page -> worker  {id, binary, args}                   Session.call_binary(binary, JSON(args))
//   worker -> page  {id, bytes}                          a Uint8Array (its buffer transferred)
//   worker -> page  {id, result: {error}}                on failure
//
// A snapdir snapshot (Session.open_snap, or open_url("STORE_URL#id=ID")) is read from its
// store by synchronous XHR in this worker (lockbox.formats.snap.store.HttpStore): a call
// that fetches an object keeps the worker busy until its GET has ended.
//
// Requests run one at a time, in arrival order (Python is single-threaded; a queue keeps
// one request's awaits from interleaving with another's globals).
//
// Extending it (the viewer): add message types next to {id, code} in onMessage() below,
// or keep this file and run Python helper modules through {id, code}. The crypto bundle
// is on globalThis before Python is restored (the snapshot may name it) and before "ready".

const started = performance.now();
const post = (msg) => self.postMessage(msg);
const progress = (stage, detail = "") => post({ type: "progress", stage, detail });
// When each step of the start-up ended, in seconds since the worker started (sent with
// "ready": where the time goes).
const steps = {};
const step = (name) => { steps[name] = +((performance.now() - started) / 1000).toFixed(3); };

async function fetchManifest() {
  const url = new URL("manifest.json", import.meta.url);
  const resp = await fetch(url, { cache: "no-cache" });
  if (!resp.ok) throw new Error(`GET ${url}: HTTP ${resp.status}`);
  return resp.json();
}

async function fetchBytes(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`GET ${url}: HTTP ${resp.status}`);
  return new Uint8Array(await resp.arrayBuffer());
}

// Pyodide hangs forever, without an error, when its .wasm is not served as
// application/wasm: a HEAD request checks the type (beside the start-up, not before it)
// and the start fails with the reason.
async function checkWasmType(wasmUrl) {
  const head = await fetch(wasmUrl, { method: "HEAD" });
  const wasmType = (head.headers.get("content-type") || "").split(";")[0].trim();
  if (!head.ok || wasmType !== "application/wasm") {
    throw new Error(head.ok
      ? `the server sends ${wasmUrl} as "${wasmType || "no type"}"; WebAssembly needs ` +
        "Content-Type: application/wasm (configure the web server's MIME types)"
      : `GET ${wasmUrl}: HTTP ${head.status}`);
  }
}

const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");

// The memory snapshot of manifest.snapshot (build.py), unpacked into `target` as it
// arrives, then checked: made from this runtime folder and these wheels, of the manifest's
// size, and its bytes' SHA-256 is the manifest's. Throws otherwise (`target` is then not
// to be used).
async function fetchSnapshot(manifest, at, wheels, target) {
  const info = manifest.snapshot;
  if (info.pyodide !== manifest.entries.pyodide ||
      JSON.stringify(info.wheels) !== JSON.stringify(wheels)) {
    throw new Error("the snapshot was made for another runtime or other wheels");
  }
  if (info.jspi !== false) throw new Error("the snapshot was made with WebAssembly stack switching");
  if (info.encoding !== "gzip" || typeof DecompressionStream !== "function" ||
      !(self.crypto && self.crypto.subtle)) {
    throw new Error("this browser cannot check or unpack the snapshot here");
  }
  const url = at("snapshot");
  const resp = await fetch(url);
  if (!resp.ok || !resp.body) throw new Error(`GET ${url}: HTTP ${resp.status}`);
  const [packed, unpack] = resp.body.tee();
  const packedBytes = new Response(packed).arrayBuffer();
  packedBytes.catch(() => {}); // awaited below
  const reader = unpack.pipeThrough(new DecompressionStream("gzip")).getReader();
  let offset = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (offset + value.length > target.length) {
      await reader.cancel();
      throw new Error("the snapshot unpacks to more than the manifest's size");
    }
    target.set(value, offset);
    offset += value.length;
  }
  if (offset !== target.length) throw new Error("the snapshot unpacks to less than the manifest's size");
  step("snapshot_unpacked");
  const digest = hex(await self.crypto.subtle.digest("SHA-256", await packedBytes));
  if (digest !== info.sha256) throw new Error(`the snapshot's SHA-256 is ${digest}, not the manifest's`);
  step("snapshot_checked");
}

// The Python run after a restore: what differs between copies of one snapshot.
// JSPI (WebAssembly stack switching): Pyodide binds run_sync when Python starts, and the
// snapshot is made without JSPI (build.py), so run_sync raises "not supported" in a restored
// Python (rebinding it to the JSPI version hangs in Chromium 156: more of its state is
// fixed at start-up). can_run_sync() is made to say so, and lockbox takes its synchronous
// paths (age: libsodium scrypt; Argon2id with unusual parameters: noble).
const AFTER_RESTORE = [
  "import random, sys, _pyodide_core, pyodide.ffi",
  "random.seed()  # the snapshot's generator state is the same in every copy",
  "while sys.path.count('') > 1: sys.path.remove('')",
  "def can_run_sync():",
  "    return False  # restored from a snapshot made without JSPI",
  "for _m in (_pyodide_core, pyodide.ffi, sys.modules.get('lockbox.crypto.browser')):",
  "    if _m is not None and hasattr(_m, 'can_run_sync'): _m.can_run_sync = can_run_sync",
  "del can_run_sync, _m",
].join("\n");

async function boot() {
  progress("manifest");
  const manifest = await fetchManifest();
  step("manifest");
  const site = new URL("./", new URL("manifest.json", import.meta.url));
  const at = (logical) => new URL(manifest.entries[logical], site).href;

  progress("pyodide", manifest.pyodide);
  // Everything the start needs is asked for at once: the runtime, the crypto bundle, the
  // wheels (lockbox's last) and the snapshot.
  const wheelNames = [...(manifest.python_wheels || []), "wheel"];
  const wheelDir = manifest.wheel_dir || "/lib/lockbox-wheels";
  const wheelPath = (logical) => `${wheelDir}/${manifest.entries[logical].split("/").pop()}`;
  const wheelBytes = Promise.all(wheelNames.map((name) => fetchBytes(at(name))));
  wheelBytes.catch(() => {}); // awaited below
  const wasmChecked = checkWasmType(new URL("pyodide.asm.wasm", at("pyodide")).href);
  wasmChecked.catch(() => {});
  const pyodideModule = import(at("pyodide.mjs"));
  const runtimeModule = import(new URL("pyodide.asm.mjs", at("pyodide")).href);
  runtimeModule.catch(() => {}); // awaited below
  const cryptoReady = import(at("crypto")).then(async (bundle) => {
    globalThis[manifest.crypto_global || "lockboxCrypto"] = await bundle.init();
  });
  cryptoReady.catch(() => {});
  let snapshot = null;
  let snapshotError = "";
  const target = manifest.snapshot && manifest.entries.snapshot
    ? new Uint8Array(manifest.snapshot.size) : null;
  if (target) {
    snapshot = fetchSnapshot(manifest, at, wheelNames.map((name) => manifest.entries[name]),
                             target);
    snapshot.catch(() => {});
  } else {
    snapshotError = "this site has no snapshot";
  }
  const { loadPyodide } = await pyodideModule;
  const { default: createModule } = await runtimeModule;
  // Restoring needs the snapshot only once the .wasm is compiled and instantiated, so
  // loadPyodide gets at once the buffer the snapshot is being unpacked into (the .wasm
  // compiles while the snapshot downloads): `fill` (run in fsInit, which Pyodide awaits
  // before it restores) waits until the snapshot is all there and checked, or, when it
  // fails, reports it and never returns (the half-started module is dropped: nothing is
  // restored from unchecked bytes).
  // (Each start has its own fsInit: a dropped start must keep waiting in its own `fill`.)
  const fsInitWith = (fill) => async (FS) => {
    step("runtime_instantiated"); // the .wasm compiled and instantiated (preRun)
    const data = await wheelBytes;
    FS.mkdirTree(wheelDir);
    wheelNames.forEach((name, i) => FS.writeFile(wheelPath(name), data[i]));
    if (fill) await fill();
  };
  // Pyodide 314 copies a snapshot into the WebAssembly memory as it is after start-up
  // (its INITIAL_MEMORY setting has no effect: the module makes its own memory), so a
  // snapshot of a larger heap would not fit: the memory is grown to the snapshot's size
  // first, by a preRun step added to the module's settings (createPyodideModule).
  const withMemory = (bytes) => (settings) => {
    settings.preRun.push((Module) => {
      if (Module.HEAP8.length < bytes) Module.growMemory(bytes);
    });
    return createModule(settings);
  };
  // A wrong .wasm type makes loadPyodide hang: the failed check ends the wait instead.
  const load = (options, fill, ...also) => Promise.race([
    wasmChecked.then(() => new Promise(() => {})),
    ...also,
    loadPyodide({ indexURL: at("pyodide"), fsInit: fsInitWith(fill), ...options }),
  ]);
  let pyodide = null;
  if (snapshot) {
    let failed;
    const failure = new Promise((_, reject) => { failed = reject; });
    const fill = async () => {
      try {
        await snapshot; // in `target` and checked
        await cryptoReady; // the snapshot's Python may name globalThis.lockboxCrypto
      } catch (err) {
        failed(err);
        await new Promise(() => {});
      }
    };
    try {
      pyodide = await load({ _loadSnapshot: target, createPyodideModule: withMemory(target.length) },
                           fill, failure, snapshot.then(() => new Promise(() => {})));
      pyodide.runPython(AFTER_RESTORE);
      step("restored");
    } catch (err) {
      snapshotError = String(err && err.message ? err.message : err);
      progress("snapshot-failed", snapshotError);
      pyodide = null;
    }
  }
  if (!pyodide) {
    pyodide = await load({}, null);
    step("python_started");
  }
  await cryptoReady;
  step("crypto_ready");
  progress("crypto");
  progress("wheel", manifest.lockbox);
  const paths = JSON.stringify(wheelNames.map(wheelPath));
  pyodide.runPython(`import sys\nfor p in reversed(${paths}):\n    p in sys.path or sys.path.insert(1, p)`);
  const session = pyodide.pyimport("lockbox.viewer.session").Session();
  const versions = pyodide.runPython(
    "import json, sys, lockbox; json.dumps({'python': sys.version.split()[0], " +
    "'lockbox': lockbox.__version__})",
  );
  step("session");
  progress("ready");
  const how = { snapshot: !snapshotError, ...(snapshotError ? { fallback: snapshotError } : {}), steps };
  return { pyodide, session, how, versions: { ...JSON.parse(versions), pyodide: manifest.pyodide } };
}

const booting = boot();
booting.then(
  ({ versions, how }) => post({ type: "ready", versions, boot: how,
                                seconds: (performance.now() - started) / 1000 }),
  (err) => post({ type: "failed", error: String(err && err.stack ? err.stack : err) }),
);

function toPlain(value) {
  if (value && typeof value.toJs === "function") {
    try {
      return value.toJs({ dict_converter: Object.fromEntries, create_pyproxies: false });
    } finally {
      value.destroy();
    }
  }
  return value;
}

let queue = Promise.resolve();

async function run(id, code) {
  let pyodide;
  try {
    ({ pyodide } = await booting);
  } catch (err) {
    post({ id, error: `Python did not start: ${err}` });
    return;
  }
  try {
    const result = toPlain(await pyodide.runPythonAsync(code));
    post({ id, result });
  } catch (err) {
    post({ id, error: String(err && err.message ? err.message : err) });
  }
}

// Calls a method of the Python session. callPromising (when present) enters Python with
// stack switching enabled, as runPythonAsync does, so the crypto backend may block on a
// JS promise (JSPI) where it needs to.
function callPy(fn, ...args) {
  return typeof fn.callPromising === "function" ? fn.callPromising(...args) : fn(...args);
}

async function viewerCall(id, method, args, blob, binary) {
  let session;
  try {
    ({ session } = await booting);
  } catch (err) {
    post({ id, result: { error: { kind: "internal", title: "Python did not start",
                                  message: String(err), detail: "" } } });
    return;
  }
  let fn;
  let value;
  try {
    fn = binary ? session.call_binary : session.call;
    value = await callPy(fn, method, JSON.stringify(args || {}), ...(binary ? [] : [blob]));
  } catch (err) {
    post({ id, result: { error: { kind: "internal", title: "Unexpected error",
                                  message: String(err && err.message ? err.message : err),
                                  detail: String(err && err.stack ? err.stack : "") } } });
    return;
  } finally {
    if (fn) fn.destroy();
  }
  if (typeof value === "string") {
    post({ id, result: JSON.parse(value) });
    return;
  }
  // Python bytes arrive as a PyProxy: copy them out of the WASM heap once (slice), then
  // transfer that copy's buffer (never a view of the heap itself).
  let bytes;
  try {
    const view = value.getBuffer("u8");
    try {
      bytes = view.data.slice();
    } finally {
      view.release();
    }
  } finally {
    value.destroy();
  }
  self.postMessage({ id, bytes }, [bytes.buffer]);
}

function onMessage(event) {
  const { id, code, call, binary, args, blob } = event.data || {};
  if (typeof call === "string" || typeof binary === "string") {
    viewerCall(id, call || binary, args, blob, typeof binary === "string");
    return;
  }
  if (typeof code !== "string") {
    post({ id, error: "expected a message {id, code}, {id, call, args} or {id, binary, args}" });
    return;
  }
  queue = queue.then(() => run(id, code));
}

self.addEventListener("message", onMessage);
