// Run Python inside Pyodide under Node: the in-Pyodide half of lockbox's test command.
//
//   node --experimental-wasm-stack-switching tests/pyodide/run.mjs CONFIG.json
//
// (tests/pyodide/harness.py writes CONFIG.json, starts the test HTTP server and runs this;
// tests/test_pyodide.py drives it from the normal pytest run.)
//
// CONFIG.json:
//   indexURL  folder of the Pyodide runtime (dist/site/pyodide/<hash>/), trailing slash
//   crypto    path of the crypto bundle (dist/site/vendor/crypto.<hash>.mjs)
//   wheels    pure wheels to load, in order (lockbox's, then pytest and its dependencies)
//   mounts    {"/inside/path": "/host/path"}: host folders mounted with NODEFS
//   cwd       working directory inside Pyodide
//   sys_path  folders put first on sys.path
//   env       environment variables for Python (os.environ)
//   mode      "pytest" (run pytest.main(args), exit with its code) or "script"
//             (run the Python file `script`, exit 0 unless it raised)
//   args      pytest arguments (mode "pytest")
//   script    Python file inside Pyodide (mode "script")
//   timeout   seconds; past it the runner prints "TIMEOUT" and exits with 124
//   sync_shims  true: install test stand-ins for XMLHttpRequest (synchronous) and
//             FileReaderSync (node-sync-shims.mjs), so the sync browser sources run too
//
// --experimental-wasm-stack-switching turns on JSPI in Node 20, which Pyodide needs for
// asyncio.run() / run_until_complete() called from synchronous code (the async
// conformance suites do that). Python runs through runPythonAsync, a "promising" entry
// point, so such calls may suspend. Without the flag asyncio.run() raises
// "RuntimeError: WebAssembly stack switching not supported in this JavaScript runtime".

import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const started = performance.now();
const seconds = () => ((performance.now() - started) / 1000).toFixed(2);

const configPath = process.argv[2];
if (!configPath) {
  console.error("usage: node --experimental-wasm-stack-switching run.mjs CONFIG.json");
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, "utf8"));

// A hung Pyodide (or test) must fail, not hang: this timer fires whenever the JS event
// loop gets control (any await). A Python busy loop never yields, so the caller also
// kills this process after its own timeout.
const timeoutSeconds = config.timeout ?? 150;
setTimeout(() => {
  process.stdout.write(`\nTIMEOUT: the Pyodide run did not finish within ${timeoutSeconds} s\n`);
  process.exit(124);
}, timeoutSeconds * 1000).unref();

function fail(message) {
  process.stdout.write(`\nRUNNER ERROR: ${message}\n`);
  process.exit(3);
}

process.on("unhandledRejection", (err) => fail(`unhandled rejection: ${err?.stack ?? err}`));

const { loadPyodide } = await import(pathToFileURL(`${config.indexURL}pyodide.mjs`).href);
const pyodide = await loadPyodide({
  indexURL: config.indexURL,
  env: { NODE_VERSION: process.version, ...(config.env ?? {}) },
});
const write = (buf) => {
  process.stdout.write(buf);
  return buf.length;
};
pyodide.setStdout({ write });
pyodide.setStderr({ write });
const loadedPyodide = seconds();

if (config.crypto) {
  const mod = await import(pathToFileURL(config.crypto).href);
  globalThis.lockboxCrypto = await mod.init();
}

const errors = [];
const loaded = await pyodide.loadPackage(config.wheels ?? [], {
  messageCallback: () => {},
  errorCallback: (msg) => errors.push(msg),
});
// loadPackage resolves (to fewer packages) instead of rejecting when a load fails.
if (errors.length || loaded.length !== (config.wheels ?? []).length) {
  fail(`loadPackage: ${errors.join(" | ") || `loaded ${loaded.length} of ${config.wheels.length}`}`);
}

if (config.sync_shims) {
  const { installSyncShims } = await import("./node-sync-shims.mjs");
  installSyncShims();
}

for (const [inside, host] of Object.entries(config.mounts ?? {})) {
  pyodide.FS.mkdirTree(inside);
  pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: host }, inside);
}

pyodide.globals.set("_runner_config", pyodide.toPy(config));
await pyodide.runPythonAsync(`
import os, sys
sys.dont_write_bytecode = True  # never write cpython-314 .pyc files into the mounted repo
for _p in reversed(_runner_config.get("sys_path", [])):
    sys.path.insert(0, _p)
if _runner_config.get("cwd"):
    os.chdir(_runner_config["cwd"])
`);
process.stdout.write(
  `[pyodide-runner] Pyodide ${pyodide.version} loaded in ${loadedPyodide} s, ` +
  `crypto bundle and ${loaded.length} wheels ready at ${seconds()} s\n`,
);

let code = 0;
try {
  if (config.mode === "script") {
    const source = pyodide.FS.readFile(config.script, { encoding: "utf8" });
    await pyodide.runPythonAsync(source, { filename: config.script });
  } else {
    code = await pyodide.runPythonAsync(
      "import pytest\nint(pytest.main(list(_runner_config['args'])))",
    );
  }
} catch (err) {
  process.stdout.write(`\n${err?.message ?? err}\n`);
  code = 1;
}
process.stdout.write(`[pyodide-runner] exit code ${code} after ${seconds()} s\n`);
process.exit(code);
