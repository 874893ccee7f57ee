// lockbox hook worker: runs a .sync archive's update hook (sync.wasm) in a dedicated module
// Web Worker. Plain JS, no Pyodide: the guest sees nothing of the viewer, only the imports
// below. One worker per run; the page terminates it (Worker.terminate()) when the manifest's
// policy.timeout has passed, whatever the guest is doing (an endless loop included).
//
// Message protocol (page -> worker -> page):
//
//   page -> worker  {type: "run", wasm, payload, context, allowHosts, limits}
//                   wasm, payload: Uint8Array; context: Uint8Array | null;
//                   allowHosts: the effective allow-list (grants ∩ the manifest's allow_hosts);
//                   limits: {memoryBytes, responseBytes, writeBytes, maxRequests}
//   worker -> page  {type: "started", entry, compileMs}     the module was accepted
//   worker -> page  {type: "request", url, method, result, bytes}   after each http_request
//   worker -> page  {type: "done", entry, written, writtenSize, requests, runMs, compileMs}
//                   written: the new payload (Uint8Array, transferred) when `run` wrote
//                   something, else null (nothing changes; `_start`'s writes are discarded)
//   worker -> page  {type: "failed", reason, message}       reason: "refused" (the module
//                   is not a hook this runner accepts), "trap" (the guest failed), "limit"
//
// The ABI is the CPython runner's (lockbox.formats.sync.hook.runner; docs/formats/SYNC.md):
// every import comes from module "host", every parameter and result is an i32.
//
//   http_request(url_ptr, url_len, method_ptr, method_len) -> HTTP status, or
//       -1 bad pointer or UTF-8, -2 host not allowed, -3 client (method not GET or empty,
//       not an http(s) URL, a URL over 8 KiB or with user-info, a redirect, too many
//       requests), -4 body (larger than the response cap, or cut), -5 transport
//       (network, CORS refusal)
//   last_response_size() / last_response_read(out_ptr, max_len) -> bytes copied
//   payload_size() / payload_read(offset, len, out_ptr) -> bytes copied, 0 past the end
//   payload_write(offset, len, ptr) -> bytes written into a fresh buffer (starts empty,
//       gaps zero-filled); -4 past the write cap (nothing written)
//   context_size() / context_read(offset, len, out_ptr): context.json (our extension)
// A pointer argument names a buffer [ptr, ptr + len) that must lie inside the guest's
// memory whatever the amount of data copied (else -1); negative values are -1.
//
// Exports: `memory` and `run: () -> ()`; without `run`, `_start` runs and its writes are
// discarded. A module importing anything else (WASI, another module, a memory, a table, a
// global), or one of these with another type, is refused before it runs (its type and
// import sections are read here: JS cannot ask a compiled module for import types).
//
// Limits, and what a browser allows:
// * Time: the page terminates this worker after policy.timeout (Worker.terminate() stops
//   a running guest at once, loops included; no cooperation needed).
// * Memory: the module's own memory is capped by rewriting its declared maximum to
//   limits.memoryBytes before it is compiled (a declared maximum above the cap is lowered;
//   none at all gets the cap), so memory.grow past the cap fails inside the guest (-1), as
//   with wasmtime's store limits; a module whose initial memory is already larger is
//   refused. Each import call also checks the memory's size. Memory the engine needs
//   besides (compiled code, the JS heap) cannot be capped from a page: the browser's own
//   per-process limits apply.
// * HTTP: GET only, http: and https: only, the host (and port) checked against allowHosts
//   on label boundaries (hostAllowed below, the rules of lockbox.formats.sync.hook.hosts)
//   on the URL as the browser parsed it (lowercase, IDNA to punycode, IPv4 forms such as
//   127.1 normalised to 127.0.0.1), so the host checked is the host fetched.
//   fetch() runs with redirect: "manual" and a redirect is never followed, because a page
//   cannot see where a cross-origin redirect leads and so cannot re-check its host (the
//   browser would follow it unchecked otherwise): this runner's max_redirects is 0, and a
//   redirect answers -3, as one past the limit does on CPython.
//   credentials: "omit" (no cookies, no HTTP auth), no referrer, no cache. The server must
//   allow the viewer's origin by CORS (a browser rule; otherwise -5). The body is read up
//   to limits.responseBytes (more: -4), binary-safe.
// * The guest blocks on http_request: JSPI (WebAssembly.Suspending/promising, Chromium
//   137+) suspends it while fetch runs. A browser without JSPI cannot run a hook that
//   imports http_request (refused with a message; the command line can).

