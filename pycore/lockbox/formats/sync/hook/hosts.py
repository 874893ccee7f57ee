"""Host allow-lists for the update hook: patterns matched on label boundaries.

A manifest's ``[permissions] allow_hosts`` (and an owner's grants) are lists of
*patterns*. This module decides whether a URL's host is admitted by them. Pure
Python (no I/O), so it is usable anywhere.

Pattern grammar (one string each; anything else is *invalid* and matches nothing):

* ``example.com`` — exactly that host name. It never matches ``evilexample.com``
  (sync-rs compares suffixes with no dot boundary) nor ``api.example.com``.
* ``*.example.com`` — any host strictly *below* ``example.com`` on a label boundary,
  at any depth (``api.example.com``, ``a.b.example.com``). It does NOT match the apex
  ``example.com`` itself: list both when both are meant. ``*`` may appear only as the
  whole first label; ``*`` alone, ``*example.com`` and ``api.*.com`` are invalid.
* ``127.0.0.1``, ``::1`` or ``[::1]`` — an IP literal, matched exactly (as an address:
  ``::1`` and ``0:0::1`` are the same). Wildcards never match IP addresses.
* Any of the above followed by ``:PORT`` (IPv6 in brackets: ``[::1]:8080``) — the same
  hosts, on that port only. The port compared is the URL's effective port (the
  scheme's default, 80 or 443, when the URL names none). A pattern without a port
  admits every port (sync-rs ignores ports altogether).

Normalisation, applied to patterns and hosts alike: surrounding whitespace is an
error, case is folded, one trailing dot is dropped (``example.com.`` is
``example.com``), internationalised names are compared in their IDNA (punycode)
form (``bücher.example`` is ``xn--bcher-kva.example``). A host that cannot be
normalised is never admitted.

An empty pattern list admits nothing (as in sync-rs: "an empty list denies all").
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "HostPattern",
    "parse_pattern",
    "normalize_host",
    "host_allowed",
    "invalid_patterns",
    "intersect_patterns",
]

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_MAX_NAME = 253

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class HostPattern:
    """One parsed allow-list pattern.

    ``kind`` is ``"exact"`` (a host name), ``"wildcard"`` (``*.`` + ``name``: strict
    subdomains of ``name``) or ``"ip"`` (``ip`` set); ``port`` is ``None`` for any port.
    """

    kind: str
    name: str
    ip: IPAddress | None
    port: int | None

    def __str__(self) -> str:
        if self.kind == "ip":
            assert self.ip is not None
            bracket = self.ip.version == 6 and self.port is not None
            host = f"[{self.ip}]" if bracket else str(self.ip)
        elif self.kind == "wildcard":
            host = "*." + self.name
        else:
            host = self.name
        return host if self.port is None else f"{host}:{self.port}"

    def matches(self, host: str | IPAddress, port: int | None = None) -> bool:
        """Whether this pattern admits the (already normalised) ``host`` on ``port``."""
        if self.port is not None and port != self.port:
            return False
        if self.kind == "ip":
            return not isinstance(host, str) and host == self.ip
        if not isinstance(host, str):
            return False
        if self.kind == "exact":
            return host == self.name
        return host.endswith("." + self.name)


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _name(text: str) -> str | None:
    """A host name in its normalised ASCII form, or None when it is not one."""
    if text.endswith("."):
        text = text[:-1]
    if not text:
        return None
    if not text.isascii():
        try:
            import idna  # IDNA 2008 + UTS 46 (an httpx dependency)
        except ImportError:  # e.g. Pyodide without it: the stdlib's IDNA 2003 codec
            try:
                text = text.encode("idna").decode("ascii")
            except UnicodeError:
                return None
        else:
            try:
                text = idna.encode(text, uts46=True, transitional=False).decode("ascii")
            except (idna.IDNAError, UnicodeError, ValueError):
                return None
    text = text.lower()
    if len(text) > _MAX_NAME:
        return None
    labels = text.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return None
    return text


def normalize_host(host: str) -> str | IPAddress | None:
    """A URL host in the form patterns are compared with: an IP address object for an
    IP literal (brackets optional for IPv6), else the lower-case ASCII (IDNA) name
    without a trailing dot; ``None`` when ``host`` is not a valid host."""
    if not host or host != host.strip():
        return None
    if host.startswith("[") and host.endswith("]"):
        inner = _ip(host[1:-1])
        return inner if inner is not None and inner.version == 6 else None
    address = _ip(host)
    if address is not None:
        return address
    if ":" in host:
        return None
    return _name(host)


def parse_pattern(pattern: str) -> HostPattern | None:
    """Parse one allow-list pattern (grammar in the module docstring); ``None`` when
    it is invalid (an invalid pattern admits nothing)."""
    if not isinstance(pattern, str) or not pattern or pattern != pattern.strip():
        return None
    host, port = pattern, None
    if pattern.startswith("["):
        close = pattern.find("]")
        if close < 0:
            return None
        host, rest = pattern[: close + 1], pattern[close + 1 :]
        if rest:
            if not rest.startswith(":") or not _PORT.match(rest[1:]):
                return None
            port = int(rest[1:])
    elif pattern.count(":") == 1:
        host, _, port_text = pattern.partition(":")
        if not _PORT.match(port_text):
            return None
        port = int(port_text)
    if port is not None and not 0 < port < 65536:
        return None
    if host.startswith("*."):
        name = _name(host[2:])
        if name is None or _ip(name) is not None:
            return None
        return HostPattern("wildcard", name, None, port)
    if "*" in host:
        return None
    normal = normalize_host(host)
    if normal is None:
        return None
    if isinstance(normal, str):
        return HostPattern("exact", normal, None, port)
    return HostPattern("ip", str(normal), normal, port)


def _parsed(patterns: Iterable[str]) -> list[HostPattern]:
    return [p for p in (parse_pattern(text) for text in patterns) if p is not None]


def host_allowed(host: str, patterns: Iterable[str], *, port: int | None = None) -> bool:
    """Whether ``host`` (a URL's host: name, IPv4, or IPv6 with or without brackets) on
    ``port`` (the URL's effective port; ``None`` when unknown, which only patterns
    without a port admit) is admitted by any of ``patterns``."""
    normal = normalize_host(host)
    if normal is None:
        return False
    return any(p.matches(normal, port) for p in _parsed(patterns))


def invalid_patterns(patterns: Iterable[str]) -> list[str]:
    """The patterns of the list that are invalid (and so admit nothing), for warnings."""
    return [text for text in patterns if parse_pattern(text) is None]


def _covers(outer: HostPattern, inner: HostPattern) -> bool:
    """Whether every (host, port) ``inner`` admits is admitted by ``outer``."""
    if outer.port is not None and inner.port != outer.port:
        return False
    if outer.kind == "ip" or inner.kind == "ip":
        return outer.kind == inner.kind and outer.ip == inner.ip
    if outer.kind == "exact":
        return inner.kind == "exact" and inner.name == outer.name
    # outer is a wildcard: an exact host strictly below it, or a wildcard at or below it
    if inner.kind == "exact":
        return inner.name.endswith("." + outer.name)
    return inner.name == outer.name or inner.name.endswith("." + outer.name)


def intersect_patterns(grants: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """The effective allow-list of a hook run: the grants that the manifest's
    ``allowed`` patterns cover, in their normalised text form (order kept, duplicates
    and invalid patterns dropped).

    A grant is kept when some allowed pattern admits everything the grant admits, so
    the result never admits more than either list: granting ``api.example.com`` under
    ``*.example.com`` keeps ``api.example.com``; granting ``*.example.com`` under
    ``api.example.com`` keeps nothing. (sync-rs intersects the raw strings; this is
    the same for identical entries and also honours narrower grants.)"""
    outer = _parsed(allowed)
    effective: list[str] = []
    for grant in _parsed(grants):
        text = str(grant)
        if text not in effective and any(_covers(o, grant) for o in outer):
            effective.append(text)
    return effective
