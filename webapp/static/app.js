// lockbox viewer: the page. Plain ES modules, no framework.
//
// All the work happens in a module Web Worker (boot-worker.<hash>.mjs from manifest.json),
// which runs Python (Pyodide) with lockbox and its viewer session
// (lockbox/viewer/session.py): the page only sends calls ({id, call|binary, args}) and
// draws the answers, so it never freezes. Nothing is loaded from anywhere but this site
// and the archive's server.
//
// Any format lockbox reads opens here (.lbox, .uri, .sync; the format comes from the first
// bytes): an encrypted one asks for its password or identity file first (a .sync vault:
// its passphrase), any other is listed at once. A .sync also gets its panel (manifest,
// freshness, signature) and its update hook, run in a sandboxed worker of its own
// (hook-worker.<hash>.mjs). Listings come folder by folder (info.listing "folders": .lbox has a
// tree), or from one walk of the whole archive streamed in batches ("walk": .uri has no
// index), drawn as they arrive.
//
// A snapdir snapshot in a store on any static host opens too (#store=<store URL>&id=<id>,
// or "<store URL>#id=<id>" in the URL field): the listing comes from its manifest (fetched
// once), each file from its object (fetched by id), and every byte is BLAKE3-checked in
// the worker before the page gets it; a damaged or missing object is named and marked in
// the listing, the rest still opens. Its panel can check every object of the snapshot.
//
// Deep links: #url=<archive URL>&path=<file or folder inside>, or #store=…&id=…&path=….
// The hash is kept up to date while browsing (history.replaceState), never with a secret
// in it.
//
// Share links (`lockbox share`): #url=<archive URL>&key=lbk1-… opens the archive and
// unlocks it with the link's key, no prompt. The key is taken out of the address bar first
// thing (below) and then lives in memory only.

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ share links: the key
//
// A share link is VIEWER#url=<archive URL>&key=lbk1-<43 characters>. Its key is read from
// the fragment before anything else runs and removed from the address bar at once
// (history.replaceState, keeping url and path), so that it is not left in view, in this
// history entry, a bookmark or a copied URL. From then on it is kept in memory only
// (state.link, then the unlock call to the worker) and goes into no request, no log and no
// error message (docs/FORMAT.md §17.8): the worker checks it (a damaged key gets a message
// that does not repeat it) and tries it on the archive's link slots. A fragment is never
// sent in a request, and the page sends no Referer at all (<meta name="referrer"> and the
// server's Referrer-Policy).
function takeShareKey() {
  const raw = location.hash.replace(/^#/, "");
  if (!raw) return null;
  const params = new URLSearchParams(raw);
  if (!params.has("key")) return null;
  const key = params.get("key");
  params.delete("key");
  const rest = params.toString();
  history.replaceState(history.state, "",
                       location.pathname + location.search + (rest ? `#${rest}` : ""));
  return { url: params.get("url"), key };
}
const startLink = takeShareKey();
const ROW_HEIGHT = 36; // px, keep in sync with .row-item in style.css
const OVERSCAN = 12;
const TEXT_PREVIEW = 256 * 1024; // bytes of text shown at most
const MEDIA_PREVIEW_MAX = 512 * 1024 * 1024; // larger files are not previewed whole
// Downloads this large are streamed to disk with the File System Access API (where the
// browser has it); smaller ones go through a Blob. localStorage "lockbox.streamToDiskFrom"
// (bytes) overrides the threshold.
const STREAM_TO_DISK_FROM =
  Number(localStorage.getItem("lockbox.streamToDiskFrom") || "") || 64 * 1024 * 1024;

const TYPES = {
  image: { png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif",
           webp: "image/webp", avif: "image/avif", bmp: "image/bmp", ico: "image/x-icon",
           svg: "image/svg+xml" },
  audio: { mp3: "audio/mpeg", wav: "audio/wav", ogg: "audio/ogg", oga: "audio/ogg",
           opus: "audio/ogg", flac: "audio/flac", m4a: "audio/mp4", aac: "audio/aac" },
  video: { mp4: "video/mp4", m4v: "video/mp4", webm: "video/webm", ogv: "video/ogg",
           mov: "video/quicktime" },
  pdf: { pdf: "application/pdf" },
};
const TEXT_EXT = new Set(("txt md markdown rst py js mjs cjs ts tsx jsx json jsonl yaml yml toml ini " +
  "cfg conf csv tsv log html htm css scss xml svg sh bash zsh fish c h cc cpp hpp rs go java kt " +
  "rb php pl lua sql r tex bib env gitignore dockerfile makefile cmake gradle properties lock " +
  "srt vtt diff patch").split(" "));

// ------------------------------------------------------------------ worker and calls

class Python {
  constructor() {
    this.nextId = 1;
    this.pending = new Map();
    this.ready = false;
    this.failed = null;
    this.onProgress = () => {};
    this.onReady = () => {};
    this.onFailed = () => {};
    this.started = this.start();
  }

  async start() {
    const resp = await fetch("manifest.json", { cache: "no-cache" });
    if (!resp.ok) throw new Error(`manifest.json: HTTP ${resp.status}`);
    this.manifest = await resp.json();
    this.worker = new Worker(this.manifest.entries["boot-worker"], { type: "module" });
    this.worker.addEventListener("message", (e) => this.onMessage(e.data));
    this.worker.addEventListener("error", (e) => {
      this.fail(`the worker stopped: ${e.message || "script error"}`);
    });
  }

  fail(reason) {
    if (this.failed) return;
    this.failed = reason;
    this.onFailed(reason);
    for (const { resolve } of this.pending.values()) {
      resolve({ error: { kind: "internal", title: "Python is not running", message: reason } });
    }
    this.pending.clear();
  }

  onMessage(msg) {
    if (msg.type === "progress") return this.onProgress(msg.stage, msg.detail);
    if (msg.type === "ready") {
      this.ready = true;
      return this.onReady(msg);
    }
    if (msg.type === "failed") return this.fail(msg.error);
    const waiter = this.pending.get(msg.id);
    if (!waiter) return;
    this.pending.delete(msg.id);
    if ("bytes" in msg) waiter.resolve({ ok: msg.bytes });
    else if ("result" in msg) waiter.resolve(msg.result);
    else waiter.resolve({ error: { kind: "internal", title: "Error", message: msg.error } });
  }

  async send(message, transfer = []) {
    try {
      await this.started;
    } catch (err) {
      this.fail(`the site's manifest could not be read: ${err.message || err}`);
    }
    if (this.failed) {
      return { error: { kind: "internal", title: "Python is not running", message: this.failed } };
    }
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, { resolve });
      this.worker.postMessage({ id, ...message }, transfer);
    });
  }

  // A JSON method of lockbox.viewer.session.Session: resolves to {ok} or {error}.
  call(method, args = {}, blob = undefined) {
    return this.send({ call: method, args, blob });
  }

  // A bytes method: {ok: Uint8Array} or {error}.
  binary(method, args = {}) {
    return this.send({ binary: method, args });
  }
}

// ------------------------------------------------------------------ formatting

const fmtBytes = (n) => {
  if (n == null) return "";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
};
const fmtInt = (n) => Number(n).toLocaleString("en-US");
const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const fmtDate = (ms) => (ms ? dateFmt.format(new Date(ms)) : "");
const extOf = (name) => {
  const i = name.lastIndexOf(".");
  return i > 0 ? name.slice(i + 1).toLowerCase() : name.toLowerCase();
};
// Permission bits as ls shows them ("rwxr-xr-x"; setuid, setgid and sticky as s/S, t/T).
function fmtMode(mode) {
  const bits = "rwxrwxrwx";
  let out = "";
  for (let i = 0; i < 9; i++) out += mode & (1 << (8 - i)) ? bits[i] : "-";
  const special = (at, flag, lower, upper) => {
    if (mode & flag) out = out.slice(0, at) + (out[at] === "x" ? lower : upper) + out.slice(at + 1);
  };
  special(2, 0o4000, "s", "S");
  special(5, 0o2000, "s", "S");
  special(8, 0o1000, "t", "T");
  return out;
}
const fmtOctal = (mode) => mode.toString(8).padStart(4, "0");
const join = (dir, name) => (dir ? `${dir}/${name}` : name);
const parentOf = (path) => (path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "");
const baseOf = (path) => path.slice(path.lastIndexOf("/") + 1);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

// ------------------------------------------------------------------ state

const py = new Python();
const state = {
  view: "open",
  probe: null, // what open_* returned
  info: null, // once opened (and unlocked): format, listing mode, ...
  source: null, // {kind: "url", url} | {kind: "file", file} | {kind: "snap", store, id}
  failed: new Map(), // path -> error kind: files that failed their check (marked in the listing)
  dir: "",
  listing: null, // {path, names, types, sizes, mtimes, targets, counts}
  order: null, // Int32Array of indexes into listing, sorted + filtered
  sort: { key: "name", dir: 1 },
  active: -1, // position in order
  preview: null, // {path, token}
  previewUrl: null,
  previewBlob: null, // {path, blob}: a preview that holds the whole (verified) file
  epoch: 0, // bumped when an archive is closed: late answers of the old one are dropped
  previewToken: 0,
  listToken: 0,
  pendingPath: null, // from the deep link, applied after unlock
  // A share link's key for the archive at url ({url, key}; memory only, never written
  // anywhere): used when that archive is opened, dropped when it is refused or another
  // archive is opened.
  link: startLink && startLink.url ? startLink : null,
  listCache: new Map(), // listing "folders" only
  walk: null, // listing "walk": {entries, batches, done, error}
  refreshTimer: null,
  lastRefresh: 0,
};

function setView(view) {
  state.view = view;
  document.body.dataset.view = view;
  $("view-open").hidden = view !== "open";
  $("view-unlock").hidden = view !== "unlock";
  $("view-browse").hidden = view !== "browse";
  $("top-actions").hidden = view !== "browse";
}

// ------------------------------------------------------------------ alerts

let alertAction = null;

function showAlert(err, action = null) {
  const e = err || {};
  $("alert-title").textContent = e.title || "Error";
  $("alert-message").textContent = e.message || "";
  $("alert-detail").textContent = e.detail || "";
  $("alert-more").hidden = !e.detail;
  $("alert").dataset.kind = e.kind || "internal";
  alertAction = action;
  $("alert-action").hidden = !action;
  if (action) $("alert-action").textContent = action.label;
  $("alert").hidden = false;
}

function hideAlert() {
  $("alert").hidden = true;
  alertAction = null;
}

$("alert-dismiss").addEventListener("click", hideAlert);
$("alert-action").addEventListener("click", () => {
  const action = alertAction;
  hideAlert();
  if (action) action.run();
});

// Decide what an error means for the screen: "changed" offers to reopen, errors before
// the unlock send the user back to the open form.
function handleError(err, where = "") {
  if (err.kind === "changed") {
    showAlert(err, { label: "Open again", run: reopen });
    return;
  }
  if (err.kind === "internal" && where === "python") {
    showAlert(err, { label: "Reload the page", run: () => location.reload() });
    return;
  }
  showAlert(err);
}

