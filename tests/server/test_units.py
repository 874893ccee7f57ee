"""Unit tests of the pure parts: the Range parser and the validators."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockbox_server.conditional import (
    Validators,
    evaluate,
    format_http_date,
    if_range_allows,
    make_etag,
    parse_entity_tags,
    parse_http_date,
)
from lockbox_server.files import multipart_parts
from lockbox_server.ranges import IGNORE, MAX_RANGES, UNSATISFIABLE, content_range, parse_range


@pytest.mark.parametrize(("value", "size", "expected"), [
    (None, 10, IGNORE),
    ("bytes=0-0", 10, ((0, 1),)),
    ("bytes=0-9", 10, ((0, 10),)),
    ("bytes=0-", 10, ((0, 10),)),
    ("bytes=9-", 10, ((9, 10),)),
    ("bytes=10-", 10, UNSATISFIABLE),
    ("bytes=-1", 10, ((9, 10),)),
    ("bytes=-10", 10, ((0, 10),)),
    ("bytes=-11", 10, ((0, 10),)),
    ("bytes=-0", 10, UNSATISFIABLE),
    ("bytes=-0,-0", 10, UNSATISFIABLE),
    ("bytes=-0,0-0", 10, ((0, 1),)),
    ("bytes=3-2", 10, IGNORE),
    ("bytes=3-3", 10, ((3, 4),)),
    ("bytes=003-0004", 10, ((3, 5),)),
    ("bytes=1-2,3-4", 10, ((1, 5),)),  # adjacent ranges coalesce
    ("bytes=5-6,1-2", 10, ((1, 3), (5, 7))),  # sorted
    ("bytes=0-1,0-1", 10, ((0, 2),)),
    ("bytes=0-1,5-2", 10, IGNORE),  # one invalid range invalidates the header
    ("bytes=0-1,x", 10, IGNORE),
    ("BYTES=0-1", 10, ((0, 2),)),
    ("bytes=0-1,", 10, ((0, 2),)),
    ("bytes=\t0-1", 10, IGNORE),
    ("bytes=0-1\t,\t2-2", 10, ((0, 3),)),
    ("bytes =0-1", 10, IGNORE),
    ("bytes", 10, IGNORE),
    ("=0-1", 10, IGNORE),
    ("bytes=-", 10, IGNORE),
    ("bytes=--1", 10, IGNORE),
    ("bytes=+1-2", 10, IGNORE),
    ("bytes=1.5-2", 10, IGNORE),
    ("bytes=0x1-2", 10, IGNORE),
    ("bytes=١-٢", 10, IGNORE),  # non-ASCII digits are not DIGIT
    ("bytes=0-1;x", 10, IGNORE),
    ("none", 10, IGNORE),
    ("bytes=0-0", 0, UNSATISFIABLE),
    ("bytes=0-", 0, UNSATISFIABLE),
    ("bytes=-1", 0, IGNORE),  # satisfiable, but no byte to send: 200 with the empty body
    ("bytes=" + "9" * 5000 + "-", 10, UNSATISFIABLE),
    ("bytes=0-" + "9" * 5000, 10, ((0, 10),)),
    ("bytes=-" + "9" * 5000, 10, ((0, 10),)),
    ("bytes=" + "9" * 30 + "-" + "8" * 30, 10, IGNORE),  # inverted, beyond 64 bits
    ("bytes=" + "0" * 40 + "1-2", 10, ((1, 3),)),
])
def test_parse_range(value: str | None, size: int, expected: object) -> None:
    assert parse_range(value, size) == expected


def test_parse_range_limits_the_number_of_ranges() -> None:
    at_limit = "bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(MAX_RANGES))
    assert parse_range(at_limit, 1000) == tuple((2 * i, 2 * i + 1) for i in range(MAX_RANGES))
    over = at_limit + ",900-900"
    assert parse_range(over, 1000) is UNSATISFIABLE


def test_content_range_and_multipart() -> None:
    assert content_range(0, 1, 5) == "bytes 0-0/5"
    parts = multipart_parts([(0, 1), (3, 5)], 5, "B", "application/octet-stream")
    assert parts == [
        b"--B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-0/5\r\n\r\n",
        (0, 1),
        b"\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 3-4/5\r\n\r\n",
        (3, 5),
        b"\r\n--B--\r\n",
    ]


@pytest.mark.parametrize("value", [
    "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
    "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
    "Sun Nov  6 08:49:37 1994",  # asctime
])
def test_http_date_forms(value: str) -> None:
    assert parse_http_date(value) == 784111777


@pytest.mark.parametrize("value", [None, "", "yesterday", "Sun, 99 Nov 1994 08:49:37 GMT", "1"])
def test_http_date_invalid(value: str | None) -> None:
    assert parse_http_date(value) is None


def test_format_http_date() -> None:
    assert format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"


def test_entity_tags() -> None:
    assert parse_entity_tags('"a", W/"b" ,"c"') == [(False, '"a"'), (True, '"b"'), (False, '"c"')]
    assert parse_entity_tags('"a",,') == [(False, '"a"')]
    assert parse_entity_tags("a") is None
    assert parse_entity_tags('"a" "b"') is None
    assert parse_entity_tags('"a"b') is None


def _validators(tmp_path: os.PathLike[str], mtime: float) -> Validators:
    path = os.path.join(tmp_path, "f")
    with open(path, "wb") as f:
        f.write(b"x")
    os.utime(path, (mtime, mtime))
    return Validators.from_stat(os.stat(path))


def test_etag_changes_with_content_and_replacement(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "g")
    with open(path, "wb") as f:
        f.write(b"one")
    os.utime(path, ns=(10**18, 10**18))
    first = make_etag(os.stat(path))
    assert first == make_etag(os.stat(path))
    with open(path, "ab") as f:  # same inode, new size
        f.write(b"!")
    os.utime(path, ns=(10**18, 10**18))
    assert make_etag(os.stat(path)) != first
    replacement = os.path.join(tmp_path, "h")
    with open(replacement, "wb") as f:
        f.write(b"one")
    os.utime(replacement, ns=(10**18, 10**18))
    os.replace(replacement, path)  # same size and mtime, new inode
    assert make_etag(os.stat(path)) != first


def test_if_range_date_needs_a_strong_last_modified(tmp_path: os.PathLike[str]) -> None:
    v = _validators(tmp_path, 1_600_000_000.25)
    assert v.mtime_ns == 1_600_000_000_250_000_000
    assert if_range_allows(v.last_modified, v, now_ns=1_600_000_001_250_000_000)
    assert not if_range_allows(v.last_modified, v, now_ns=1_600_000_001_000_000_000)  # < 1 s
    assert not if_range_allows("Sun, 13 Sep 2020 12:26:41 GMT", v, now_ns=time.time_ns())
    assert if_range_allows(None, v)
    assert if_range_allows(v.etag, v)
    assert not if_range_allows("W/" + v.etag, v)
    assert not if_range_allows(f"{v.etag}, {v.etag}", v)  # not a list field
    assert not if_range_allows("*", v)


def test_preconditions_order(tmp_path: os.PathLike[str]) -> None:
    v = _validators(tmp_path, 1_600_000_000)
    lm = v.last_modified
    assert evaluate("GET", {}, v) is None
    assert evaluate("GET", {"if-match": '"x"', "if-none-match": v.etag}, v) == 412
    assert evaluate("GET", {"if-match": f'"x", {v.etag}', "if-none-match": v.etag}, v) == 304
    # If-Match present: If-Unmodified-Since is not evaluated
    epoch = "Thu, 01 Jan 1970 00:00:00 GMT"
    assert evaluate("GET", {"if-match": "*", "if-unmodified-since": epoch}, v) is None
    assert evaluate("GET", {"if-unmodified-since": epoch}, v) == 412
    assert evaluate("GET", {"if-unmodified-since": lm}, v) is None
    assert evaluate("GET", {"if-unmodified-since": "not a date"}, v) is None
    # If-None-Match present: If-Modified-Since is not evaluated
    assert evaluate("GET", {"if-none-match": '"x"', "if-modified-since": lm}, v) is None
    assert evaluate("HEAD", {"if-modified-since": lm}, v) == 304
    assert evaluate("GET", {"if-modified-since": "Sun, 13 Sep 2020 12:26:39 GMT"}, v) is None
    assert evaluate("GET", {"if-match": "garbage"}, v) == 412


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**19), st.integers(0, 10**19), st.integers(0, 10**6),
       st.sampled_from(["", "0", "00"]))
def test_parse_range_simple_form_matches_the_general_parser(
        first: int, last: int, size: int, zeros: str) -> None:
    """``bytes=a-b`` takes a shortcut; a leading space (OWS, stripped by the general
    parser) sends the same value the long way: the answers must be equal."""
    value = f"bytes={zeros}{first}-{last}"
    assert parse_range(value, size) == parse_range(" " + value, size)
    small = f"bytes={first % 1000}-{last % 1000}"
    assert parse_range(small, size % 2000) == parse_range(" " + small, size % 2000)
