"""The committed ``.uri`` vectors: golden archives (checked against the hex in
docs/formats/URI.md and against our writer), and the adversarial corpus, where every case
gives exactly its manifest's verdict per operation -- through our reader over bytes and
over a file, and through the independent strict reader."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from lockbox import errors
from lockbox.drivers import run_sync
from lockbox.errors import LockboxError
from lockbox.formats.uri import write_uri
from lockbox.info import EntryInfo
from lockbox.sources import BytesSource, FileSource

from . import VECTORS, open_session, walk_all
from . import independent as ind

DOC = Path(__file__).resolve().parents[3] / "docs" / "formats" / "URI.md"
CORPUS = VECTORS / "adversarial"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
CASES = MANIFEST["cases"]
KIND_CLASS = {"format": "FormatError", "version": "UnsupportedVersionError",
              "truncated": "TruncatedError", "limit": "LimitExceededError",
              "integrity": "IntegrityError", "unsafe": "UnsafePathError"}


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("uri_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GEN = _generator()


def test_generator_reproduces_the_committed_files():
    for path, data in GEN.files().items():
        assert path.read_bytes() == data, path


def _doc_hex(name: str) -> bytes:
    text = DOC.read_text()
    m = re.search(rf"<!-- hex:{re.escape(name)} -->\n```text\n(.*?)```", text, re.S)
    assert m, f"no hex dump of {name} in {DOC}"
    out = bytearray()
    for line in m.group(1).splitlines():
        body = line.split("|")[0].split()[1:]  # drop the offset
        out += bytes.fromhex("".join(body))
    return bytes(out)


def test_doc_hex_dump_is_the_golden_tiny_archive():
    assert _doc_hex("tiny.uri") == (VECTORS / "golden" / "tiny.uri").read_bytes()


def test_golden_archives_read_back_as_written():
    for name, entries in GEN.GOLDEN_ARCHIVES.items():
        src = FileSource(VECTORS / "golden" / name)
        s = open_session(src)
        got = walk_all(s, src)
        assert [e.path.encode("utf-8", "surrogateescape") for e in got] == [
            e.path for e in entries]
        for e, info in zip(entries, got):
            assert info.mode == e.mode & 0o7777
            assert (info.owner.encode("utf-8", "surrogateescape"),
                    info.group.encode("utf-8", "surrogateescape")) == (e.owner, e.group)
            if e.kind == b"FILE":
                assert run_sync(s.read_flow(info.path, 0, len(e.data) + 1), src) == e.data
            elif e.kind == b"SLNK":
                assert info.target.encode("utf-8", "surrogateescape") == e.data
        assert run_sync(s.verify_flow(), src).ok
        src.close()


def _pairs(entries: list[Any]) -> list[tuple[EntryInfo, Any]]:
    names = {b"FILE": "file", b"DIR ": "dir", b"SLNK": "symlink"}
    out = []
    for e in entries:
        dec = e.path.decode("utf-8", "surrogateescape")
        info = EntryInfo(dec, names[e.kind], e.mode, 0, len(e.data) if e.kind == b"FILE" else 0,
                         target=e.data.decode("utf-8", "surrogateescape")
                         if e.kind == b"SLNK" else "",
                         owner=e.owner.decode("utf-8", "surrogateescape"),
                         group=e.group.decode("utf-8", "surrogateescape"))
        out.append((info, [e.data[:7], e.data[7:]] if e.kind == b"FILE" else None))
    return out


@pytest.mark.parametrize("name", ["empty.uri", "tiny.uri", "tree.uri"])
def test_our_writer_gives_the_golden_bytes(tmp_path, name):
    report = write_uri(tmp_path / name, _pairs(GEN.GOLDEN_ARCHIVES[name]))
    assert (tmp_path / name).read_bytes() == (VECTORS / "golden" / name).read_bytes()
    assert report.skipped == [] and report.notes == []


# ------------------------------------------------------------------------ the corpus


def _class_of(e: BaseException) -> str:
    assert isinstance(e, LockboxError), f"{type(e).__name__}: {e}"
    msg = str(e)
    assert msg and "\n" not in msg, msg
    return type(e).__name__


def _outcomes(data: bytes, source_kind: str, tmp_path: Path) -> dict[str, Any]:
    if source_kind == "file":
        p = tmp_path / "case.uri"
        p.write_bytes(data)
        src: Any = FileSource(p)
    else:
        src = BytesSource(data)
    out: dict[str, Any] = {}
    try:
        session = open_session(src)
    except Exception as e:
        return {"open": _class_of(e)}
    try:
        run_sync(session.listdir_flow(""), src)
        out["entries"] = len(walk_all(session, src))  # from the index
        out["list"] = "ok"
    except Exception as e:
        out["list"] = _class_of(e)
    fresh = open_session(src)  # walk without the index: the same verdict
    try:
        walk_all(fresh, src)
        walked = "ok"
    except Exception as e:
        walked = _class_of(e)
    assert walked == out["list"]
    report = run_sync(open_session(src).verify_flow(), src)
    out["verify"] = [p.split(":", 1)[0] for p in report.problems]
    for p in report.problems:
        assert "offset" in p and "\n" not in p, p
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_corpus_case(case, tmp_path):
    data = (CORPUS / case["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == case["sha256"]
    for kind in ("bytes", "file"):
        got = _outcomes(data, kind, tmp_path)
        if "open" in case:
            assert got == {"open": case["open"]}
            continue
        assert got["list"] == case["list"], kind
        assert got["verify"] == case["verify"], kind
        if case["list"] == "ok" and "entries" in case:
            assert got["entries"] == case["entries"], kind
        src = BytesSource(data)
        session = open_session(src)
        for path, expected in case["read"].items():
            try:
                run_sync(session.read_flow(path, 0, 1 << 20), src)
                outcome = "ok"
            except Exception as e:
                outcome = _class_of(e)
            assert outcome == expected, path


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_independent_reader_reaches_the_same_verdict(case):
    data = (CORPUS / case["file"]).read_bytes()
    try:
        entries = ind.read(data)
        verdict = "ok"
    except ind.Invalid as e:
        verdict = KIND_CLASS[e.kind]
    assert verdict == case["verdict"]
    if verdict == "ok":
        assert len(entries) == case["entries"]


def test_every_error_class_is_in_the_corpus():
    verdicts = {c["verdict"] for c in CASES}
    assert verdicts >= {"FormatError", "UnsupportedVersionError", "TruncatedError",
                        "LimitExceededError", "IntegrityError", "UnsafePathError", "ok"}
    assert all(getattr(errors, v, None) for v in verdicts - {"ok"})