// ------------------------------------------------------------------ Python start-up

const STAGES = {
  manifest: [5, "Reading the site manifest…"],
  pyodide: [15, "Downloading and starting Python (Pyodide)…"],
  crypto: [75, "Loading the crypto library…"],
  wheel: [85, "Loading lockbox…"],
  "snapshot-failed": [15, "Starting Python without its snapshot…"],
  ready: [100, "Python ready"],
};
const bootStarted = performance.now();

py.onProgress = (stage, detail) => {
  performance.mark(`lockbox:stage:${stage}`); // start-up stages (tests, benchmarks)
  const [pct, text] = STAGES[stage] || [null, stage];
  if (pct != null) $("runtime-progress").value = pct;
  $("runtime-text").textContent = text + (detail && stage === "pyodide" ? ` ${detail}` : "");
};
// A creeping bar while Pyodide downloads (it reports no byte progress of its own).
const creep = setInterval(() => {
  const bar = $("runtime-progress");
  if (py.ready || py.failed) return clearInterval(creep);
  if (bar.value >= 15 && bar.value < 70) bar.value += 1;
}, 120);

// A start-up that takes far too long is reported (it keeps going): a slow network, or a
// server answering in a way that makes Pyodide wait forever.
const SLOW_START_MS = Number(localStorage.getItem("lockbox.slowStartMs") || "") || 90_000;
const slowStart = setTimeout(() => {
  if (py.ready || py.failed) return;
  document.documentElement.dataset.python = "slow";
  showAlert({ kind: "internal", title: "Python is taking long to start",
              message: `Python (about 14 MB) has not started after ${Math.round(SLOW_START_MS / 1000)} s. ` +
                "It may still be downloading on a slow connection. If it never starts, check that " +
                "the web server serves .wasm files as application/wasm.",
              detail: "" }, { label: "Reload the page", run: () => location.reload() });
}, SLOW_START_MS);

py.onReady = (msg) => {
  clearInterval(creep);
  clearTimeout(slowStart);
  if (document.documentElement.dataset.python === "slow") hideAlert();
  performance.mark("lockbox:ready", { detail: { seconds: msg.seconds, boot: msg.boot || null } });
  document.documentElement.dataset.python = "ready";
  // "snapshot": Python restored from the site's memory snapshot; "started": started
  // afresh (no snapshot, or it could not be used: msg.boot.fallback says why).
  document.documentElement.dataset.pythonStart = msg.boot && msg.boot.snapshot ? "snapshot" : "started";
  $("runtime-progress").value = 100;
  $("runtime-text").textContent = `Python ready (${msg.seconds.toFixed(1)} s)`;
  $("runtime").classList.add("ok");
  const v = msg.versions || {};
  $("versions").textContent =
    `lockbox ${v.lockbox} · Python ${v.python} · Pyodide ${v.pyodide} · decrypted locally`;
  setTimeout(() => $("runtime-progress").classList.add("done"), 800);
};
py.onFailed = (reason) => {
  clearInterval(creep);
  clearTimeout(slowStart);
  document.documentElement.dataset.python = "failed";
  $("runtime-text").textContent = "Python could not start";
  $("runtime").classList.add("bad");
  showBusy(null);
  handleError({ kind: "internal", title: "The viewer could not start Python",
                message: "Python (Pyodide) did not start, so archives cannot be opened. " +
                  "Reload the page to try again.", detail: String(reason) }, "python");
};
py.started.catch((err) => py.fail(`the site's manifest could not be read: ${err.message || err}`));

// ------------------------------------------------------------------ busy indicators

function showBusy(text, where = state.view) {
  for (const id of ["open-busy", "unlock-busy"]) {
    const node = $(id);
    const mine = text && ((where === "open" && id === "open-busy") ||
                          (where === "unlock" && id === "unlock-busy"));
    node.hidden = !mine;
    node.textContent = mine ? text : "";
  }
  document.body.classList.toggle("working", !!text);
}

const waitText = (text) => (py.ready ? text : `${text} (waiting for Python to start)`);

// ------------------------------------------------------------------ open

async function openUrl(url, { path = null } = {}) {
  hideAlert();
  closeArchiveState();
  if (state.link && state.link.url !== url) state.link = null; // a key opens its own archive
  state.pendingPath = path;
  state.source = { kind: "url", url };
  $("url").value = url;
  setView("open");
  showBusy(waitText("Opening…"), "open");
  const r = await py.call("open_url", { url });
  showBusy(null);
  if (r.error) {
    handleError(r.error);
    return false;
  }
  writeHash();
  await opened(r.ok);
  return true;
}

