"""Tests of the archive formats under lockbox.formats, one package per format."""
