"""Tests of lockbox.sources (shared conformance suite + per-source tests)."""