// "<store URL>#id=<64 hex>": a snapdir snapshot (the store's folder, then its id).
const SNAP_LOCATION = /^(https?:\/\/[^#]*)#id=([^&#]*)$/i;

async function openSnap(store, id, { path = null } = {}) {
  hideAlert();
  closeArchiveState();
  state.link = null;
  state.pendingPath = path;
  state.source = { kind: "snap", store, id };
  $("url").value = `${store}#id=${id}`;
  setView("open");
  showBusy(waitText("Opening the snapshot…"), "open");
  const r = await py.call("open_snap", { store, id });
  showBusy(null);
  if (r.error) {
    handleError(r.error);
    return false;
  }
  state.source = { kind: "snap", store: r.ok.store, id: r.ok.id };
  writeHash();
  await opened(r.ok);
  return true;
}

// The URL field: an archive's URL, or a snapshot's "<store URL>#id=<id>".
function openLocation(text, options = {}) {
  const m = SNAP_LOCATION.exec(text);
  return m ? openSnap(m[1], m[2], options) : openUrl(text, options);
}

async function openFile(file) {
  hideAlert();
  closeArchiveState();
  state.link = null;
  state.pendingPath = null;
  state.source = { kind: "file", file };
  setView("open");
  showBusy(waitText(`Opening ${file.name}…`), "open");
  const r = await py.call("open_blob", { name: file.name }, file);
  showBusy(null);
  if (r.error) {
    handleError(r.error);
    return false;
  }
  writeHash();
  await opened(r.ok);
  return true;
}

// After open_*: an encrypted archive asks for its secret (or is unlocked with the share
// link's key it was opened with); any other is shown at once.
function opened(probe) {
  state.probe = probe;
  const link = state.link;
  if (!probe.encrypted) {
    state.link = null; // nothing to unlock: the key is not needed
    return enterBrowse(probe.info);
  }
  const src = state.source;
  if (link && src && src.kind === "url" && src.url === link.url) return unlockWithLink(probe, link);
  return showUnlock(probe);
}

// A share link: unlock with its key, no prompt (the open view stays, busy, until the
// listing shows). A key that does not open the archive (revoked, wrong) or is not a key
// (damaged when copied) gets its one-line message on the unlock form, which offers the
// archive's other ways in (password, identity file).
async function unlockWithLink(probe, link) {
  const epoch = state.epoch;
  document.body.dataset.shareLink = "unlocking";
  showBusy(waitText("Unlocking with the share link…"), "open");
  const r = await py.call("unlock", { link: link.key });
  if (epoch !== state.epoch) return;
  showBusy(null);
  if (!r.error) {
    document.body.dataset.shareLink = "opened";
    await enterBrowse(r.ok);
    return;
  }
  if (r.error.kind !== "wrong_key" && r.error.kind !== "usage") {
    // not about the key (network, damaged archive...): the key is kept for "Open again"
    document.body.dataset.shareLink = "failed";
    showUnlock(probe);
    handleError(r.error);
    return;
  }
  state.link = null; // refused: of no further use
  document.body.dataset.shareLink = r.error.kind === "wrong_key" ? "refused" : "invalid";
  showUnlock(probe);
  const other = unlockHow(probe.methods, false);
  $("unlock-error").textContent = `${r.error.title}: ${r.error.message}` +
    (other ? ` Unlock it with ${other} instead.` : "");
  $("unlock-error").hidden = false;
}

// A share link's fragment without the archive's URL (cut short when copied): its key is
// of no use (and already out of the address bar).
function linkWithoutArchive() {
  document.body.dataset.shareLink = "invalid";
  showAlert({ kind: "usage", title: "Not a complete share link",
              message: "This share link has no archive address (#url=…): it was cut short " +
                "when it was copied. Open the whole link again.", detail: "" });
}

// What unlocks an archive, from its probe's methods, for people; with link = false, only
// what the unlock form offers ("" if nothing).
function unlockHow(methods, link = true) {
  if (methods.includes("passphrase")) return "its passphrase (an age vault)";
  const pw = methods.includes("password");
  const id = methods.includes("identity");
  const form = pw && id ? "a password or an identity file" : id ? "an identity file"
    : pw ? "a password" : "";
  if (!link || !methods.includes("link")) return form;
  return form ? `${form}, or a share link` : "a share link";
}

function reopen() {
  const src = state.source;
  if (!src) return setView("open");
  if (src.kind === "snap") return openSnap(src.store, src.id, { path: state.dir || null });
  return src.kind === "url" ? openUrl(src.url, { path: state.dir || null }) : openFile(src.file);
}

function showUnlock(probe) {
  state.probe = probe;
  setView("unlock");
  $("unlock-name").textContent = probe.name;
  $("pw-user").value = probe.location || probe.name; // lets password managers tell archives apart
  const passphrase = probe.methods.includes("passphrase");
  const how = unlockHow(probe.methods) || "a password";
  const sync = probe.sync;
  $("unlock-meta").textContent = [fmtBytes(probe.size), probe.format_title,
    probe.generation != null ? `generation ${probe.generation}` : "",
    sync ? `${sync.payload.content_type}, ${fmtBytes(sync.payload.size)} encrypted` : "",
    `unlocks with ${how}`].filter(Boolean).join(" · ");
  $("password-label").textContent = passphrase ? "Passphrase" : "Password";
  $("form-password").hidden = !(probe.methods.includes("password") || passphrase);
  $("identity-block").hidden = !probe.methods.includes("identity");
  $("unlock-error").hidden = true;
  $("password").value = "";
  (probe.methods.includes("identity") && !probe.methods.includes("password")
    ? $("btn-identity") : $("password")).focus();
}

async function unlock(args) {
  $("unlock-error").hidden = true;
  hideAlert();
  showBusy(waitText("Unlocking…"), "unlock");
  $("btn-unlock").disabled = true;
  const r = await py.call("unlock", args);
  $("btn-unlock").disabled = false;
  showBusy(null);
  if (r.error) {
    if (r.error.kind === "wrong_key" || r.error.kind === "usage") {
      $("unlock-error").textContent = `${unlockErrorTitle(r.error, args)}: ${r.error.message}`;
      $("unlock-error").hidden = false;
      if (args.identity) {
        $("btn-identity").focus();
      } else {
        $("password").select();
        $("password").focus();
      }
    } else {
      handleError(r.error);
    }
    return;
  }
  $("password").value = "";
  await enterBrowse(r.ok);
}

// The archive is open (and unlocked): list it. Env values exist in .lbox archives only.
async function enterBrowse(info) {
  state.info = info;
  $("btn-env").hidden = !info.lbox;
  document.body.dataset.format = info.format;
  setView("browse");
  showSyncPanel(info.sync || null);
  showSnapPanel(info.snap || null);
  if (info.listing === "walk") runWalk(state.epoch);
  const target = state.pendingPath;
  state.pendingPath = null;
  // A .sync holds one file, its payload: it is previewed at once.
  if (target) await goToPath(target);
  else if (info.sync) await goToPath(info.sync.payload.path);
  else await navigate("");
}

// The title of an unlock error. Python's title for a wrong key is neutral ("Wrong key");
// name the secret actually given (its message stays Python's).
function unlockErrorTitle(err, args) {
  if (err.kind !== "wrong_key") return err.title || "Error";
  if (state.probe && state.probe.methods && state.probe.methods.includes("passphrase")) {
    return "Wrong passphrase";
  }
  return args.identity ? "Wrong identity file" : "Wrong password";
}

// A deep-link path: a folder is listed; a file is previewed inside its folder.
async function goToPath(path) {
  const clean = path.replace(/^\/+|\/+$/g, "");
  if (!clean) {
    closePreview();
    return navigate("");
  }
  const st = await py.call("stat", { path: clean });
  if (st.error) {
    await navigate("");
    handleError(st.error);
    return;
  }
  if (st.ok.type === "dir") {
    closePreview();
    return navigate(clean);
  }
  await navigate(parentOf(clean), { select: baseOf(clean) });
  return showPreview(clean, st.ok);
}

function closeArchiveState() {
  state.epoch++;
  clearTransfers();
  state.probe = null;
  state.info = null;
  state.listing = null;
  state.order = null;
  state.dir = "";
  state.listCache.clear();
  state.walk = null;
  clearTimeout(state.refreshTimer);
  state.refreshTimer = null;
  state.failed.clear();
  delete document.body.dataset.format;
  closePreview();
  showSyncPanel(null);
  showSnapPanel(null);
  for (const d of document.querySelectorAll("dialog[open]")) d.close();
}

async function closeArchive() {
  await py.call("close");
  closeArchiveState();
  state.source = null;
  state.link = null;
  history.replaceState(null, "", location.pathname + location.search);
  setView("open");
  $("url").focus();
  listServedArchives();
}

// ------------------------------------------------------------------ archives on this server

// When the viewer is served by `lockbox serve`, api/archives (next to the page) lists the
// archives it serves: {archives: [{name, url, size, mtime}], total, truncated}. Each becomes
// a link that opens it (the same #url=… as a deep link). Served anywhere else (a static host
// answers 404, or something that is not that JSON), nothing is shown. Names are data: they
// only ever go into textContent.
async function listServedArchives() {
  let listing;
  try {
    const resp = await fetch(new URL("api/archives", location.href),
                             { cache: "no-cache", headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    listing = await resp.json();
  } catch {
    $("served").dataset.state = "unavailable"; // not `lockbox serve`: keep what is shown
    return;
  }
  const items = Array.isArray(listing?.archives) ? listing.archives : [];
  const rows = [];
  for (const item of items) {
    if (typeof item?.name !== "string" || typeof item?.url !== "string") continue;
    let url;
    try {
      url = new URL(item.url, location.href);
    } catch {
      continue;
    }
    if (url.origin !== location.origin) continue; // the server's own archives only
    const link = el("a", { href: "#" + new URLSearchParams({ url: url.href }), text: item.name,
                           "data-url": url.href });
    link.addEventListener("click", (e) => {
      if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
      e.preventDefault(); // open it even if the hash already names it
      openUrl(url.href);
    });
    const when = Date.parse(item.mtime);
    const meta = [Number.isFinite(item.size) ? fmtBytes(item.size) : "",
                  Number.isFinite(when) ? fmtDate(when) : ""].filter(Boolean).join(" · ");
    rows.push(el("li", {}, link, el("span", { class: "meta", text: meta })));
  }
  $("served-list").replaceChildren(...rows);
  const more = Number(listing?.total) - rows.length;
  $("served-more").hidden = !(rows.length && more > 0);
  $("served-more").textContent = more > 0
    ? `… and ${fmtInt(more)} more on this server (open them by URL).` : "";
  $("served").hidden = !rows.length;
  $("served").dataset.state = rows.length ? "listed" : "empty";
}

// ------------------------------------------------------------------ hash (deep links)

function readHash() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  return { url: params.get("url"), path: params.get("path"), store: params.get("store"),
           id: params.get("id") };
}

function writeHash(path = null) {
  const src = state.source;
  if (!src || (src.kind !== "url" && src.kind !== "snap")) return;
  const params = new URLSearchParams();
  if (src.kind === "snap") {
    params.set("store", src.store);
    params.set("id", src.id);
  } else {
    params.set("url", src.url);
  }
  if (path) params.set("path", path);
  const hash = "#" + params.toString();
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

// The hash names what is open: the same archive or snapshot goes to the path, another opens.
function openFromHash({ url, path, store, id }) {
  const src = state.source;
  if (store && id) {
    if (src && src.kind === "snap" && src.store === store && src.id === id && state.info) {
      goToPath(path || "");
    } else {
      openSnap(store, id, { path });
    }
    return true;
  }
  if (!url) return false;
  if (src && src.kind === "url" && src.url === url && state.info) {
    goToPath(path || "");
  } else {
    openLocation(url, { path });
  }
  return true;
}

// A share link pasted into the address bar while the viewer is open: its key is taken out
// of it at once, as at start.
window.addEventListener("hashchange", () => {
  const link = takeShareKey();
  if (link && !link.url) return linkWithoutArchive();
  if (link) state.link = link;
  openFromHash(readHash());
});

// ------------------------------------------------------------------ listing

const streamedListing = () => !!state.info && state.info.listing === "walk";

async function navigate(dir, { select = null } = {}) {
  const token = ++state.listToken;
  state.dir = dir;
  renderCrumbs();
  $("filter").value = "";
  // A streamed listing is asked for every time: Python holds what the walk found so far.
  let listing = streamedListing() ? null : state.listCache.get(dir);
  if (!listing) {
    $("summary").textContent = "Loading…";
    const r = await py.call("ls", { path: dir });
    if (token !== state.listToken) return;
    if (r.error) {
      $("summary").textContent = "";
      state.listing = { path: dir, names: [], types: "", sizes: [], mtimes: [], targets: {},
                        counts: { dirs: 0, files: 0, symlinks: 0, bytes: 0 } };
      applyOrder();
      handleError(r.error);
      return;
    }
    listing = r.ok;
    if (!listing.streamed) {
      if (state.listCache.size > 20) state.listCache.delete(state.listCache.keys().next().value);
      state.listCache.set(dir, listing);
    }
  }
  state.listing = listing;
  applyOrder();
  writeHash(state.preview ? state.preview.path : dir || null);
  let pos = 0;
  if (select) {
    const i = listing.names.indexOf(select);
    const p = i >= 0 ? state.order.indexOf(i) : -1;
    if (p >= 0) pos = p;
  }
  setActive(state.order.length ? pos : -1, { scroll: true });
}

function renderCrumbs() {
  const ol = $("crumbs");
  ol.replaceChildren();
  const parts = state.dir ? state.dir.split("/") : [];
  const rootName = state.probe ? state.probe.name : "archive";
  const items = [["", rootName], ...parts.map((p, i) => [parts.slice(0, i + 1).join("/"), p])];
  items.forEach(([path, label], i) => {
    const last = i === items.length - 1;
    const b = el("button", { type: "button", class: "crumb", text: label,
                             "aria-current": last ? "location" : null,
                             onclick: () => navigate(path) });
    ol.append(el("li", {}, b));
  });
}

// keep: the listing grew (a streamed walk): keep the scroll position and the active row
// (activeName: the active row's name when the listing was replaced).
function applyOrder({ keep = false, activeName = undefined } = {}) {
  const L = state.listing;
  const n = L.names.length;
  const q = $("filter").value.trim().toLowerCase();
  let activeItem = keep && activeName === undefined && state.active >= 0 && state.order
    ? state.order[state.active] : -1;
  if (keep && activeName != null) activeItem = L.names.indexOf(activeName);
  let idx = [];
  if (q) {
    for (let i = 0; i < n; i++) if (L.names[i].toLowerCase().includes(q)) idx.push(i);
  } else {
    idx = Array.from({ length: n }, (_, i) => i);
  }
  const { key, dir } = state.sort;
  // Python sends a listing sorted by name (folders first); rows a walk added since are not.
  if (key !== "name" || dir !== 1 || L.unsorted) {
    const isDir = (i) => (L.types[i] === "d" ? 0 : 1);
    const cmp = {
      name: (a, b) => isDir(a) - isDir(b) || dir * (L.names[a] < L.names[b] ? -1 : 1),
      size: (a, b) => isDir(a) - isDir(b) || dir * (L.sizes[a] - L.sizes[b]) || a - b,
      mtime: (a, b) => dir * (L.mtimes[a] - L.mtimes[b]) || a - b,
      mode: (a, b) => isDir(a) - isDir(b) || dir * ((L.modes ? L.modes[a] - L.modes[b] : 0) || a - b),
    }[key];
    idx.sort(cmp);
  }
  state.order = Int32Array.from(idx);
  for (const b of document.querySelectorAll(".list-head button")) {
    const on = b.dataset.sort === key;
    b.classList.toggle("sorted", on);
    b.dataset.dir = on ? (dir === 1 ? "asc" : "desc") : "";
    b.setAttribute("aria-pressed", on ? "true" : "false");
    b.setAttribute("aria-label", `Sort by ${b.textContent.toLowerCase()}` +
      (on ? (dir === 1 ? ", ascending" : ", descending") : ""));
  }
  updateSummary();
  const empty = $("list-empty");
  const pending = L.streamed && !L.complete;
  empty.hidden = state.order.length > 0;
  empty.textContent = n === 0 ? (pending ? "Nothing listed here yet…" : "This folder is empty.")
    : "Nothing matches the filter.";
  $("list").setAttribute("aria-label",
    `Contents of ${state.dir ? "/" + state.dir : "the archive root"}, ${fmtInt(state.order.length)} items`);
  if (keep) state.active = activeItem >= 0 ? state.order.indexOf(activeItem) : -1;
  state.active = Math.min(state.active, state.order.length - 1);
  const list = $("list");
  $("list-spacer").style.height = `${state.order.length * ROW_HEIGHT}px`;
  for (const row of rows.values()) row.remove();
  rows.clear();
  if (!keep) list.scrollTop = 0;
  renderRows();
  if (keep) {
    if (state.active >= 0) list.setAttribute("aria-activedescendant", `row-${state.active}`);
    else list.removeAttribute("aria-activedescendant");
  }
}

// "4 folders, 10 files (1.2 MiB)", the filter's matches, and a streamed listing's progress.
function updateSummary() {
  const L = state.listing;
  if (!L || !state.order) return;
  const c = L.counts;
  const parts = [];
  if (c.dirs) parts.push(`${fmtInt(c.dirs)} folder${c.dirs === 1 ? "" : "s"}`);
  parts.push(`${fmtInt(c.files)} file${c.files === 1 ? "" : "s"} (${fmtBytes(c.bytes)})`);
  if (c.symlinks) parts.push(`${fmtInt(c.symlinks)} link${c.symlinks === 1 ? "" : "s"}`);
  let summary = parts.join(", ");
  const q = $("filter").value.trim().toLowerCase();
  if (q) summary = `${fmtInt(state.order.length)} of ${fmtInt(L.names.length)} match “${q}” · ${summary}`;
  const w = state.walk;
  if (L.streamed && !L.complete && w) {
    summary += w.error ? " · the listing stopped (the archive is damaged there)"
      : ` · listing… ${fmtInt(w.entries)} entries read so far`;
  }
  $("summary").textContent = summary;
}

// ------------------------------------------------------------------ streamed listing (walk)

// Listing "walk": Python walks the whole archive once; each list_next answer holds the
// entries found since the last one, by folder. The folder shown gets its new rows at once
// (drawn at most every 200 ms); other folders are asked for when opened.
async function runWalk(epoch) {
  state.walk = { entries: 0, batches: 0, done: false, error: null };
  document.body.dataset.walk = "running";
  for (;;) {
    const r = await py.call("list_next");
    if (epoch !== state.epoch || !state.walk) return;
    const w = state.walk;
    if (r.error) {
      w.error = r.error;
      document.body.dataset.walk = "failed";
      updateSummary();
      handleError(r.error);
      return;
    }
    const b = r.ok;
    w.batches++;
    w.entries = b.entries;
    w.done = b.done;
    if (mergeBatch(b)) scheduleRefresh();
    else updateSummary();
    if (b.done) {
      document.body.dataset.walk = "done";
      return refreshStreamed(epoch);
    }
  }
}

// Appends a batch's rows for the folder shown (unless the listing holds them already).
function mergeBatch(batch) {
  const L = state.listing;
  if (!L || !L.streamed || batch.seq <= L.seq) return false;
  L.seq = batch.seq;
  const add = batch.added[L.path];
  if (!add || !add.names.length) return false;
  const base = L.names.length;
  for (let k = 0; k < add.names.length; k++) {
    L.names.push(add.names[k]);
    L.sizes.push(add.sizes[k]);
    L.mtimes.push(add.mtimes[k]);
    if (L.modes && add.modes) L.modes.push(add.modes[k]);
  }
  L.types += add.types;
  for (const [k, v] of Object.entries(add.targets)) L.targets[String(base + Number(k))] = v;
  for (const k of ["dirs", "files", "symlinks", "bytes"]) L.counts[k] += add.counts[k];
  L.unsorted = true;
  return true;
}

function scheduleRefresh() {
  if (state.refreshTimer) return;
  const wait = Math.max(0, state.lastRefresh + 200 - performance.now());
  state.refreshTimer = setTimeout(() => {
    state.refreshTimer = null;
    state.lastRefresh = performance.now();
    if (state.listing) applyOrder({ keep: true });
  }, wait);
}

// The walk ended: the folder shown gets its final listing (or "not found").
async function refreshStreamed(epoch) {
  const L = state.listing;
  if (!L || !L.streamed) return;
  const token = state.listToken;
  const r = await py.call("ls", { path: L.path });
  if (epoch !== state.epoch || token !== state.listToken) return;
  if (r.error) return handleError(r.error);
  clearTimeout(state.refreshTimer);
  state.refreshTimer = null;
  const activeName = state.active >= 0 && state.order ? L.names[state.order[state.active]] : null;
  state.listing = r.ok;
  applyOrder({ keep: true, activeName });
}

// Virtual scrolling: only the rows in view (plus some) exist in the DOM.
const rows = new Map(); // position -> element

function renderRows() {
  const list = $("list");
  const L = state.listing;
  if (!L || !state.order) return;
  const n = state.order.length;
  const top = list.scrollTop;
  const height = list.clientHeight || 600;
  const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(n, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
  for (const [pos, row] of rows) {
    if (pos < first || pos >= last) {
      row.remove();
      rows.delete(pos);
    }
  }
  for (let pos = first; pos < last; pos++) {
    let row = rows.get(pos);
    if (!row) {
      row = makeRow(pos);
      rows.set(pos, row);
      list.append(row);
    }
    const on = pos === state.active;
    row.classList.toggle("active", on);
    row.setAttribute("aria-selected", on ? "true" : "false");
  }
}

function makeRow(pos) {
  const L = state.listing;
  const i = state.order[pos];
  const type = L.types[i];
  const name = L.names[i];
  const kind = type === "d" ? "folder" : type === "l" ? "link" : "file";
  // A file that failed its check (a snapshot's damaged or missing object) is marked.
  const failed = state.failed.get(join(L.path, name)) || null;
  const mark = failed ? (failed === "not_found" ? "missing" : "damaged") : null;
  const row = el("div", {
    class: `row-item ${kind}${failed ? " failed" : ""}`, role: "option", id: `row-${pos}`,
    "aria-posinset": pos + 1, "aria-setsize": state.order.length, "data-pos": pos,
    "data-name": name, "data-type": kind, "data-failed": failed,
    title: type === "l" ? `${name} → ${L.targets[i]}` : mark ? `${name} (${mark})` : name,
  });
  row.style.transform = `translateY(${pos * ROW_HEIGHT}px)`;
  const label = type === "l" ? `${name} → ${L.targets[i]}` : name;
  const mode = L.modes ? L.modes[i] : null;
  row.append(
    el("span", { class: "col-name" }, el("span", { class: `icon ${kind}`, "aria-hidden": "true" }),
       el("span", { class: "name", text: label }),
       mark ? el("span", { class: "tag bad", text: mark }) : null),
    el("span", { class: "col-size", text: type === "f" ? fmtBytes(L.sizes[i]) : type === "d" ? "folder" : "link" }),
    el("span", { class: "col-date", text: fmtDate(L.mtimes[i]) }),
    el("span", { class: "col-mode", text: mode == null ? "" : fmtMode(mode),
                 title: mode == null ? null : fmtOctal(mode), "data-mode": mode == null ? null : fmtOctal(mode) }),
  );
  return row;
}

function setActive(pos, { scroll = false } = {}) {
  state.active = pos;
  const list = $("list");
  if (pos < 0) {
    list.removeAttribute("aria-activedescendant");
    renderRows();
    return;
  }
  if (scroll) {
    const top = pos * ROW_HEIGHT;
    if (top < list.scrollTop) list.scrollTop = top;
    else if (top + ROW_HEIGHT > list.scrollTop + list.clientHeight) {
      list.scrollTop = top + ROW_HEIGHT - list.clientHeight;
    }
  }
  renderRows();
  list.setAttribute("aria-activedescendant", `row-${pos}`);
}

function activate(pos) {
  if (pos < 0 || !state.order || pos >= state.order.length) return;
  const L = state.listing;
  const i = state.order[pos];
  const path = join(state.dir, L.names[i]);
  setActive(pos, { scroll: true });
  if (L.types[i] === "d") return navigate(path);
  if (L.types[i] === "l") {
    showAlert({ kind: "usage", title: "Symbolic link",
                message: `${L.names[i]} points to ${L.targets[i]}.` });
    return;
  }
  return showPreview(path, { size: L.sizes[i], mtime_ms: L.mtimes[i], type: "file" });
}

$("list").addEventListener("scroll", () => requestAnimationFrame(renderRows), { passive: true });
window.addEventListener("resize", () => requestAnimationFrame(renderRows));
$("list").addEventListener("click", (e) => {
  const row = e.target.closest(".row-item");
  if (row) activate(Number(row.dataset.pos));
  $("list").focus({ preventScroll: true });
});
$("list").addEventListener("keydown", (e) => {
  const n = state.order ? state.order.length : 0;
  const page = Math.max(1, Math.floor($("list").clientHeight / ROW_HEIGHT) - 1);
  let pos = state.active;
  switch (e.key) {
    case "ArrowDown": pos = Math.min(n - 1, pos + 1); break;
    case "ArrowUp": pos = Math.max(0, pos - 1); break;
    case "PageDown": pos = Math.min(n - 1, pos + page); break;
    case "PageUp": pos = Math.max(0, pos - page); break;
    case "Home": pos = 0; break;
    case "End": pos = n - 1; break;
    case "Enter": e.preventDefault(); activate(state.active); return;
    case "Backspace":
      e.preventDefault();
      if (state.dir) navigate(parentOf(state.dir), { select: baseOf(state.dir) });
      return;
    default: return;
  }
  e.preventDefault();
  if (n) setActive(Math.max(0, pos), { scroll: true });
});
$("filter").addEventListener("input", () => {
  state.active = 0;
  applyOrder();
  setActive(state.order.length ? 0 : -1);
});
$("filter").addEventListener("keydown", (e) => {
  if (e.key === "ArrowDown" || e.key === "Enter") {
    e.preventDefault();
    $("list").focus();
    if (e.key === "Enter" && state.order.length === 1) activate(0);
  }
});
for (const b of document.querySelectorAll(".list-head button")) {
  b.addEventListener("click", () => {
    const key = b.dataset.sort;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
    applyOrder();
    setActive(state.order.length ? 0 : -1);
  });
}

// ------------------------------------------------------------------ preview

function previewKind(name) {
  const ext = extOf(name);
  for (const [kind, map] of Object.entries(TYPES)) if (map[ext]) return [kind, map[ext]];
  if (TEXT_EXT.has(ext) || !name.includes(".")) return ["text", "text/plain"];
  return ["sniff", "application/octet-stream"];
}

function closePreview() {
  state.previewToken++;
  state.preview = null;
  state.previewBlob = null;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  $("preview").hidden = true;
  $("preview-body").replaceChildren();
  document.body.classList.remove("previewing");
}

const isSnap = () => !!state.info && state.info.format === "snap";

async function showPreview(path, meta) {
  await renderPreview(path, meta);
  if (isSnap()) await noteSnapChecked(path);
}

// A snapshot's file: its mode and object id in the preview's meta line, and, once shown,
// that its bytes were checked against that id (the worker releases nothing before).
async function noteSnapChecked(path) {
  const token = state.previewToken;
  const st = await py.call("stat", { path });
  if (token !== state.previewToken || st.error) return;
  const { blake3, mode } = st.ok;
  const meta = $("preview-meta");
  if (!meta.dataset.object) {
    meta.textContent += ` · ${fmtMode(mode)} · object ${blake3.slice(0, 12)}…`;
    meta.dataset.object = blake3;
  }
  const body = $("preview-body");
  if (!body.querySelector(".text-preview, .hex, .csv-wrap, .media, .pdf") || body.querySelector(".verified")) return;
  body.prepend(el("p", { class: "verified", role: "note" },
    "BLAKE3 checked in this page: these bytes are the object ", el("code", { text: blake3 }),
    " named in the snapshot's manifest."));
}

async function renderPreview(path, meta) {
  closePreview();
  const token = state.previewToken;
  const name = baseOf(path);
  state.preview = { path, size: meta.size, name };
  writeHash(path);
  $("preview").hidden = false;
  document.body.classList.add("previewing");
  $("preview-title").textContent = name;
  const mtime = meta.mtime_ms || (meta.mtime ? Date.parse(meta.mtime) : 0);
  $("preview-meta").textContent = [fmtBytes(meta.size), fmtDate(mtime), `/${path}`].filter(Boolean).join(" · ");
  delete $("preview-meta").dataset.object;
  const body = $("preview-body");
  const status = el("p", { class: "meta", role: "status",
                           text: isSnap() ? "Fetching and checking…" : "Decrypting…" });
  body.replaceChildren(status);
  const stale = () => token !== state.previewToken;
  let [kind, type] = syncPreviewKind(path) || previewKind(name);

  if (kind === "json" || kind === "csv" || kind === "tsv") {
    const r = await py.binary("read", { path, offset: 0, size: TEXT_PREVIEW });
    if (stale()) return;
    if (r.error) return previewError(r.error, path);
    if (r.ok.length === meta.size) state.previewBlob = { path, blob: new Blob([r.ok]) };
    return showStructured(kind, r.ok, meta.size, name);
  }
  if (kind === "hex") {
    const r = await py.binary("read", { path, offset: 0, size: 4096 });
    if (stale()) return;
    if (r.error) return previewError(r.error, path);
    if (r.ok.length === meta.size) state.previewBlob = { path, blob: new Blob([r.ok]) };
    return showHex(r.ok, meta.size);
  }
  if (kind === "text" || kind === "sniff") {
    const r = await py.binary("read", { path, offset: 0, size: TEXT_PREVIEW });
    if (stale()) return;
    if (r.error) return previewError(r.error, path);
    const bytes = r.ok;
    if (bytes.length === meta.size) state.previewBlob = { path, blob: new Blob([bytes]) };
    if (kind === "sniff" && !looksLikeText(bytes)) return showHex(bytes, meta.size);
    const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
    const pre = el("pre", { class: "text-preview", tabindex: "0", "aria-label": `Text of ${name}` });
    pre.textContent = text;
    const parts = [pre];
    if (meta.size > bytes.length) {
      parts.unshift(el("p", { class: "meta",
        text: `Showing the first ${fmtBytes(bytes.length)} of ${fmtBytes(meta.size)}. Download the file to see all of it.` }));
      const note = uncheckedNote(meta.size);
      if (note) parts.unshift(note);
    }
    body.replaceChildren(...parts);
    return;
  }
  if (meta.size > MEDIA_PREVIEW_MAX) {
    body.replaceChildren(el("p", { class: "meta",
      text: `This file is too large to preview here (${fmtBytes(meta.size)}). Download it instead.` }));
    return;
  }
  const bar = el("progress", { max: meta.size || 1, value: 0,
                               "aria-label": `${isSnap() ? "Fetching" : "Decrypting"} ${name}` });
  body.replaceChildren(status, bar);
  const parts = await readWhole(path, (done) => { bar.value = done; }, stale);
  if (stale()) return;
  if (parts.error) return previewError(parts.error, path);
  const blob = new Blob(parts, { type });
  const url = URL.createObjectURL(blob);
  state.previewUrl = url;
  state.previewBlob = { path, blob };
  let node;
  if (kind === "image") node = el("img", { src: url, alt: name, class: "media" });
  else if (kind === "audio") node = el("audio", { src: url, controls: true, class: "media", "aria-label": name });
  else if (kind === "video") node = el("video", { src: url, controls: true, class: "media", "aria-label": name });
  else node = el("iframe", { src: url, title: `PDF: ${name}`, class: "pdf" });
  body.replaceChildren(node);
}

// A .sync's payload is previewed by its manifest's content_type, not by its name.
function syncPreviewKind(path) {
  const sync = state.info && state.info.sync;
  if (!sync || path !== sync.payload.path) return null;
  const type = sync.payload.content_type.split(";")[0].trim().toLowerCase();
  const how = sync.payload.preview;
  if (how === "binary") return ["hex", "application/octet-stream"];
  if (["image", "audio", "video", "pdf"].includes(how)) return [how, type];
  return [how, type]; // json, csv, tsv, text
}

// JSON pretty-printed, CSV/TSV as a table (the first row as its head); text when the
// bytes do not parse (or are only the start of a larger file).
const CSV_ROWS = 1000;

function showStructured(kind, bytes, size, name) {
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  const partial = size > bytes.length;
  const parts = [];
  if (partial) {
    parts.push(el("p", { class: "meta",
      text: `Showing the first ${fmtBytes(bytes.length)} of ${fmtBytes(size)}. Download the file to see all of it.` }));
  }
  let node = null;
  if (kind === "json" && !partial) {
    try {
      node = el("pre", { class: "text-preview json-preview", tabindex: "0", "aria-label": `JSON of ${name}` });
      node.textContent = JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      parts.push(el("p", { class: "meta", text: "This is not valid JSON: shown as text." }));
      node = null;
    }
  } else if (kind === "csv" || kind === "tsv") {
    const rows = parseDelimited(text, kind === "tsv" ? "\t" : ",", CSV_ROWS + 1, partial);
    if (rows.length) {
      const table = el("table", { class: "csv-preview", "aria-label": `Table of ${name}` });
      const head = el("tr", {}, ...rows[0].map((c) => el("th", { scope: "col", text: c })));
      table.append(el("thead", {}, head));
      const body = el("tbody");
      for (const row of rows.slice(1, CSV_ROWS + 1)) body.append(el("tr", {}, ...row.map((c) => el("td", { text: c }))));
      table.append(body);
      node = el("div", { class: "csv-wrap", tabindex: "0" }, table);
      if (rows.length > CSV_ROWS + 1) {
        parts.push(el("p", { class: "meta", text: `Showing the first ${fmtInt(CSV_ROWS)} rows.` }));
      }
    }
  }
  if (!node) {
    node = el("pre", { class: "text-preview", tabindex: "0", "aria-label": `Text of ${name}` });
    node.textContent = text;
  }
  parts.push(node);
  $("preview-body").replaceChildren(...parts);
}

// RFC 4180 rows (quoted fields, doubled quotes, CRLF or LF); at most `limit` rows; a
// partial text's last (possibly cut) row is left out.
function parseDelimited(text, sep, limit, partial) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  let i = 0;
  const n = text.length;
  while (i < n && rows.length < limit) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
      } else {
        field += c;
      }
      i++;
      continue;
    }
    if (c === '"' && field === "") quoted = true;
    else if (c === sep) {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
      if (c === "\r" && text[i + 1] === "\n") i++;
    } else {
      field += c;
    }
    i++;
  }
  if (!partial && rows.length < limit && (field !== "" || row.length)) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

function previewError(err, path) {
  const box = el("div", { class: `preview-error kind-${err.kind}`, role: "alert" },
    el("strong", { text: err.title }), el("p", { text: err.message }));
  if (err.detail) box.append(el("details", {}, el("summary", { text: "Details" }), el("pre", { text: err.detail })));
  $("preview-body").replaceChildren(box);
  noteFailure(err);
  if (err.kind === "changed") handleError(err);
}

// A snapshot's file whose object is damaged or missing is marked in the listing.
function noteFailure(err) {
  if (!isSnap() || !err || !err.path || !["corrupt", "not_found"].includes(err.kind)) return;
  if (state.failed.get(err.path) === err.kind) return;
  state.failed.set(err.path, err.kind);
  redrawRows();
}

function redrawRows() {
  for (const row of rows.values()) row.remove();
  rows.clear();
  renderRows();
}

// A partial preview of a large file in a format whose checksum covers whole files only
// (.uri: one CRC per file) was not checked: say so. The download checks the whole file.
function uncheckedNote(size) {
  const max = state.info ? state.info.checked_preview_max : null;
  if (max == null || size <= max) return null;
  return el("p", { class: "unchecked", role: "note",
    text: "Not checked yet: this archive format checksums whole files only, and this preview " +
      "shows part of the file. Downloading the file checks all of it." });
}

function looksLikeText(bytes) {
  const n = Math.min(bytes.length, 8192);
  for (let i = 0; i < n; i++) if (bytes[i] === 0) return false;
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, Math.max(0, n - 4)));
    return true;
  } catch {
    return false;
  }
}