// name -> [i32 parameters, i32 results] (lockbox.formats.sync.hook.runner.ABI_IMPORTS)
export const ABI_IMPORTS = new Map([
  ["http_request", [4, 1]], ["last_response_size", [0, 1]], ["last_response_read", [2, 1]],
  ["payload_size", [0, 1]], ["payload_read", [3, 1]], ["payload_write", [3, 1]],
  ["context_size", [0, 1]], ["context_read", [3, 1]],
]);
export const MAX_URL_SIZE = 8192; // UTF-8 bytes of a URL http_request accepts (-3 past it)
export const BAD_MEMORY = -1;
export const HOST_DENIED = -2;
export const CLIENT_ERROR = -3;
export const BODY_ERROR = -4;
export const TRANSPORT_ERROR = -5;
const PAGE = 65536;
const MAX_PAGES = 65536; // 4 GiB: the 32-bit address space

export class HookRefused extends Error {}

// ------------------------------------------------------------------ hosts
//
// The rules of lockbox.formats.sync.hook.hosts (the CPython runner's), pattern for pattern:
// "example.com" admits that host only (never evilexample.com nor api.example.com);
// "*.example.com" hosts strictly below it on a label boundary (not the apex); IP literals
// match exactly as addresses; ":PORT" restricts to the URL's effective port (80/443 when
// the URL names none); case folded, one trailing dot dropped, IDNA names compared in
// punycode; an invalid pattern admits nothing; an empty list admits nothing. The host
// checked is the URL's host as the browser parsed it, i.e. the host fetch() connects to.

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
const IPV4 = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;
const PORT = /^[0-9]{1,5}$/;

// An IP literal as its canonical text ("ip:127.0.0.1", "ip:[::1]"), or null.
function ipOf(text) {
  const v4 = IPV4.exec(text);
  if (v4) return v4.slice(1).every((n) => Number(n) <= 255) ? `ip:${text}` : null;
  if (!text.includes(":") || /[^0-9a-fA-F:.]/.test(text)) return null;
  try {
    return `ip:${new URL(`http://[${text}]/`).hostname}`;
  } catch {
    return null;
  }
}

