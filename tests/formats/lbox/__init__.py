"""Tests of lockbox.formats.lbox behind the format-neutral protocol."""