function showHex(bytes, size) {
  const n = Math.min(bytes.length, 4096);
  const lines = [];
  for (let off = 0; off < n; off += 16) {
    const row = bytes.subarray(off, Math.min(n, off + 16));
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const asc = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${off.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${asc}`);
  }
  const pre = el("pre", { class: "hex", tabindex: "0", "aria-label": "Hex dump" });
  pre.textContent = lines.join("\n");
  $("preview-body").replaceChildren(
    ...(bytes.length < size ? [uncheckedNote(size)].filter(Boolean) : []),
    el("p", { class: "meta", text: `Binary file: no preview. The first ${fmtBytes(n)} of ${fmtBytes(size)} in hex:` }),
    pre);
}

// Reads a whole file through the stream API: [Uint8Array...] or {error}.
async function readWhole(path, onProgress, stale = () => false) {
  const open = await py.call("stream_open", { path });
  if (open.error) return open;
  const { handle } = open.ok;
  const parts = [];
  let done = 0;
  for (;;) {
    if (stale()) {
      py.call("stream_close", { handle });
      return { error: { kind: "usage", title: "Cancelled", message: "" } };
    }
    const r = await py.binary("stream_next", { handle });
    if (r.error) return r;
    if (!r.ok.length) return parts;
    parts.push(r.ok);
    done += r.ok.length;
    onProgress(done);
  }
}

$("btn-preview-close").addEventListener("click", () => {
  closePreview();
  writeHash(state.dir || null);
  $("list").focus();
});

// ------------------------------------------------------------------ downloads

let transferSeq = 0;
const transfers = new Set(); // the transfer notices shown (cleared with the archive)
const DROPPED_SHOWN = 50; // lines listed of the symlinks left out of a zip

function transferItem(name, total) {
  const id = `transfer-${++transferSeq}`;
  const bar = el("progress", { max: total || 1, value: 0, id: `${id}-bar`, "aria-label": `Downloading ${name}` });
  const text = el("span", { class: "meta", text: "starting…" });
  const cancel = el("button", { type: "button", text: "Cancel", class: "small" });
  const item = el("div", { class: "transfer", id, "data-name": name },
    el("div", { class: "transfer-row" }, el("strong", { text: name }), cancel), bar, text);
  $("transfers").append(item);
  const t = { item, bar, text, cancel, cancelled: false, total, keep: false };
  transfers.add(t);
  cancel.addEventListener("click", () => { t.cancelled = true; });
  return t;
}

function removeTransfer(t) {
  t.item.remove();
  transfers.delete(t);
}

// Closing the archive (or opening another) ends its downloads and takes their notices away.
function clearTransfers() {
  for (const t of transfers) {
    t.cancelled = true;
    t.item.remove();
  }
  transfers.clear();
}

function finishTransfer(t, message, ok) {
  t.text.textContent = message;
  t.item.classList.add(ok ? "ok" : "failed");
  t.item.dataset.state = ok ? "done" : "failed";
  t.cancel.textContent = "Dismiss";
  t.cancel.onclick = () => removeTransfer(t);
  if (ok && !t.keep) setTimeout(() => removeTransfer(t), 8000);
}

// Names from the archive as shown in a notice: control and bidi characters escaped (the
// text goes into textContent, never HTML).
const visible = (s) => String(s).replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
  (c) => `\\u{${c.codePointAt(0).toString(16)}}`);

// A zip leaves out the symlinks that lead outside its folder: say so in its notice, one
// line per link (path → target: reason). The notice stays until dismissed.
function noteDroppedLinks(t, dropped) {
  if (!dropped || !dropped.length) return;
  const n = dropped.length;
  const list = el("ul", { class: "dropped-list" });
  for (const d of dropped.slice(0, DROPPED_SHOWN)) {
    list.append(el("li", { text: `${visible(d.path)} → ${visible(d.target)}: ${visible(d.reason)}` }));
  }
  if (n > DROPPED_SHOWN) list.append(el("li", { class: "meta", text: `… and ${fmtInt(n - DROPPED_SHOWN)} more` }));
  const head = n === 1 ? "1 symlink left out (it led outside the folder)"
    : `${fmtInt(n)} symlinks left out (they led outside the folder)`;
  t.item.append(el("div", { class: "dropped", "data-count": n }, el("p", { text: head }), list));
  t.keep = true;
}

const cancelled = () => ({ kind: "usage", title: "Cancelled", message: "The download was cancelled." });

function showProgress(t, done, started) {
  t.bar.value = Math.min(done, t.total);
  const secs = (performance.now() - started) / 1000;
  t.text.textContent = `${fmtBytes(done)} of ${t.total ? "≈" + fmtBytes(t.total) : "?"}` +
    (secs > 0.5 ? ` · ${fmtBytes(done / secs)}/s` : "");
}

// Streams {handle} into a sink; returns the bytes written.
async function pump(handle, t, write) {
  let done = 0;
  const started = performance.now();
  for (;;) {
    if (t.cancelled) {
      await py.call("stream_close", { handle });
      throw cancelled();
    }
    const r = await py.binary("stream_next", { handle });
    if (r.error) throw r.error;
    if (!r.ok.length) return done;
    await write(r.ok);
    done += r.ok.length;
    showProgress(t, done, started);
  }
}

// Writes a Blob the page already holds into a sink, piece by piece.
async function pumpBlob(blob, t, write) {
  const piece = 1024 * 1024;
  let done = 0;
  const started = performance.now();
  for (let at = 0; at < blob.size; at += piece) {
    if (t.cancelled) throw cancelled();
    const bytes = new Uint8Array(await blob.slice(at, at + piece).arrayBuffer());
    await write(bytes);
    done += bytes.length;
    showProgress(t, done, started);
  }
  return done;
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name, class: "visually-hidden" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// kind: "file" | "zip", or "opened" with `opened` = {handle, size, name} of a stream the
// worker has already started (the updated .sync of a hook run).
async function download(kind, path, name, sizeHint, opened = null) {
  // File System Access (showSaveFilePicker) streams to disk; it must be called while the
  // click's user activation lasts, so before any other await.
  let fileHandle = null;
  if (window.showSaveFilePicker && sizeHint >= STREAM_TO_DISK_FROM) {
    try {
      fileHandle = await window.showSaveFilePicker({ suggestedName: name });
    } catch (err) {
      if (err && err.name === "AbortError") return;
      fileHandle = null;
    }
  }
  const epoch = state.epoch;
  // A file whose preview holds all of it (decrypted and checked) is saved from there:
  // nothing is fetched or decrypted again.
  const kept = kind === "file" && state.previewBlob && state.previewBlob.path === path
    ? state.previewBlob.blob : null;
  let open;
  if (kept) {
    open = { ok: { handle: null, size: kept.size, name } };
  } else if (opened) {
    open = { ok: opened };
  } else {
    open = await py.call(kind === "zip" ? "zip_open" : "stream_open", { path });
    if (epoch !== state.epoch) { // the archive was closed meanwhile
      if (open.ok) py.call("stream_close", { handle: open.ok.handle });
      return;
    }
    if (open.error) return handleError(open.error);
  }
  const { handle, size } = open.ok;
  const saveAs = open.ok.name || name;
  const t = transferItem(saveAs, size);
  if (kind === "zip") noteDroppedLinks(t, open.ok.dropped_links);
  const from = kept ? " (from the preview)" : "";
  try {
    if (fileHandle) {
      const writable = await fileHandle.createWritable();
      try {
        const write = (chunk) => writable.write(chunk);
        const n = kept ? await pumpBlob(kept, t, write) : await pump(handle, t, write);
        await writable.close();
        finishTransfer(t, `Saved ${fmtBytes(n)}${from}`, true);
      } catch (err) {
        await writable.abort().catch(() => {});
        throw err;
      }
    } else if (kept) {
      saveBlob(kept, saveAs);
      t.bar.value = t.total;
      finishTransfer(t, `Done: ${fmtBytes(kept.size)}${from}`, true);
    } else {
      const parts = [];
      const n = await pump(handle, t, (chunk) => { parts.push(chunk); });
      saveBlob(new Blob(parts, { type: kind === "zip" ? "application/zip" : "application/octet-stream" }),
               saveAs);
      finishTransfer(t, `Done: ${fmtBytes(n)}`, true);
    }
  } catch (err) {
    if (epoch !== state.epoch) return; // closed with the archive: nothing to report
    const e = err && err.kind ? err : { kind: "internal", title: "Download failed", message: String(err) };
    finishTransfer(t, `${e.title}${e.message ? ": " + e.message : ""}`, false);
    noteFailure(e);
    if (e.kind !== "usage") handleError(e);
  }
}

$("btn-download").addEventListener("click", () => {
  const p = state.preview;
  if (p) download("file", p.path, p.name, p.size);
});
$("btn-zip").addEventListener("click", () => {
  const base = state.dir ? baseOf(state.dir) : (state.info && state.info.stem) || "archive";
  const bytes = state.listing ? state.listing.counts.bytes : 0;
  download("zip", state.dir, `${base}.zip`, bytes);
});

// ------------------------------------------------------------------ .sync: panel and update hook

// "in 52 min", "3 h ago": a rough duration for freshness.
function fmtDuration(seconds) {
  const s = Math.abs(seconds);
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${(s / 3600).toFixed(s < 10 * 3600 ? 1 : 0)} h`;
  return `${Math.round(s / 86400)} days`;
}

function setBadge(node, text, stateName) {
  node.textContent = text;
  node.dataset.state = stateName;
}

function freshnessText(fresh) {
  if (fresh.expires_at == null) return ["Fresh: never expires", "ok"];
  if (fresh.expired) {
    const ago = (Date.parse(fresh.checked_at) - Date.parse(fresh.expires_at)) / 1000;
    return [`Expired ${fmtDuration(ago)} ago`, "bad"];
  }
  return [`Fresh: expires in ${fmtDuration(fresh.expires_in_s)}`, "ok"];
}

function signatureText(sig) {
  if (sig.kind === "none") return ["Unsigned", "warn"];
  if (!sig.checked) return ["Signature: checking…", "warn"];
  if (sig.valid) return [`Signed (${sig.kind}): valid`, "ok"];
  return [`Signature does not verify${sig.reason ? ": " + sig.reason : ""}`, "bad"];
}

// A manifest value as text: strings as they are, the rest as JSON.
const valueText = (v) => (typeof v === "string" ? v : JSON.stringify(v));

const hook = { worker: null, finish: null, result: null, epoch: -1 };

function showSyncPanel(sync) {
  stopHook("closed");
  hook.result = null;
  delete document.body.dataset.hook;
  $("sync-panel").hidden = !sync;
  if (!sync) return;
  const [fresh, freshState] = freshnessText(sync.fresh);
  setBadge($("sync-fresh"), fresh, freshState);
  const [sig, sigState] = signatureText(sync.signature);
  setBadge($("sync-sig"), sig, sigState);
  const p = sync.payload;
  facts($("sync-facts"), [
    ["Payload", `${p.path} · ${p.content_type} · ${fmtBytes(p.size)} (${fmtInt(p.size)} bytes)`],
    ["Payload in the file", `offset ${fmtInt(p.offset)}, ${fmtInt(p.size)} bytes, stored`],
    ["Variant", sync.vault ? `${sync.variant} (age passphrase; decrypted in this page)` : sync.variant],
    ["Created", `${sync.fresh.created_at} by ${sync.created_by}`],
    ["Freshness", `ttl ${fmtInt(sync.fresh.ttl_s)} s` + (sync.fresh.expires_at ? `, until ${sync.fresh.expires_at}` : "")],
    ["Signer", sync.signature.kind !== "none" ? sync.signature.signer : ""],
    ["Entries", sync.entries.map((e) => `${e.name} (${fmtBytes(e.size)}${e.method !== "stored" ? ", " + e.method : ""})`).join(", ")],
  ]);
  $("sync-warnings").hidden = !sync.warnings.length;
  $("sync-warnings").textContent = sync.warnings.length
    ? `Read leniently: ${sync.warnings.join("; ")}` : "";
  const tables = $("sync-tables");
  tables.replaceChildren();
  for (const [name, table] of Object.entries(sync.manifest)) {
    const dl = el("dl", { class: "facts" });
    const rows = [];
    const walk = (prefix, obj) => {
      for (const [k, v] of Object.entries(obj)) {
        if (v && typeof v === "object" && !Array.isArray(v)) walk(`${prefix}${k}.`, v);
        else rows.push([`${prefix}${k}`, valueText(v)]);
      }
    };
    if (table && typeof table === "object" && !Array.isArray(table)) walk("", table);
    else rows.push(["", valueText(table)]);
    for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", {}, el("code", { text: v })));
    tables.append(el("h4", { text: `[${name}]` }), dl);
  }
  // The update hook: the hosts it may fetch from are granted one by one (all by default).
  $("sync-hook").hidden = !sync.hook.present;
  $("sync-hook-meta").textContent = sync.hook.present
    ? `sync.wasm runs in a sandboxed worker of this page, stopped after ${fmtInt(sync.hook.timeout_s)} s ` +
      "(policy.timeout). It may read the payload and context.json and write a new payload; " +
      "the updated .sync is then offered for download (the archive itself is not changed)."
    : "";
  const list = $("sync-hosts-list");
  list.replaceChildren();
  for (const host of sync.hook.allow_hosts) {
    list.append(el("label", {}, el("input", { type: "checkbox", value: host, checked: true }), host));
  }
  if (!sync.hook.allow_hosts.length) {
    list.append(el("span", { class: "meta", text: "none: the manifest allows no host (every request is denied)" }));
  }
  hookStatus("", "");
  $("sync-hook-log").replaceChildren();
  $("btn-hook-download").hidden = true;
  $("btn-hook-run").disabled = false;
  if (sync.signature.kind !== "none" && !sync.signature.checked) checkSignature(state.epoch);
}

async function checkSignature(epoch) {
  const r = await py.call("sync_signature");
  if (epoch !== state.epoch || !state.info || !state.info.sync) return;
  if (r.error) {
    setBadge($("sync-sig"), `Signature not checked: ${r.error.message}`, "bad");
    return;
  }
  state.info.sync.signature = r.ok;
  const [text, st] = signatureText(r.ok);
  setBadge($("sync-sig"), text, st);
}

function hookStatus(text, stateName) {
  $("sync-hook-status").textContent = text;
  $("sync-hook-status").dataset.state = stateName;
}

const HOOK_CODES = { "-1": "bad memory or UTF-8", "-2": "host not allowed", "-3": "refused (client)",
                     "-4": "body refused", "-5": "transport error" };

function logRequest(entry) {
  const result = entry.result < 0 ? `${entry.result} (${HOOK_CODES[entry.result] || "error"})`
    : `HTTP ${entry.result}, ${fmtBytes(entry.bytes)}`;
  $("sync-hook-log").append(el("li", { "data-result": entry.result,
    text: `${entry.method || "GET"} ${visible(entry.url)} → ${result}` }));
}

// Ends a run in progress (terminating its worker); `why` is reported to the run.
function stopHook(why) {
  if (hook.finish) hook.finish({ type: why });
}

function runInWorker(message, transfer, timeoutMs, onEvent) {
  return new Promise((resolve) => {
    const worker = new Worker(py.manifest.entries["hook-worker"], { type: "module", name: "lockbox hook" });
    let timer = null;
    const finish = (result) => {
      if (hook.worker !== worker) return;
      clearTimeout(timer);
      worker.terminate(); // stops the guest wherever it is, loops included
      hook.worker = null;
      hook.finish = null;
      resolve(result);
    };
    hook.worker = worker;
    hook.finish = finish;
    timer = setTimeout(() => finish({ type: "timeout" }), Math.max(1, timeoutMs));
    worker.addEventListener("message", (e) => {
      const m = e.data || {};
      if (m.type === "done" || m.type === "failed") finish(m);
      else onEvent(m);
    });
    worker.addEventListener("error", (e) => {
      e.preventDefault();
      finish({ type: "failed", reason: "trap", message: e.message || "the hook worker did not start" });
    });
    worker.postMessage(message, transfer);
  });
}

async function runSyncHook() {
  const sync = state.info && state.info.sync;
  if (!sync || hook.worker) return;
  const epoch = state.epoch;
  const stale = () => epoch !== state.epoch;
  const grants = [...document.querySelectorAll("#sync-hosts-list input")].filter((i) => i.checked)
    .map((i) => i.value);
  $("btn-hook-run").disabled = true;
  $("btn-hook-download").hidden = true;
  $("sync-hook-log").replaceChildren();
  hook.result = null;
  document.body.dataset.hook = "preparing";
  hookStatus("Preparing the hook…", "running");
  const fail = (text) => {
    if (stale()) return;
    hookStatus(text, "failed");
    document.body.dataset.hook = "failed";
    $("btn-hook-run").disabled = false;
  };
  const plan = await py.call("sync_hook_plan", { grants });
  if (stale()) return;
  if (plan.error) return fail(`The hook was not run: ${plan.error.message}`);
  const [wasm, context] = [await py.binary("sync_entry", { name: "sync.wasm" }),
                           await py.binary("sync_entry", { name: "context.json" })];
  if (stale()) return;
  if (wasm.error || context.error) return fail(`The hook was not run: ${(wasm.error || context.error).message}`);
  let payload;
  const kept = state.previewBlob && state.previewBlob.path === plan.ok.payload_path ? state.previewBlob.blob : null;
  if (kept) {
    payload = new Uint8Array(await kept.arrayBuffer());
  } else {
    const parts = await readWhole(plan.ok.payload_path, () => {}, stale);
    if (stale()) return;
    if (parts.error) return fail(`The hook was not run: ${parts.error.message}`);
    payload = new Uint8Array(await new Blob(parts).arrayBuffer());
  }
  if (stale()) return;
  const limits = plan.ok.limits;
  const started = performance.now();
  hookStatus(`Running sync.wasm (stopped after ${fmtInt(plan.ok.timeout_s)} s)…`, "running");
  document.body.dataset.hook = "running";
  $("btn-hook-stop").hidden = false;
  let result;
  try {
    result = await runInWorker(
      { type: "run", wasm: wasm.ok, payload, context: context.ok.length ? context.ok : null,
        allowHosts: plan.ok.effective_hosts, limits },
      [wasm.ok.buffer, payload.buffer], limits.timeout_ms,
      (m) => { if (m.type === "request") logRequest(m); });
  } catch (err) { // the worker could not be created (an old site without hook-worker)
    result = { type: "failed", reason: "refused", message: `its worker did not start: ${err.message || err}` };
  }
  $("btn-hook-stop").hidden = true;
  if (stale() || result.type === "closed") return;
  const secs = ((performance.now() - started) / 1000).toFixed(2);
  hook.result = result;
  if (result.type === "timeout") {
    return fail(`The hook was stopped after its time limit (${fmtInt(plan.ok.timeout_s)} s, policy.timeout). ` +
                "Nothing changed.");
  }
  if (result.type === "stopped") return fail("The hook was stopped. Nothing changed.");
  if (result.type === "failed") {
    return fail(result.reason === "refused" ? `The hook was not run: ${result.message}`
      : `The hook failed: ${result.message}. Nothing changed.`);
  }
  document.body.dataset.hook = "done";
  $("btn-hook-run").disabled = false;
  const timing = `compiled in ${result.compileMs.toFixed(0)} ms, ran in ${result.runMs.toFixed(0)} ms; ${secs} s in all`;
  if (!result.written) {
    hookStatus(result.entry === "_start"
      ? `The hook has no run(): its _start ran and what it wrote was discarded (${timing}). Nothing changed.`
      : `The hook ran and wrote nothing (${timing}): the archive stays as it is.`, "done");
    return;
  }
  hookStatus(`The hook wrote a new payload of ${fmtBytes(result.written.length)} (${timing}). ` +
             "Download the updated .sync to keep it.", "done");
  $("btn-hook-download").hidden = false;
  $("btn-hook-download").focus();
}

async function downloadUpdatedSync() {
  const result = hook.result;
  if (!result || !result.written) return;
  const epoch = state.epoch;
  const r = await py.call("sync_update", {}, new Blob([result.written]));
  if (epoch !== state.epoch) return;
  if (r.error) return handleError(r.error);
  await download("opened", "", r.ok.name, r.ok.size, r.ok);
}

$("btn-hook-run").addEventListener("click", runSyncHook);
$("btn-hook-stop").addEventListener("click", () => stopHook("stopped"));
$("btn-hook-download").addEventListener("click", downloadUpdatedSync);

// ------------------------------------------------------------------ snapdir snapshot: panel and check

const snapCheck = { running: false, stop: false, epoch: -1 };

function showSnapPanel(snap) {
  $("snap-panel").hidden = !snap;
  delete document.body.dataset.snapCheck;
  $("snap-problems").replaceChildren();
  $("snap-check-status").textContent = "";
  $("snap-check-bar").hidden = true;
  $("btn-snap-check").disabled = false;
  $("btn-snap-stop").hidden = true;
  if (!snap) return;
  setBadge($("snap-state"), "Manifest checked against the id", "ok");
  facts($("snap-facts"), [
    ["Snapshot id", snap.snapshot_id],
    ["Store", snap.store],
    ["Contents", `${fmtInt(snap.files)} file${snap.files === 1 ? "" : "s"}, ${fmtInt(snap.dirs)} folder${snap.dirs === 1 ? "" : "s"}, ${fmtBytes(snap.file_bytes)}`],
    ["Objects", `${fmtInt(snap.objects)} (${fmtBytes(snap.object_bytes)})`],
  ]);
}

// Every object fetched again and re-hashed, a step (about 8 MiB) per call; "Stop" ends it
// between two steps.
async function checkSnapshot() {
  const epoch = state.epoch;
  if ((snapCheck.running && snapCheck.epoch === epoch) || !isSnap()) return;
  snapCheck.running = true;
  snapCheck.epoch = epoch;
  snapCheck.stop = false;
  const bar = $("snap-check-bar");
  const status = $("snap-check-status");
  $("snap-problems").replaceChildren();
  $("btn-snap-check").disabled = true;
  $("btn-snap-stop").hidden = false;
  bar.hidden = false;
  bar.value = 0;
  document.body.dataset.snapCheck = "running";
  status.textContent = "Checking every object…";
  const started = performance.now();
  try {
    for (;;) {
      if (snapCheck.stop) {
        await py.call("snap_check_stop");
        if (epoch !== state.epoch) return;
        status.textContent = "Check stopped.";
        document.body.dataset.snapCheck = "stopped";
        return;
      }
      const r = await py.call("snap_check_next");
      if (epoch !== state.epoch) return;
      if (r.error) {
        status.textContent = `The check failed: ${r.error.message}`;
        document.body.dataset.snapCheck = "failed";
        return;
      }
      const p = r.ok;
      bar.max = p.objects_total || 1;
      bar.value = p.objects;
      status.textContent = `${fmtInt(p.objects)} of ${fmtInt(p.objects_total)} objects checked (${fmtBytes(p.bytes)})…`;
      if (!p.done) continue;
      const rep = p.report;
      const secs = ((performance.now() - started) / 1000).toFixed(1);
      bar.value = bar.max;
      if (rep.ok) {
        status.textContent = `Every object checks out: ${fmtInt(p.objects_total)} objects, ${fmtBytes(rep.bytes_checked)} re-hashed in ${secs} s.`;
        setBadge($("snap-state"), "Every object checked", "ok");
      } else {
        const n = rep.problems.length;
        status.textContent = `${fmtInt(n)} problem${n === 1 ? "" : "s"} found (${fmtBytes(rep.bytes_checked)} checked in ${secs} s):`;
        setBadge($("snap-state"), `${fmtInt(n)} damaged or missing`, "bad");
        $("snap-problems").replaceChildren(...rep.problems.slice(0, DROPPED_SHOWN).map((line) => el("li", { text: visible(line) })));
        if (n > DROPPED_SHOWN) $("snap-problems").append(el("li", { class: "meta", text: `… and ${fmtInt(n - DROPPED_SHOWN)} more` }));
      }
      // The files whose objects failed are marked in the listing.
      for (const [path, kind] of Object.entries(rep.failed || {})) state.failed.set(path, kind);
      redrawRows();
      document.body.dataset.snapCheck = rep.ok ? "ok" : "problems";
      return;
    }
  } finally {
    if (snapCheck.epoch === epoch) snapCheck.running = false;
    if (epoch === state.epoch) {
      bar.hidden = true; // the status line says how it ended
      $("btn-snap-check").disabled = false;
      $("btn-snap-stop").hidden = true;
    }
  }
}

$("btn-snap-check").addEventListener("click", checkSnapshot);
$("btn-snap-stop").addEventListener("click", () => { snapCheck.stop = true; });

// ------------------------------------------------------------------ dialogs: info, env, network

function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    if (v == null || v === "") continue;
    dl.append(el("dt", { text: k }), el("dd", { text: String(v) }));
  }
}