// A host name in its normalised ASCII form, or null.
function nameOf(text) {
  let t = text.endsWith(".") ? text.slice(0, -1) : text;
  if (!t) return null;
  if (/[^\x00-\x7f]/.test(t)) {
    if (/[\s/?#@\\:[\]%]/.test(t)) return null;
    try {
      t = new URL(`http://${t}/`).hostname; // UTS 46, non-transitional: IDNA 2008
    } catch {
      return null;
    }
    if (t.endsWith(".")) t = t.slice(0, -1);
  }
  t = t.toLowerCase();
  if (t.length > 253 || !t.split(".").every((label) => LABEL.test(label))) return null;
  return t;
}

// A URL host (name, IPv4, IPv6 with or without brackets) as patterns are compared with it.
export function normalizeHost(host) {
  if (typeof host !== "string" || !host || host !== host.trim()) return null;
  if (host.startsWith("[") && host.endsWith("]")) {
    const ip = ipOf(host.slice(1, -1));
    return ip && ip.startsWith("ip:[") ? ip : null;
  }
  const ip = ipOf(host);
  if (ip) return ip;
  if (host.includes(":")) return null;
  return nameOf(host);
}

// One pattern: {kind: "exact"|"wildcard"|"ip", name, port} or null when invalid.
export function parsePattern(pattern) {
  if (typeof pattern !== "string" || !pattern || pattern !== pattern.trim()) return null;
  let host = pattern;
  let port = null;
  if (pattern.startsWith("[")) {
    const close = pattern.indexOf("]");
    if (close < 0) return null;
    host = pattern.slice(0, close + 1);
    const rest = pattern.slice(close + 1);
    if (rest) {
      if (!rest.startsWith(":") || !PORT.test(rest.slice(1))) return null;
      port = Number(rest.slice(1));
    }
  } else if (pattern.split(":").length === 2) {
    const [h, p] = pattern.split(":");
    if (!PORT.test(p)) return null;
    host = h;
    port = Number(p);
  }
  if (port !== null && !(port > 0 && port < 65536)) return null;
  if (host.startsWith("*.")) {
    const name = nameOf(host.slice(2));
    if (!name || ipOf(name)) return null;
    return { kind: "wildcard", name, port };
  }
  if (host.includes("*")) return null;
  const normal = normalizeHost(host);
  if (!normal) return null;
  return normal.startsWith("ip:") ? { kind: "ip", name: normal, port }
    : { kind: "exact", name: normal, port };
}

// Does the allow-list admit `host` on `port` (the URL's effective port; null: only patterns
// without a port admit it)?
export function hostAllowed(host, patterns, port = null) {
  const h = normalizeHost(host);
  if (!h) return false;
  for (const text of patterns || []) {
    const p = parsePattern(text);
    if (!p || (p.port !== null && p.port !== port)) continue;
    if (p.kind === "ip" || h.startsWith("ip:")) {
      if (p.kind === "ip" && p.name === h) return true;
    } else if (p.kind === "exact" ? h === p.name : h.endsWith(`.${p.name}`)) {
      return true;
    }
  }
  return false;
}

// The port a URL connects to.
export const effectivePort = (url) => Number(url.port) || (url.protocol === "https:" ? 443 : 80);

// ------------------------------------------------------------------ the module

function readU32(bytes, at) {
  let value = 0;
  let shift = 0;
  for (let i = 0; i < 5; i++) {
    if (at.pos >= bytes.length) throw new HookRefused("the module is truncated");
    const b = bytes[at.pos++];
    value += (b & 0x7f) * 2 ** shift;
    if (!(b & 0x80)) {
      if (value > 0xffffffff) break;
      return value;
    }
    shift += 7;
  }
  throw new HookRefused("the module has a malformed number");
}

function u32Bytes(value) {
  const out = [];
  let v = value;
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}

function readName(bytes, at) {
  const n = readU32(bytes, at);
  if (at.pos + n > bytes.length) throw new HookRefused("the module is truncated");
  const text = new TextDecoder().decode(bytes.subarray(at.pos, at.pos + n));
  at.pos += n;
  return text;
}

const I32 = 0x7f;

// The function types of the type section: [[params], [results]] of value type codes.
function readTypes(bytes, at, end) {
  const types = [];
  const count = readU32(bytes, at);
  for (let i = 0; i < count; i++) {
    if (bytes[at.pos++] !== 0x60) throw new HookRefused("the module's type section is not understood");
    const params = [];
    const results = [];
    for (const list of [params, results]) {
      const n = readU32(bytes, at);
      if (at.pos + n > end) throw new HookRefused("the module is truncated");
      for (let k = 0; k < n; k++) list.push(bytes[at.pos++]);
    }
    types.push([params, results]);
  }
  return types;
}

const signature = ([params, results]) => {
  const name = (c) => ({ 0x7f: "i32", 0x7e: "i64", 0x7d: "f32", 0x7c: "f64" })[c] || `0x${c.toString(16)}`;
  return `(${params.map(name).join(", ")}) -> (${results.map(name).join(", ")})`;
};

// Checks every import against the ABI (module "host", a function of the ABI, all i32).
function checkImports(bytes, at, types) {
  const count = readU32(bytes, at);
  for (let i = 0; i < count; i++) {
    const module = readName(bytes, at);
    const name = readName(bytes, at);
    const kind = bytes[at.pos++];
    const where = `${module}.${name}`;
    if (module !== "host" || !ABI_IMPORTS.has(name) || kind !== 0) {
      const what = ["a function", "a table", "a memory", "a global", "a tag"][kind] || "something";
      throw new HookRefused(`the hook imports ${where} (${what}); a hook may import only the ` +
        "host functions of the .sync hook ABI from module \"host\"" +
        (module.startsWith("wasi") ? " (WASI is not available to hooks)" : ""));
    }
    const type = types[readU32(bytes, at)];
    const [nParams, nResults] = ABI_IMPORTS.get(name);
    const ok = type && type[0].length === nParams && type[1].length === nResults &&
      [...type[0], ...type[1]].every((c) => c === I32);
    if (!ok) {
      const want = signature([Array(nParams).fill(I32), Array(nResults).fill(I32)]);
      throw new HookRefused(`the hook imports ${where} as ${type ? signature(type) : "an unknown type"}; ` +
                            `the ABI has ${want}`);
    }
  }
}

// The module with its memory's maximum lowered to `maxPages` (set when it has none), after
// checking its imports (checkImports). Refuses shared or 64-bit memories and an initial
// size above the cap.
export function capMemory(wasm, maxPages) {
  const bytes = wasm instanceof Uint8Array ? wasm : new Uint8Array(wasm);
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 ||
      bytes[3] !== 0x6d) {
    throw new HookRefused("sync.wasm is not a WebAssembly module");
  }
  if (bytes[4] !== 1 || bytes[5] || bytes[6] || bytes[7]) {
    throw new HookRefused("sync.wasm is not a WebAssembly 1.0 module (a component?)");
  }
  const parts = [bytes.subarray(0, 8)];
  const at = { pos: 8 };
  let memories = 0;
  let types = [];
  while (at.pos < bytes.length) {
    const start = at.pos;
    const id = bytes[at.pos++];
    const size = readU32(bytes, at);
    const body = at.pos;
    const end = body + size;
    if (end > bytes.length) throw new HookRefused("the module is truncated");
    if (id === 1) types = readTypes(bytes, at, end);
    else if (id === 2) checkImports(bytes, at, types);
    if (id !== 5) {
      parts.push(bytes.subarray(start, end));
      at.pos = end;
      continue;
    }
    const count = readU32(bytes, at);
    const out = [...u32Bytes(count)];
    for (let i = 0; i < count; i++) {
      const flags = bytes[at.pos++];
      if (flags !== 0 && flags !== 1) {
        throw new HookRefused("the module's memory is shared or 64-bit: not accepted");
      }
      const min = readU32(bytes, at);
      const max = flags === 1 ? readU32(bytes, at) : MAX_PAGES;
      if (min > maxPages) {
        throw new HookRefused(`the module asks for ${min * 64} KiB of memory at start, over ` +
                              `the hook's limit of ${maxPages * 64} KiB`);
      }
      out.push(1, ...u32Bytes(min), ...u32Bytes(Math.min(max, maxPages)));
      memories++;
    }
    if (at.pos !== end) throw new HookRefused("the module's memory section is malformed");
    parts.push(Uint8Array.of(5, ...u32Bytes(out.length), ...out));
    at.pos = end;
  }
  if (!memories) throw new HookRefused("the module defines no memory (it must export one)");
  const total = parts.reduce((n, p) => n + p.length, 0);
  const result = new Uint8Array(total);
  let pos = 0;
  for (const p of parts) {
    result.set(p, pos);
    pos += p.length;
  }
  return result;
}

// Which entry runs ("run", else "_start"), after checking imports and exports.
export function checkModule(module, { jspi }) {
  for (const imp of WebAssembly.Module.imports(module)) {
    const what = `${imp.module}.${imp.name} (${imp.kind})`;
    if (imp.module !== "host") {
      throw new HookRefused(`the hook imports ${what}: only the "host" functions of the hook ` +
        (imp.module.startsWith("wasi") ? "ABI are offered (no WASI)" : "ABI are offered"));
    }
    if (imp.kind !== "function" || !ABI_IMPORTS.has(imp.name)) { // checked already: defence
      throw new HookRefused(`the hook imports ${what}, which the hook ABI does not offer`);
    }
    if (imp.name === "http_request" && !jspi) {
      throw new HookRefused("this browser cannot let a hook wait for HTTP requests (it needs " +
        "WebAssembly JSPI, in Chromium 137 and later): run it with `lockbox sync update`");
    }
  }
  const exports = new Map(WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]));
  if (exports.get("memory") !== "memory") {
    throw new HookRefused("the hook exports no memory named \"memory\"");
  }
  if (exports.get("run") === "function") return "run";
  if (exports.get("_start") === "function") return "_start";
  throw new HookRefused("the hook exports neither run() nor _start()");
}

