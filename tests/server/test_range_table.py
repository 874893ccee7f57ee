"""RFC 9110 range cases, run against our server and against Debian's nginx.

Each row gives the request and what our server must answer (status,
Content-Range, Content-Length, body). The same rows run against nginx serving
the same files; where nginx answers differently, the row says so explicitly
(``nginx=...``) and docs/SERVER.md ("Differences from nginx") explains why.
Two differences apply to every row and are handled by :func:`_for_nginx`:
nginx sends an HTML page as the body of 412 and 416 answers (ours are empty),
and its ETags have another format (``"mtime-size"`` in hex).
"""

from __future__ import annotations

import email.message
from dataclasses import dataclass, replace

import httpx
import pytest

from .conftest import DATA_SIZE, Served

N = DATA_SIZE


@dataclass(frozen=True)
class Expect:
    status: int
    content_range: str | None = None
    body: tuple[int, int] | None = None  # a slice of the file; None: empty body
    parts: tuple[tuple[int, int], ...] = ()  # multipart/byteranges parts, in order
    length: int | None = -1  # Content-Length; -1: derive from the body; None: absent
    html_error: bool = False  # nginx: an HTML error page as the body

    def content_length(self) -> int | None:
        if self.length != -1:
            return self.length
        return 0 if self.body is None else self.body[1] - self.body[0]


def full(size: int = N) -> Expect:
    return Expect(200, None, (0, size))


def part(start: int, stop: int, size: int = N) -> Expect:
    return Expect(206, f"bytes {start}-{stop - 1}/{size}", (start, stop))


def head(expect: Expect) -> Expect:
    return replace(expect, body=None, length=expect.content_length())


def multi(*parts: tuple[int, int]) -> Expect:
    return Expect(206, None, None, parts, length=-2)


def unsat(size: int = N) -> Expect:
    return Expect(416, f"bytes */{size}", None)


PRECONDITION_FAILED = Expect(412)
NOT_MODIFIED = Expect(304, length=None)


@dataclass(frozen=True)
class Case:
    id: str
    headers: dict[str, str]
    ours: Expect
    nginx: Expect | None = None  # None: nginx answers the same
    method: str = "GET"
    file: str = "data.bin"
    why: str = ""  # short reason for an nginx difference (details in docs/SERVER.md)


MANY = "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 200, 2))  # 100 ranges