async function openInfo() {
  const r = await py.call("info");
  if (r.error) return handleError(r.error);
  const i = r.ok;
  const d = i.details || {};
  const lbox = i.lbox || null;
  const walked = i.walked && i.walked.complete ? i.walked : null;
  const snap = i.snap || null;
  const count = (k) => (d[k] != null ? d[k] : walked ? walked[k] : snap ? snap[k] : null);
  const num = (v) => (v == null ? "" : fmtInt(v));
  const content = i.file_bytes != null ? i.file_bytes : walked ? walked.bytes : null;
  facts($("info-list"), [
    ["Name", i.name], ["Location", i.location], ["Format", i.format_title],
    ["Archive size", i.archive_size != null ? `${fmtBytes(i.archive_size)} (${fmtInt(i.archive_size)} bytes)` : ""],
    ["Encryption", i.encrypted ? "encrypted; decrypted in this page"
      : snap ? "none (each file's bytes are checked against its BLAKE3 id in this page)"
        : "none (each file is checked by its CRC-32)"],
    ["Snapshot id", snap ? snap.snapshot_id : ""], ["Store", snap ? snap.store : ""],
    ["Objects", snap ? `${fmtInt(snap.objects)} (${fmtBytes(snap.object_bytes)}; files that share content share one)` : ""],
    ["Manifest", snap ? `${fmtBytes(snap.manifest_size)}, checked against the id` : ""],
    ["Generation", d.generation], ["Committed", d.committed_at ? new Date(d.committed_at).toLocaleString() : ""],
    ["Files", num(count("files"))], ["Folders", num(count("dirs"))], ["Symbolic links", num(count("symlinks"))],
    ["Content", content == null ? "" : fmtBytes(content) + (d.stored_bytes != null ? ` (stored: ${fmtBytes(d.stored_bytes)})` : "")],
    ["Chunk size", d.chunk_size ? fmtBytes(d.chunk_size) : ""], ["Env values", num(d.env_values)],
    ["Tree height", lbox ? lbox.toc_height : ""], ["Format version", d.format_version != null ? d.format_version : d.version],
    ["Archive id", d.archive_id], ["Unlocked with", lbox ? lbox.unlocked_with : ""],
  ]);
  const ul = $("info-slots");
  ul.replaceChildren();
  $("info-slots-title").hidden = ul.hidden = !lbox;
  for (const s of lbox ? lbox.slots : []) {
    const used = s.slot_id === lbox.unlocked_slot;
    ul.append(el("li", { class: used ? "used" : "" },
      el("strong", { text: s.kind }), ` ${s.detail}`, used ? el("span", { class: "tag", text: "used to unlock" }) : null));
  }
  $("dlg-info").showModal();
}