// ------------------------------------------------------------------ the host side

export class Host {
  constructor({ payload, context, allowHosts, limits, onRequest = () => {} }) {
    this.payload = payload || new Uint8Array(0);
    this.context = context || new Uint8Array(0);
    this.allowHosts = allowHosts || [];
    this.limits = limits;
    this.onRequest = onRequest;
    this.response = new Uint8Array(0);
    this.written = new Uint8Array(0);
    this.writtenSize = 0;
    this.requests = [];
    this.fetches = 0;
    this.memory = null;
  }

  // The guest's memory as bytes, checked against the cap on every import call.
  bytes() {
    const buf = this.memory.buffer;
    if (buf.byteLength > this.limits.memoryBytes) {
      throw new WebAssembly.RuntimeError("the hook's memory grew past its limit");
    }
    return new Uint8Array(buf);
  }

  // A [ptr, ptr + len) range of guest memory, or null when out of bounds.
  span(ptr, len) {
    const mem = this.bytes();
    if (ptr < 0 || len < 0 || ptr + len > mem.length) return null;
    return mem.subarray(ptr, ptr + len);
  }

  copyOut(source, offset, len, outPtr) {
    if (offset < 0 || len < 0 || outPtr < 0) return BAD_MEMORY;
    const dest = this.span(outPtr, len); // the declared buffer, whatever is copied
    if (!dest) return BAD_MEMORY;
    const n = Math.max(0, Math.min(len, source.length - offset));
    if (n) dest.set(source.subarray(offset, offset + n));
    return n;
  }

