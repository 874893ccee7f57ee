// Test-only stand-ins for the two synchronous browser APIs Node lacks, so that
// XhrRangeSource and BlobRangeSource run their conformance suites under Node too:
//
//   XMLHttpRequest  synchronous mode only (open(method, url, false)), responseType
//                   "arraybuffer" or "" (text); setRequestHeader (forbidden names such as
//                   Accept-Encoding are ignored, as browsers do), timeout (-> a DOMException
//                   "TimeoutError" from send()), network failure (-> "NetworkError"),
//                   redirects followed; status, statusText, response, getResponseHeader.
//   FileReaderSync  readAsArrayBuffer(blob).
//
// How: a worker thread does the real (async) work with fetch() / blob.arrayBuffer() and
// posts the answer on a MessagePort; the caller blocks in Atomics.wait() until the worker
// signals, then takes the answer with receiveMessageOnPort(). The Python side sees the same
// JS objects and errors as in a browser worker. What it cannot show (CORS, the browser's
// own header rules) is left to the Chromium run of browser_sources_conformance.py.
//
// run.mjs installs them (config.sync_shims) after Pyodide and the wheels are loaded, so
// Pyodide's own start-up never sees them.

import { MessageChannel, receiveMessageOnPort, Worker } from "node:worker_threads";

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");

async function xhr(op) {
  const controller = new AbortController();
  let timedOut = false;
  const timer = op.timeout > 0
    ? setTimeout(() => { timedOut = true; controller.abort(); }, op.timeout) : null;
  try {
    const resp = await fetch(op.url, {
      method: op.method, headers: op.headers, body: op.body, signal: controller.signal,
      redirect: "follow",
    });
    const body = await resp.arrayBuffer();
    return { status: resp.status, statusText: resp.statusText, headers: [...resp.headers], body };
  } catch (err) {
    if (timedOut) return { error: { name: "TimeoutError", message: "The request timed out." } };
    return { error: { name: "NetworkError", message: "A network error occurred: " + err } };
  } finally {
    if (timer) clearTimeout(timer);
  }
}

async function readBlob(op) {
  try {
    return { body: await op.blob.arrayBuffer() };
  } catch (err) {
    return { error: { name: err.name || "NotReadableError", message: String(err) } };
  }
}

parentPort.on("message", async ({ flag, port, op }) => {
  const result = op.kind === "xhr" ? await xhr(op) : await readBlob(op);
  port.postMessage(result, result.body ? [result.body] : []);
  port.close();
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
});
`;

const FORBIDDEN = new Set([
  "accept-charset", "accept-encoding", "access-control-request-headers",
  "access-control-request-method", "connection", "content-length", "cookie", "cookie2",
  "date", "dnt", "expect", "host", "keep-alive", "origin", "referer", "te", "trailer",
  "transfer-encoding", "upgrade", "via",
]);

let worker = null;

function call(op, waitMs) {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  worker.postMessage({ flag, port: port2, op }, [port2]);
  const outcome = Atomics.wait(flag, 0, 0, waitMs);
  const message = receiveMessageOnPort(port1);
  port1.close();
  if (outcome === "timed-out" || message === undefined) {
    throw new DOMException("the synchronous shim got no answer", "TimeoutError");
  }
  return message.message;
}

class SyncXMLHttpRequest {
  constructor() {
    this.readyState = 0;
    this.status = 0;
    this.statusText = "";
    this.response = null;
    this.responseType = "";
    this.timeout = 0;
    this.withCredentials = false;
    this._headers = {};
    this._responseHeaders = new Map();
  }

  open(method, url, async = true) {
    if (async !== false) throw new Error("this test shim supports synchronous XHR only");
    this._method = method;
    this._url = url;
    this.readyState = 1;
  }

  setRequestHeader(name, value) {
    if (FORBIDDEN.has(name.toLowerCase())) return; // browsers drop these silently
    this._headers[name] = value;
  }

  send(body) {
    const op = {
      kind: "xhr", method: this._method, url: this._url, headers: this._headers,
      timeout: this.timeout, body: body == null ? undefined : new Uint8Array(body),
    };
    const result = call(op, (this.timeout || 60_000) + 5_000);
    this.readyState = 4;
    if (result.error) throw new DOMException(result.error.message, result.error.name);
    this.status = result.status;
    this.statusText = result.statusText;
    this._responseHeaders = new Map(result.headers.map(([k, v]) => [k.toLowerCase(), v]));
    this.response = this.responseType === "arraybuffer"
      ? result.body : new TextDecoder().decode(result.body);
  }

  getResponseHeader(name) {
    return this._responseHeaders.get(String(name).toLowerCase()) ?? null;
  }

  getAllResponseHeaders() {
    return [...this._responseHeaders].map(([k, v]) => `${k}: ${v}\r\n`).join("");
  }
}

class SyncFileReaderSync {
  readAsArrayBuffer(blob) {
    const result = call({ kind: "blob", blob }, 60_000);
    if (result.error) throw new DOMException(result.error.message, result.error.name);
    return result.body;
  }
}

/** Put XMLHttpRequest and FileReaderSync on globalThis (only where they are missing). */
export function installSyncShims() {
  if (worker === null) {
    worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
  }
  globalThis.XMLHttpRequest ??= SyncXMLHttpRequest;
  globalThis.FileReaderSync ??= SyncFileReaderSync;
}