async function openEnv() {
  const r = await py.call("env");
  if (r.error) return handleError(r.error);
  const ul = $("env-list");
  ul.replaceChildren();
  if (!r.ok.length) ul.append(el("li", { class: "meta", text: "This archive has no env values." }));
  for (const { name, size } of r.ok) {
    const value = el("code", { class: "secret", text: "•".repeat(Math.min(12, Math.max(6, size))),
                               "aria-label": `${name}: hidden` });
    const btn = el("button", { type: "button", class: "small", text: "Reveal", "aria-label": `Reveal ${name}` });
    btn.addEventListener("click", async () => {
      if (value.dataset.shown) {
        value.textContent = "•".repeat(Math.min(12, Math.max(6, size)));
        value.setAttribute("aria-label", `${name}: hidden`);
        delete value.dataset.shown;
        btn.textContent = "Reveal";
        btn.setAttribute("aria-label", `Reveal ${name}`);
        return;
      }
      const v = await py.call("env_value", { name });
      if (v.error) return handleError(v.error);
      value.textContent = v.ok.binary ? `hex: ${v.ok.text}` : v.ok.text;
      value.removeAttribute("aria-label");
      value.dataset.shown = "1";
      btn.textContent = "Hide";
      btn.setAttribute("aria-label", `Hide ${name}`);
    });
    ul.append(el("li", { "data-name": name }, el("span", { class: "env-name", text: name }), value, btn));
  }
  $("dlg-env").showModal();
}