  imports(jspi) {
    const h = {
      last_response_size: () => (this.bytes(), this.response.length),
      last_response_read: (outPtr, maxLen) => this.copyOut(this.response, 0, maxLen, outPtr),
      payload_size: () => (this.bytes(), this.payload.length),
      payload_read: (offset, len, outPtr) => this.copyOut(this.payload, offset, len, outPtr),
      payload_write: (offset, len, ptr) => this.write(offset, len, ptr),
      context_size: () => (this.bytes(), this.context.length),
      context_read: (offset, len, outPtr) => this.copyOut(this.context, offset, len, outPtr),
    };
    const request = (...args) => this.httpRequest(...args);
    h.http_request = jspi ? new WebAssembly.Suspending(request) : () => TRANSPORT_ERROR;
    return { host: h };
  }

  write(offset, len, ptr) {
    const src = this.span(ptr, len);
    if (offset < 0 || !src) return BAD_MEMORY;
    const end = offset + len;
    if (end > this.limits.writeBytes) return BODY_ERROR; // too big: nothing written
    if (end > this.written.length) {
      const grown = new Uint8Array(Math.min(this.limits.writeBytes,
                                            Math.max(end, 2 * this.written.length, 4096)));
      grown.set(this.written.subarray(0, this.writtenSize));
      this.written = grown;
    }
    this.written.set(src, offset);
    this.writtenSize = Math.max(this.writtenSize, end);
    return len;
  }

