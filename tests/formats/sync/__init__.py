"""Tests of lockbox.formats.sync: the .sync container (sync-rs), manifest, signatures, vault, hook."""