let netTimer = null;

async function refreshNet() {
  const r = await py.call("network");
  if (r.error) return;
  const n = r.ok;
  facts($("net-stats"), [
    ["Archive", n.location], ["Archive size", n.size != null ? `${fmtBytes(n.size)} (${fmtInt(n.size)} bytes)` : ""],
    ["Round trips", fmtInt(n.round_trips)], ["Requests", fmtInt(n.requests)],
    ["Bytes fetched", `${fmtBytes(n.bytes)} (${fmtInt(n.bytes)} bytes)`],
    ["Reused, not fetched again", reusedText(n.reused)],
    ["Share of the archive", n.size ? `${((100 * n.bytes) / n.size).toFixed(2)} %` : ""],
  ]);
  const tbody = $("net-log").tBodies[0];
  tbody.replaceChildren();
  for (const e of [...n.log].reverse()) {
    tbody.append(el("tr", { class: e.error ? "failed" : "" },
      el("td", { text: e.at.toFixed(2) }), el("td", { text: e.what + (e.error ? ` (${e.error})` : "") }),
      el("td", { text: e.ranges }), el("td", { text: e.requests }), el("td", { text: fmtInt(e.bytes) }),
      el("td", { text: e.ms })));
  }
}

// Verified chunks kept by the .lbox extension, or raw ranges kept for other formats.
function reusedText(reused) {
  if (!reused) return "";
  const [n, what] = reused.chunks ? [reused.chunks, "chunk"] : reused.ranges ? [reused.ranges, "read"] : [0, ""];
  return n ? `${fmtInt(n)} ${what}${n === 1 ? "" : "s"} (${fmtBytes(reused.bytes)})` : "";
}

