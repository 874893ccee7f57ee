// lockbox boot worker: a module Web Worker that starts Python (Pyodide) with lockbox.
//
// Start it from a page with the name the site's manifest gives:
//
//     const manifest = await (await fetch("manifest.json", {cache: "no-cache"})).json();
//     const worker = new Worker(manifest.entries["boot-worker"], {type: "module"});
//
// Everything is loaded from this site (no CDN): the worker reads manifest.json next to
// itself, loads the Pyodide runtime (manifest.entries.pyodide is its indexURL), loads
// the lockbox wheel by URL, imports the crypto bundle and sets it on
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
  const { loadPyodide } = await import(at("pyodide.mjs"));
  const pyodide = await loadPyodide({ indexURL: at("pyodide") });

  progress("crypto");
  const bundle = await import(at("crypto"));
  globalThis[manifest.crypto_global || "lockboxCrypto"] = await bundle.init();

  progress("wheel", manifest.lockbox);
  // loadPackage() does not reject on a failed download (it reports through errorCallback
  // and resolves to []), so collect the errors and check the result.
  const errors = [];
  const loaded = await pyodide.loadPackage(at("wheel"), {
    messageCallback: () => {},
    errorCallback: (msg) => errors.push(msg),
  });
  if (!loaded || loaded.length === 0 || errors.length) {
    throw new Error(`could not load the lockbox wheel: ${errors.join(" ") || "nothing loaded"}`);
  }
  const versions = pyodide.runPython(
    "import json, sys, lockbox; json.dumps({'python': sys.version.split()[0], " +
    "'lockbox': lockbox.__version__})",
  );
  progress("ready");
  return { pyodide, versions: { ...JSON.parse(versions), pyodide: manifest.pyodide } };
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

function onMessage(event) {
  const { id, code } = event.data || {};
  if (typeof code !== "string") {
    post({ id, error: "expected a message {id, code}" });
    return;
  }
  queue = queue.then(() => run(id, code));
}

self.addEventListener("message", onMessage);
