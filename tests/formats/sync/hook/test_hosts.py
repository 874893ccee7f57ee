"""Allow-list patterns: label boundaries, wildcards, IP literals, ports, IDNA."""

from __future__ import annotations

import pytest

from lockbox.formats.sync.hook.hosts import (
    host_allowed,
    intersect_patterns,
    invalid_patterns,
    normalize_host,
    parse_pattern,
)


@pytest.mark.parametrize(
    ("host", "patterns", "allowed"),
    [
        ("example.com", ["example.com"], True),
        ("evilexample.com", ["example.com"], False),  # sync-rs's suffix bug
        ("api.example.com", ["example.com"], False),
        ("example.com.evil.net", ["example.com"], False),
        ("EXAMPLE.com.", ["example.com"], True),
        ("example.com", ["Example.COM."], True),
        ("api.example.com", ["*.example.com"], True),
        ("a.b.example.com", ["*.example.com"], True),
        ("example.com", ["*.example.com"], False),  # the apex is not a subdomain
        ("evilexample.com", ["*.example.com"], False),
        ("api.evilexample.com", ["*.example.com"], False),
        ("sub.internal.local", ["api.example.com", "*.internal.local"], True),
        ("other.example.com", ["api.example.com", "*.internal.local"], False),
        ("127.0.0.1", ["127.0.0.1"], True),
        ("127.0.0.2", ["127.0.0.1"], False),
        ("127.0.0.1", ["*.0.0.1"], False),
        ("::1", ["::1"], True),
        ("[::1]", ["0:0::1"], True),
        ("::1", ["[::1]"], True),
        ("bücher.example", ["xn--bcher-kva.example"], True),
        ("xn--bcher-kva.example", ["BÜCHER.example"], True),
        ("anything.com", [], False),
        ("", ["example.com"], False),
        ("exa mple.com", ["exa mple.com"], False),
        ("a%20b", ["a%20b"], False),
    ],
)
def test_host_allowed(host: str, patterns: list[str], allowed: bool) -> None:
    assert host_allowed(host, patterns) is allowed


def test_ports_in_patterns() -> None:
    assert host_allowed("127.0.0.1", ["127.0.0.1:8080"], port=8080)
    assert not host_allowed("127.0.0.1", ["127.0.0.1:8080"], port=8081)
    assert not host_allowed("127.0.0.1", ["127.0.0.1:8080"])  # port unknown
    assert host_allowed("127.0.0.1", ["127.0.0.1"], port=9999)  # no port: any port
    assert host_allowed("api.example.com", ["*.example.com:443"], port=443)
    assert host_allowed("::1", ["[::1]:8080"], port=8080)
    assert not host_allowed("::1", ["[::1]:8080"], port=80)


@pytest.mark.parametrize(
    "pattern",
    ["", " example.com", "*", "*.", "*example.com", "api.*.com", "a.*", "example.com:",
     "example.com:0", "example.com:65536", "example.com:http", "[::1", "[::1]x", "*.1.2.3.4:x",
     "https://example.com", "example.com/path", "a..b", "-a.com", "[127.0.0.1]"],
)
def test_invalid_patterns_match_nothing(pattern: str) -> None:
    assert parse_pattern(pattern) is None
    assert invalid_patterns([pattern, "ok.com"]) == [pattern]
    for host in ("example.com", "a.example.com", "127.0.0.1", "::1", "a.b", "a..b"):
        assert not host_allowed(host, [pattern], port=80)


def test_normalize_host() -> None:
    assert normalize_host("Example.COM.") == "example.com"
    assert str(normalize_host("[::1]")) == "::1"
    assert normalize_host("example.com..") is None
    assert normalize_host("a" * 64 + ".com") is None
    assert normalize_host("x:80") is None


def test_intersection_never_widens() -> None:
    manifest = ["example.com", "*.api.net", "127.0.0.1", "10.0.0.1:8080"]
    grants = ["EXAMPLE.com", "evil.com", "*.api.net", "a.api.net", "*.x.api.net", "api.net",
              "127.0.0.1:9000", "10.0.0.1", "10.0.0.1:8080", "bad pattern", "example.com"]
    assert intersect_patterns(grants, manifest) == [
        "example.com", "*.api.net", "a.api.net", "*.x.api.net", "127.0.0.1:9000",
        "10.0.0.1:8080",
    ]
    assert intersect_patterns(["*.example.com"], ["api.example.com"]) == []
    assert intersect_patterns(["example.com"], []) == []
    assert intersect_patterns([], ["example.com"]) == []


def test_idna_without_the_idna_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ``idna`` is missing (a Pyodide build without it) the stdlib codec is used."""
    import sys

    monkeypatch.setitem(sys.modules, "idna", None)  # makes `import idna` fail
    assert host_allowed("bücher.example", ["xn--bcher-kva.example"])
    assert host_allowed("api.bücher.example", ["*.BÜCHER.example"])
    assert not host_allowed("bücher.example", ["bucher.example"])