async function openNet() {
  await refreshNet();
  $("dlg-net").showModal();
  clearInterval(netTimer);
  netTimer = setInterval(refreshNet, 1000);
}
$("dlg-net").addEventListener("close", () => clearInterval(netTimer));

for (const d of document.querySelectorAll("dialog")) {
  d.querySelector(".dlg-close").addEventListener("click", () => d.close());
  d.addEventListener("click", (e) => { if (e.target === d) d.close(); }); // backdrop
}
$("btn-info").addEventListener("click", openInfo);
$("btn-env").addEventListener("click", openEnv);
$("btn-net").addEventListener("click", openNet);
$("btn-close").addEventListener("click", closeArchive);

// ------------------------------------------------------------------ open form, files, drops

$("form-url").addEventListener("submit", (e) => {
  e.preventDefault();
  const url = $("url").value.trim();
  const link = shareLinkOf(url);
  if (link) {
    // a whole share link pasted here: its archive opens with its key, which leaves the
    // field at once (the field, and the deep link, show the archive's URL only)
    $("url").value = link.url || "";
    if (!link.url) return linkWithoutArchive();
    state.link = { url: link.url, key: link.key };
    openUrl(link.url, { path: link.path });
    return;
  }
  if (url) openLocation(url);
});

// {url, key, path} of a share link's text (…#url=…&key=…), else null.
function shareLinkOf(text) {
  const at = text.indexOf("#");
  if (at < 0) return null;
  const params = new URLSearchParams(text.slice(at + 1));
  if (!params.has("key")) return null;
  return { url: params.get("url"), key: params.get("key"), path: params.get("path") };
}
$("btn-file").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", () => {
  const f = $("file").files[0];
  $("file").value = "";
  if (f) openFile(f);
});
$("form-password").addEventListener("submit", (e) => {
  e.preventDefault();
  const pw = $("password").value;
  if (!pw) {
    $("unlock-error").textContent = `Enter the ${$("password-label").textContent.toLowerCase()}.`;
    $("unlock-error").hidden = false;
    $("password").focus();
    return;
  }
  unlock({ password: pw });
});
$("btn-identity").addEventListener("click", () => $("identity").click());
$("identity").addEventListener("change", async () => {
  const f = $("identity").files[0];
  $("identity").value = "";
  if (!f) return;
  if (f.size > 64 * 1024) {
    $("unlock-error").textContent = "This file is too large to be an identity file.";
    $("unlock-error").hidden = false;
    return;
  }
  unlock({ identity: await f.text() });
});
$("btn-unlock-back").addEventListener("click", () => closeArchive());

// Drag and drop anywhere on the page opens the dropped archive.
let dragDepth = 0;
document.addEventListener("dragenter", (e) => {
  if (![...(e.dataTransfer?.types || [])].includes("Files")) return;
  dragDepth++;
  document.body.classList.add("dragging");
});
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) document.body.classList.remove("dragging");
});
document.addEventListener("dragover", (e) => {
  if ([...(e.dataTransfer?.types || [])].includes("Files")) {
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  }
});
document.addEventListener("drop", (e) => {
  dragDepth = 0;
  document.body.classList.remove("dragging");
  const f = e.dataTransfer?.files?.[0];
  if (!f) return;
  e.preventDefault();
  openFile(f);
});

// Global keys: Escape closes the preview, "/" focuses the filter.
document.addEventListener("keydown", (e) => {
  if (state.view !== "browse" || document.querySelector("dialog[open]")) return;
  const typing = ["INPUT", "TEXTAREA"].includes(document.activeElement?.tagName);
  if (e.key === "/" && !typing) {
    e.preventDefault();
    $("filter").focus();
  } else if (e.key === "Escape" && state.preview) {
    closePreview();
    writeHash(state.dir || null);
    $("list").focus();
  }
});

// ------------------------------------------------------------------ start

setView("open");
listServedArchives();
if (startLink && !startLink.url) linkWithoutArchive();
if (!openFromHash(readHash())) $("url").focus();