  // The checks in the CPython runner's order: memory, sizes, UTF-8, method, URL and host
  // (refused before any connection: not counted), then the request count.
  async httpRequest(urlPtr, urlLen, methodPtr, methodLen) {
    this.response = new Uint8Array(0);
    const log = { url: "", method: "", result: 0, bytes: 0 };
    const done = (result) => {
      log.result = result;
      log.bytes = this.response.length;
      if (this.requests.length < this.limits.maxRequests + 256) this.requests.push(log);
      this.onRequest(log);
      return result;
    };
    const urlBytes = this.span(urlPtr, urlLen);
    const methodBytes = this.span(methodPtr, methodLen);
    if (!urlBytes || !methodBytes) return done(BAD_MEMORY);
    if (urlLen > MAX_URL_SIZE || methodLen > MAX_URL_SIZE) return done(CLIENT_ERROR);
    try {
      const dec = new TextDecoder("utf-8", { fatal: true });
      log.url = dec.decode(urlBytes.slice());
      log.method = dec.decode(methodBytes.slice());
    } catch {
      return done(BAD_MEMORY);
    }
    const method = log.method.trim().toUpperCase();
    if (method !== "GET" && method !== "") return done(CLIENT_ERROR);
    let parsed;
    try {
      parsed = new URL(log.url);
    } catch {
      return done(CLIENT_ERROR);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return done(CLIENT_ERROR);
    if (parsed.username || parsed.password) return done(CLIENT_ERROR);
    if (!hostAllowed(parsed.hostname, this.allowHosts, effectivePort(parsed))) {
      return done(HOST_DENIED);
    }
    if (this.fetches >= this.limits.maxRequests) return done(CLIENT_ERROR);
    this.fetches++;
    let resp;
    try {
      resp = await fetch(parsed.href, {
        method: "GET", redirect: "manual", credentials: "omit", cache: "no-store",
        referrerPolicy: "no-referrer", mode: "cors",
      });
    } catch {
      return done(TRANSPORT_ERROR);
    }
    if (resp.type === "opaqueredirect" || [301, 302, 303, 307, 308].includes(resp.status)) {
      resp.body?.cancel().catch(() => {});
      return done(CLIENT_ERROR); // where it leads cannot be re-checked: max_redirects is 0
    }
    const cap = this.limits.responseBytes;
    const declared = Number(resp.headers.get("content-length"));
    if (Number.isFinite(declared) && declared > cap) {
      resp.body?.cancel().catch(() => {});
      return done(BODY_ERROR);
    }
    try {
      const parts = [];
      let size = 0;
      if (resp.body) {
        const reader = resp.body.getReader();
        for (;;) {
          const { done: end, value } = await reader.read();
          if (end) break;
          size += value.length;
          if (size > cap) {
            reader.cancel().catch(() => {});
            return done(BODY_ERROR);
          }
          parts.push(value);
        }
      }
      const body = new Uint8Array(size);
      let pos = 0;
      for (const p of parts) {
        body.set(p, pos);
        pos += p.length;
      }
      this.response = body;
    } catch {
      this.response = new Uint8Array(0);
      return done(BODY_ERROR);
    }
    return done(resp.status);
  }
}

// ------------------------------------------------------------------ running

export const hasJspi = () => typeof WebAssembly.Suspending === "function" &&
  typeof WebAssembly.promising === "function";

// Compiles, checks and runs the hook; resolves to what the "done" message carries.
export async function runHook({ wasm, payload, context, allowHosts, limits }, notify = () => {}) {
  const jspi = hasJspi();
  const t0 = performance.now();
  if (wasm.length > limits.wasmBytes) {
    throw new HookRefused(`sync.wasm is ${wasm.length} bytes, over the hook's limit of ${limits.wasmBytes}`);
  }
  const maxPages = Math.max(1, Math.floor(limits.memoryBytes / PAGE));
  const capped = capMemory(wasm, maxPages);
  let module;
  try {
    module = await WebAssembly.compile(capped);
  } catch (err) {
    throw new HookRefused(`sync.wasm does not compile: ${err.message || err}`);
  }
  const entry = checkModule(module, { jspi });
  const host = new Host({ payload, context, allowHosts, limits,
                          onRequest: (log) => notify({ type: "request", ...log }) });
  const instance = await WebAssembly.instantiate(module, host.imports(jspi));
  host.memory = instance.exports.memory;
  const compileMs = performance.now() - t0;
  notify({ type: "started", entry, compileMs });
  const fn = instance.exports[entry];
  const t1 = performance.now();
  if (jspi) await WebAssembly.promising(fn)();
  else fn();
  const runMs = performance.now() - t1;
  const keep = entry === "run" && host.writtenSize > 0;
  return {
    entry, compileMs, runMs, requests: host.requests,
    written: keep ? host.written.slice(0, host.writtenSize) : null,
    writtenSize: host.writtenSize,
  };
}

function inWorker() {
  return typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope;
}

if (inWorker()) {
  let busy = false;
  self.addEventListener("message", async (event) => {
    const msg = event.data || {};
    if (msg.type !== "run") return;
    if (busy) {
      self.postMessage({ type: "failed", reason: "refused", message: "a hook runs already" });
      return;
    }
    busy = true;
    try {
      const out = await runHook(msg, (m) => self.postMessage(m));
      self.postMessage({ type: "done", ...out }, out.written ? [out.written.buffer] : []);
    } catch (err) {
      const refused = err instanceof HookRefused;
      const limit = /past its limit/.test(String(err && err.message));
      self.postMessage({
        type: "failed",
        reason: refused ? "refused" : limit ? "limit" : "trap",
        message: String(err && err.message ? err.message : err),
      });
    }
  });
}
