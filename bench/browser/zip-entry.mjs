// esbuild entry of the zip.js bundle used by bench.mjs (bench/bench_browser.py builds it).
export { configure, ZipReader, HttpRangeReader, Uint8ArrayWriter } from "@zip.js/zip.js";
