"""Validators and preconditions (RFC 9110 §8.8, §13): ETag, Last-Modified, If-*.

:func:`evaluate` follows the order of §13.2.2: If-Match, else
If-Unmodified-Since (412 on failure); If-None-Match, else If-Modified-Since
(304 for GET/HEAD); then If-Range decides whether Range is honoured at all.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC

__all__ = [
    "Validators",
    "evaluate",
    "format_http_date",
    "if_range_allows",
    "make_etag",
    "parse_entity_tags",
    "parse_http_date",
]

_ETAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


@dataclass(frozen=True, slots=True)
class Validators:
    """The current validators of one file, taken from one ``fstat``."""

    etag: str  # strong, quoted
    mtime: int  # whole seconds since the epoch (what Last-Modified can say)
    mtime_ns: int
    last_modified: str  # IMF-fixdate

    @classmethod
    def from_stat(cls, st: os.stat_result) -> Validators:
        mtime = st.st_mtime_ns // 1_000_000_000
        return cls(make_etag(st), mtime, st.st_mtime_ns, format_http_date(mtime))


def make_etag(st: os.stat_result) -> str:
    """A strong ETag from (device, inode, size, mtime_ns), hashed so no inode leaks.

    A file rewritten in place within the same nanosecond timestamp keeps its
    ETag; anything that replaces it (rename, new inode) or changes its size or
    mtime gets a new one.
    """
    key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()
    return '"' + hashlib.blake2b(key, digest_size=12).hexdigest() + '"'


def format_http_date(seconds: float) -> str:
    """IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return email.utils.formatdate(seconds, usegmt=True)


def parse_http_date(value: str | None) -> int | None:
    """Seconds since the epoch for any of the three HTTP-date forms, or None."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # asctime carries no zone: it is GMT (§5.6.7)
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return int(parsed.timestamp())
    except (OverflowError, OSError, ValueError):
        return None


def parse_entity_tags(value: str) -> list[tuple[bool, str]] | None:
    """``[(weak, opaque-tag-with-quotes), ...]`` of an If-Match/If-None-Match list.

    None if the value is not a valid list (``*`` is handled by the caller).
    """
    out: list[tuple[bool, str]] = []
    pos, text = 0, value.strip()
    while pos < len(text):
        if text[pos] in ", \t":  # empty list elements are allowed
            pos += 1
            continue
        m = _ETAG.match(text, pos)
        if m is None:
            return None
        out.append((m.group(1) is not None, m.group(2)))
        pos = m.end()
    return out


def _strong_match(tags: list[tuple[bool, str]] | None, etag: str) -> bool:
    return tags is not None and any(not weak and tag == etag for weak, tag in tags)


def _weak_match(tags: list[tuple[bool, str]] | None, etag: str) -> bool:
    return tags is not None and any(tag == etag for _weak, tag in tags)


def evaluate(method: str, headers: Mapping[str, str | None], v: Validators) -> int | None:
    """412, 304, or None (go on) for a GET/HEAD of an existing file."""
    if_match = headers.get("if-match")
    if if_match is not None:
        if if_match.strip() != "*" and not _strong_match(parse_entity_tags(if_match), v.etag):
            return 412
    else:
        since = parse_http_date(headers.get("if-unmodified-since"))
        if since is not None and v.mtime > since:
            return 412
    if method not in ("GET", "HEAD"):
        return None
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if if_none_match.strip() == "*" or _weak_match(parse_entity_tags(if_none_match), v.etag):
            return 304
    else:
        since = parse_http_date(headers.get("if-modified-since"))
        if since is not None and v.mtime <= since:
            return 304
    return None


def if_range_allows(value: str | None, v: Validators, *, now_ns: int | None = None) -> bool:
    """Whether Range may be honoured given ``If-Range`` (§13.1.5).

    * an entity tag: true only for a strong match (a weak tag never matches);
    * an HTTP-date: true only if it equals Last-Modified and that Last-Modified
      is strong, which we take to mean the file's mtime is at least one second
      before now (§8.8.2.2): a file modified in the current second may still
      change within the second the date names;
    * anything else: false (serve the whole file).
    """
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        tags = parse_entity_tags(value)
        return tags is not None and len(tags) == 1 and _strong_match(tags, v.etag)
    date = parse_http_date(value)
    if date is None or date != v.mtime:
        return False
    if now_ns is None:
        now_ns = time.time_ns()
    return now_ns - v.mtime_ns >= 1_000_000_000