CASES = [
    Case("get-plain", {}, full()),
    Case("head-plain", {}, head(full()), method="HEAD"),
    Case("head-with-range", {"Range": "bytes=0-9"}, head(full()), method="HEAD",
         nginx=head(part(0, 10)), why="RFC 9110 §14.2: Range is defined for GET only"),
    Case("first-byte", {"Range": "bytes=0-0"}, part(0, 1)),
    Case("last-byte", {"Range": f"bytes={N - 1}-{N - 1}"}, part(N - 1, N)),
    Case("middle", {"Range": "bytes=100-199"}, part(100, 200)),
    Case("open-ended", {"Range": "bytes=9000-"}, part(9000, N)),
    Case("open-ended-whole", {"Range": "bytes=0-"}, part(0, N)),
    Case("suffix", {"Range": "bytes=-100"}, part(N - 100, N)),
    Case("suffix-longer-than-file", {"Range": "bytes=-20000"}, part(0, N)),
    Case("suffix-zero", {"Range": "bytes=-0"}, unsat()),
    Case("start-past-end", {"Range": "bytes=20000-"}, unsat()),
    Case("start-equals-size", {"Range": f"bytes={N}-{N + 5}"}, unsat()),
    Case("end-past-end-clamped", {"Range": "bytes=9990-20000"}, part(9990, N)),
    Case("huge-last-pos", {"Range": "bytes=0-99999999999999999999999"}, part(0, N),
         nginx=unsat(), why="nginx refuses numbers that overflow off_t"),
    Case("inverted", {"Range": "bytes=5-2"}, full(),
         nginx=unsat(), why="invalid range: we ignore Range, nginx answers 416"),
    Case("unknown-unit", {"Range": "items=0-1"}, full()),
    Case("garbage-spec", {"Range": "bytes=abc"}, full(),
         nginx=unsat(), why="invalid range: we ignore Range, nginx answers 416"),
    Case("empty-range-set", {"Range": "bytes="}, full()),
    Case("unit-case-insensitive", {"Range": "Bytes=0-1"}, part(0, 2)),
    Case("space-around-equals", {"Range": "bytes = 0-1"}, full()),
    Case("space-after-equals", {"Range": "bytes= 0-1"}, full(),
         nginx=part(0, 2), why="nginx skips spaces the grammar does not allow"),
    Case("space-inside-range", {"Range": "bytes=0 - 1"}, full(),
         nginx=part(0, 2), why="nginx skips spaces the grammar does not allow"),
    Case("ows-around-comma", {"Range": "bytes=0-1 , 5-6"}, multi((0, 2), (5, 7))),
    Case("empty-list-elements", {"Range": "bytes=0-1,,5-6"}, multi((0, 2), (5, 7)),
         nginx=unsat(), why="RFC 9110 §5.6.1: empty list elements must be accepted"),
    Case("multi-two", {"Range": "bytes=0-0,-1"}, multi((0, 1), (N - 1, N))),
    Case("multi-unordered", {"Range": "bytes=-1,0-0"}, multi((0, 1), (N - 1, N)),
         nginx=multi((N - 1, N), (0, 1)), why="we sort parts (RFC 9110 §15.3.7.2 allows it)"),
    Case("multi-overlapping", {"Range": "bytes=0-5,3-9"}, part(0, 10),
         nginx=multi((0, 6), (3, 10)), why="we coalesce overlapping ranges (§15.3.7.2)"),
    Case("multi-duplicate", {"Range": "bytes=0-0,0-0"}, part(0, 1),
         nginx=multi((0, 1), (0, 1)), why="we coalesce overlapping ranges (§15.3.7.2)"),
    Case("multi-one-satisfiable", {"Range": "bytes=0-1,20000-20001"}, part(0, 2)),
    Case("multi-none-satisfiable", {"Range": "bytes=20000-,30000-"}, unsat()),
    Case("multi-too-many", {"Range": MANY}, unsat(),
         nginx=multi(*((i, i + 1) for i in range(0, 200, 2))),
         why="more than 64 ranges: we refuse (416), nginx has no limit by default"),
    Case("if-range-etag-match", {"Range": "bytes=0-9", "If-Range": "{etag}"}, part(0, 10)),
    Case("if-range-etag-mismatch", {"Range": "bytes=0-9", "If-Range": '"nope"'}, full()),
    Case("if-range-weak-etag", {"Range": "bytes=0-9", "If-Range": "W/{etag}"}, full()),
    Case("if-range-garbage", {"Range": "bytes=0-9", "If-Range": "garbage"}, full()),
    Case("if-range-date-match", {"Range": "bytes=0-9", "If-Range": "{last_modified}"},
         part(0, 10)),
    Case("if-range-date-mismatch",
         {"Range": "bytes=0-9", "If-Range": "Sun, 13 Sep 2020 12:26:41 GMT"}, full()),
    Case("if-range-date-not-strong", {"Range": "bytes=0-9", "If-Range": "{last_modified}"},
         full(), file="future.bin", nginx=part(0, 10),
         why="Last-Modified within 1 s of now is weak (§8.8.2.2); nginx has no such rule"),
    Case("if-range-without-range", {"If-Range": '"nope"'}, full()),
    Case("if-match-mismatch", {"Range": "bytes=0-9", "If-Match": '"nope"'},
         PRECONDITION_FAILED),
    Case("if-match-match", {"Range": "bytes=0-9", "If-Match": "{etag}"}, part(0, 10)),
    Case("if-match-star", {"Range": "bytes=0-9", "If-Match": "*"}, part(0, 10)),
    Case("if-match-weak", {"Range": "bytes=0-9", "If-Match": "W/{etag}"}, PRECONDITION_FAILED),
    Case("if-match-before-416", {"Range": "bytes=20000-", "If-Match": '"nope"'},
         PRECONDITION_FAILED),
    Case("if-none-match-match", {"If-None-Match": "{etag}"}, NOT_MODIFIED),
    Case("if-none-match-weak", {"If-None-Match": "W/{etag}"}, NOT_MODIFIED),
    Case("if-none-match-other", {"Range": "bytes=0-9", "If-None-Match": '"other"'},
         part(0, 10)),
    Case("if-modified-since-same", {"If-Modified-Since": "{last_modified}"}, NOT_MODIFIED),
    Case("if-unmodified-since-older",
         {"If-Unmodified-Since": "Sun, 13 Sep 2020 12:26:39 GMT"}, PRECONDITION_FAILED),
    Case("empty-file", {}, full(0), file="empty.bin"),
    Case("empty-file-head", {}, head(full(0)), file="empty.bin", method="HEAD"),
    Case("empty-file-range", {"Range": "bytes=0-"}, unsat(0), file="empty.bin",
         nginx=full(0), why="nginx never applies ranges to an empty body"),
    Case("empty-file-suffix", {"Range": "bytes=-5"}, full(0), file="empty.bin"),
    Case("gzip-range", {"Range": "bytes=0-1", "Accept-Encoding": "gzip"}, part(0, 2)),
    Case("gzip-full", {"Accept-Encoding": "gzip, br"}, full()),
]


