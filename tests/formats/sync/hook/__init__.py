"""Tests of lockbox.formats.sync.hook: host patterns, the wasmtime runner, the updater.

``guests.py`` builds WAT guests (compiled in the tests with ``wasmtime.wat2wasm``) and
runs a real loopback HTTP server.
"""
