// lockbox boot worker: a module Web Worker that starts Python (Pyodide) with lockbox.
//
// Start it from a page with the name the site's manifest gives:
//
//     const manifest = await (await fetch("manifest.json", {cache: "no-cache"})).json();
//     const worker = new Worker(manifest.entries["boot-worker"], {type: "module"});
//
// Everything is loaded from this site (no CDN): the worker reads manifest.json next to
// itself, loads the Pyodide runtime (manifest.entries.pyodide is its indexURL), loads
// the lockbox wheel (and the pure wheels it uses) by URL, imports the crypto bundle and sets it on
// globalThis.lockboxCrypto (what lockbox.crypto.browser.BrowserCryptoBackend uses).
//
// Message protocol (page -> worker -> page); every message is a plain object:
//
//   worker -> page  {type: "progress", stage, detail}   while starting (stage: "manifest",
//                                                        "pyodide", "wheel", "crypto", "ready")
//   worker -> page  {type: "ready", versions, seconds}   once Python and lockbox are ready
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
// or keep this file and run Python helper modules through {id, code}. Keep the start-up
// order: manifest -> Pyodide -> wheel -> crypto bundle -> import lockbox.

const started = performance.now();
const post = (msg) => self.postMessage(msg);
const progress = (stage, detail = "") => post({ type: "progress", stage, detail });

async function fetchManifest() {
  const url = new URL("manifest.json", import.meta.url);
  const resp = await fetch(url, { cache: "no-cache" });
  if (!resp.ok) throw new Error(`GET ${url}: HTTP ${resp.status}`);
  return resp.json();
}

async function boot() {
  progress("manifest");
  const manifest = await fetchManifest();
  const site = new URL("./", new URL("manifest.json", import.meta.url));
  const at = (logical) => new URL(manifest.entries[logical], site).href;

  progress("pyodide", manifest.pyodide);
  // Pyodide hangs forever, without an error, when its .wasm is not served as
  // application/wasm: check the type first (a HEAD request) and fail with the reason.
  const wasmUrl = new URL("pyodide.asm.wasm", at("pyodide")).href;
  const head = await fetch(wasmUrl, { method: "HEAD" });
  const wasmType = (head.headers.get("content-type") || "").split(";")[0].trim();
  if (!head.ok || wasmType !== "application/wasm") {
    throw new Error(head.ok
      ? `the server sends ${wasmUrl} as "${wasmType || "no type"}"; WebAssembly needs ` +
        "Content-Type: application/wasm (configure the web server's MIME types)"
      : `GET ${wasmUrl}: HTTP ${head.status}`);
  }
  const { loadPyodide } = await import(at("pyodide.mjs"));
  const pyodide = await loadPyodide({ indexURL: at("pyodide") });

  progress("crypto");
  const bundle = await import(at("crypto"));
  globalThis[manifest.crypto_global || "lockboxCrypto"] = await bundle.init();

  progress("wheel", manifest.lockbox);
  // loadPackage() does not reject on a failed download (it reports through errorCallback
  // and resolves to []), so collect the errors and check the result. The pure wheels
  // lockbox uses (manifest.python_wheels: tomli_w writes .sync manifests, idna compares
  // host names) are loaded before lockbox's own.
  const wheels = [...(manifest.python_wheels || []).map(at), at("wheel")];
  const errors = [];
  const loaded = await pyodide.loadPackage(wheels, {
    messageCallback: () => {},
    errorCallback: (msg) => errors.push(msg),
  });
  if (!loaded || loaded.length !== wheels.length || errors.length) {
    throw new Error(`could not load the lockbox wheels: ${errors.join(" ") ||
      `loaded ${loaded ? loaded.length : 0} of ${wheels.length}`}`);
  }
  const session = pyodide.pyimport("lockbox.viewer.session").Session();
  const versions = pyodide.runPython(
    "import json, sys, lockbox; json.dumps({'python': sys.version.split()[0], " +
    "'lockbox': lockbox.__version__})",
  );
  progress("ready");
  return { pyodide, session, versions: { ...JSON.parse(versions), pyodide: manifest.pyodide } };
}

const booting = boot();
booting.then(
  ({ versions }) => post({ type: "ready", versions, seconds: (performance.now() - started) / 1000 }),
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
