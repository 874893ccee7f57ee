// The page of the browser benchmark (bench/bench_browser.py drives it with Playwright).
//
// ?boot=1: start the site's boot worker (Pyodide + lockbox) at once and record when it is
// ready; window.runPy(code, timeoutMs) runs Python in it through the worker's {id, code}
// protocol. Always: window.zipList / window.zipRead run zip.js (HttpRangeReader) on the
// main thread. Every promise handed to the driver is raced against a timer, because
// Playwright's page.evaluate has no timeout of its own.

import * as zip from "./zipjs.mjs";

const state = (window.__bench = { progress: [], ready: null, failed: null });

function withTimeout(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

// ------------------------------------------------------------------ the boot worker

const pending = new Map();
let nextId = 1;
let worker = null;

async function startWorker() {
  const siteRoot = new URL("../", location.href);
  const manifestUrl = new URL("manifest.json", siteRoot);
  const manifest = await (await fetch(manifestUrl, { cache: "no-cache" })).json();
  worker = new Worker(new URL(manifest.entries["boot-worker"], siteRoot), { type: "module" });
  worker.addEventListener("message", (event) => {
    const msg = event.data || {};
    if (msg.type === "progress") {
      state.progress.push([msg.stage, performance.now()]);
    } else if (msg.type === "ready") {
      state.ready = { ms: performance.now(), worker_seconds: msg.seconds, versions: msg.versions };
    } else if (msg.type === "failed") {
      state.failed = String(msg.error);
    } else if (msg.id !== undefined && pending.has(msg.id)) {
      const settle = pending.get(msg.id);
      pending.delete(msg.id);
      settle(msg);
    }
  });
  worker.addEventListener("error", (event) => {
    state.failed = `worker error: ${event.message || event}`;
  });
}

window.runPy = (code, timeoutMs) => {
  if (!worker) return Promise.reject(new Error("the boot worker was not started (?boot=1)"));
  const id = nextId++;
  const answer = new Promise((resolve, reject) => {
    pending.set(id, (msg) => ("error" in msg ? reject(new Error(msg.error)) : resolve(msg.result)));
  });
  worker.postMessage({ id, code });
  return withTimeout(answer, timeoutMs, "Python").finally(() => pending.delete(id));
};

if (new URLSearchParams(location.search).get("boot") === "1") {
  startWorker().catch((err) => { state.failed = `start: ${err && err.stack ? err.stack : err}`; });
}

// ------------------------------------------------------------------ zip.js

// The page's CSP (the site's own) allows workers from 'self' only, and zip.js would start
// its codec workers from blob: URLs: run its codecs on this thread instead (they use the
// browser's native DecompressionStream for deflate; AES and HMAC are zip.js's own JS).
zip.configure({ useWebWorkers: false });

let zipReader = null;
let zipEntries = null;

async function hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

window.zipList = (url, password, options, timeoutMs) => withTimeout((async () => {
  const t0 = performance.now();
  zipReader = new zip.ZipReader(new zip.HttpRangeReader(url, options || {}), { password });
  zipEntries = await zipReader.getEntries();
  const ms = performance.now() - t0;
  const top = new Set(zipEntries.map((e) => e.filename.split("/")[0]));
  return { ms, entries: zipEntries.length, root_names: top.size,
           files: zipEntries.filter((e) => !e.directory).length };
})(), timeoutMs, "zip.js list");

window.zipRead = (path, timeoutMs) => withTimeout((async () => {
  const entry = zipEntries.find((e) => e.filename === path);
  if (!entry) throw new Error(`not in the zip: ${path}`);
  const t0 = performance.now();
  const data = await entry.getData(new zip.Uint8ArrayWriter());
  const ms = performance.now() - t0;
  return { ms, size: data.length, sha256: await hex(data), encrypted: entry.encrypted };
})(), timeoutMs, "zip.js read");
