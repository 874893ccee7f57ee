"""Tests of lockbox.formats.sync: the .sync container, manifest, signatures, vault, hook."""
