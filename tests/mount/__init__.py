"""Tests of lockbox_server.mount (lockbox mount: WebDAV)."""