def _for_nginx(case: Case) -> Expect:
    expect = case.nginx or case.ours
    if expect.status in (412, 416):  # nginx's error pages are HTML
        return replace(expect, html_error=True)
    return expect


def _validators(client: httpx.Client, url: str) -> dict[str, str]:
    r = client.head(url)
    assert r.status_code == 200, r
    return {"etag": r.headers["etag"], "last_modified": r.headers["last-modified"]}


def _parse_multipart(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    msg = email.message.Message()
    msg["content-type"] = content_type
    boundary = msg.get_param("boundary")
    assert isinstance(boundary, str) and boundary, content_type
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    assert chunks[0] in (b"", b"\r\n"), chunks[0][:40]  # preamble: nothing or CRLF
    assert chunks[-1] in (b"--\r\n", b"--"), chunks[-1][:40]
    parts = []
    for chunk in chunks[1:-1]:
        assert chunk.startswith(b"\r\n") and chunk.endswith(b"\r\n"), chunk[:60]
        head, sep, data = chunk[2:-2].partition(b"\r\n\r\n")
        assert sep, chunk[:60]
        fields = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (line.decode("latin-1").partition(":") for line in head.split(b"\r\n"))
        )
        assert fields["content-type"] == "application/octet-stream"
        parts.append((fields["content-range"], data))
    return parts


def _check(r: httpx.Response, expect: Expect, content: bytes, *, ours: bool) -> None:
    size = len(content)
    assert r.status_code == expect.status, (r.status_code, r.headers, r.content[:80])
    assert "content-encoding" not in r.headers
    # nginx sends Accept-Ranges with 200 only; we send it with every answer.
    if expect.status == 200 or (ours and expect.status in (206, 304, 412, 416)):
        assert r.headers.get("accept-ranges") == "bytes"
    if expect.parts:
        assert r.headers.get("content-range") is None
        ctype = r.headers["content-type"]
        assert ctype.startswith("multipart/byteranges"), ctype
        assert r.headers["content-length"] == str(len(r.content))
        got = _parse_multipart(ctype, r.content)
        want = [(f"bytes {a}-{b - 1}/{size}", content[a:b]) for a, b in expect.parts]
        assert got == want
        return
    assert r.headers.get("content-range") == expect.content_range
    if expect.html_error:
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-length"] == str(len(r.content))
        assert r.content.lstrip().lower().startswith(b"<html>")
        return
    length = expect.content_length()
    assert r.headers.get("content-length") == (None if length is None else str(length))
    if expect.body is None:
        assert r.content == b""
    else:
        start, stop = expect.body
        assert r.content == content[start:stop]
    if expect.status in (200, 206):
        assert r.headers.get("content-type") == "application/octet-stream"


def _run(
    case: Case, expect: Expect, base: str, served: Served, client: httpx.Client, *, ours: bool
) -> None:
    url = f"{base}archives/{case.file}"
    values = _validators(client, url)
    headers = {k: v.format(**values) for k, v in case.headers.items()}
    headers.setdefault("Accept-Encoding", "identity")
    r = client.request(case.method, url, headers=headers)
    content = (served.root / case.file).read_bytes()
    _check(r, expect, content, ours=ours)


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)
    for case in CASES:
        assert (case.nginx is None) == (not case.why), case.id


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_ours(case: Case, served: Served, http: httpx.Client) -> None:
    _run(case, case.ours, served.url, served, http, ours=True)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_nginx(case: Case, served: Served, nginx_url: str, http: httpx.Client) -> None:
    _run(case, _for_nginx(case), nginx_url, served, http, ours=False)


def test_nginx_differences_are_listed() -> None:
    """The rows where nginx differs: keep in sync with docs/SERVER.md."""
    differing = sorted(c.id for c in CASES if c.nginx is not None)
    assert differing == sorted([
        "head-with-range", "huge-last-pos", "inverted", "garbage-spec", "space-after-equals",
        "space-inside-range", "empty-list-elements", "multi-unordered", "multi-overlapping",
        "multi-duplicate", "multi-too-many", "if-range-date-not-strong", "empty-file-range",
    ])


def test_etag_formats(served: Served, nginx_url: str, http: httpx.Client) -> None:
    """Both send strong ETags; nginx's is "mtime-size" in hex, ours a hash."""
    ours = http.head(served.archive("data.bin")).headers["etag"]
    theirs = http.head(f"{nginx_url}archives/data.bin").headers["etag"]
    assert ours.startswith('"') and ours.endswith('"') and len(ours) == 26
    mtime, size = theirs.strip('"').split("-")
    st = (served.root / "data.bin").stat()
    assert (int(mtime, 16), int(size, 16)) == (int(st.st_mtime), st.st_size)
