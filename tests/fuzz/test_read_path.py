"""End-to-end fuzzing of the read path on real small archives (issue #4).

Two archives (``fuzz.archives``): three generations with every entry type and
layout plus env values, and one whose key directory lives in a KEYDIR page.
Hypothesis picks a structure field of the file (slot header, key directory,
commit-frame header, page header, frame header, ciphertext, tag, padding, ...)
and an edit (edge values, flips, zeroing, byte inserts/deletes, truncation,
appended garbage), optionally fixing the keyless CRC that covers the field as a
forger would. The archive is then opened, listed, read, its env listed, its
space map read and verified through the public API:

* nothing but a LockboxError ever escapes;
* whatever opens is one of the archive's real generations, and its listing, env
  and every file read are exactly that generation's (never wrong plaintext);
* a verify report without problems means every file, the listing and the env
  read back correctly;
* edits of bytes readers ignore (slot padding, garbage past ``archive_end``)
  change nothing at all.

A second test plays a key holder: it changes a frame's PLAINTEXT (commit
record, inline TOC/env/space leaves, entries, chunks, chunk indexes, with the
field tracer's edge values), re-seals it in place and fixes every ref up to the
slot, which drives the decoders behind the AEAD through the real read path:
still only LockboxErrors, and a successful read returns the genuine content of
some file of the archive (checked by BLAKE3) — forged metadata may rename or
re-mode a file, but cannot make the reader return bytes nobody wrote.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import lockbox
from lockbox.errors import LockboxError
from lockbox.formats.lbox.wire.constants import EntryType

from . import fuzz_settings
from . import strategies as S
from .archives import PASSWORD, ArchiveCase, DetCrypto, Forger, build_archives, listing, source

ARCHIVE = fuzz_settings(100, deadline_ms=10_000, archive=True)
FORGED = fuzz_settings(80, deadline_ms=10_000, archive=True)


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ArchiveCase]:
    return {c.name: c for c in build_archives(tmp_path_factory.mktemp("fuzz-archives"))}


@pytest.fixture(scope="module")
def forgers(archives: dict[str, ArchiveCase]) -> dict[str, Forger]:
    return {name: Forger(c) for name, c in archives.items()}


@dataclass
class Outcome:
    generation: int | None = None
    open_error: LockboxError | None = None
    listing: Any = None
    files: dict[str, bytes | LockboxError] = field(default_factory=dict)
    env: Any = None
    verify: Any = None
    space: Any = None
    errors: list[str] = field(default_factory=list)


def _call(out: Outcome, what: str, fn: Any) -> Any:
    try:
        return fn()
    except LockboxError as e:
        out.errors.append(f"{what}: {type(e).__name__}: {e}")
        return e
    except Exception as e:  # the property under test
        raise AssertionError(f"{what} raised {type(e).__name__}: {e}\n"
                             f"{traceback.format_exc()}") from e


def exercise(data: bytes, paths: list[str]) -> Outcome:
    """Open, list, read every path, list the env, read the space map, verify."""
    out = Outcome()
    box = _call(out, "open", lambda: lockbox.Lockbox(
        source(data), password=PASSWORD, crypto=DetCrypto(b"reader"), cache=0))
    if isinstance(box, LockboxError):
        out.open_error = box
        return out
    with box:
        out.generation = box.generation
        _call(out, "info", box.info)
        out.listing = _call(out, "ls", lambda: listing(box))
        names = set(paths)
        if not isinstance(out.listing, LockboxError):
            names |= {p for p, t, *_ in out.listing if t == EntryType.FILE}
        for p in sorted(names):
            out.files[p] = _call(out, f"read {p}", lambda p=p: box.read_bytes(p))
        out.env = _call(out, "env", lambda: dict(box.env_items()))
        out.space = _call(out, "space", box.reclaimable)
        out.verify = _call(out, "verify", box.verify)
    return out


def _ok(v: Any) -> bool:
    return not isinstance(v, LockboxError)


def check_genuine(case: ArchiveCase, out: Outcome) -> None:
    """Unauthenticated edits: what is read is exactly one real generation's state."""
    if out.open_error is not None:
        return
    state = case.states.get(out.generation)  # type: ignore[arg-type]
    assert state is not None, f"opened generation {out.generation}, which never existed"
    if _ok(out.listing):
        assert out.listing == state.listing, "listing differs from the generation's"
    for p, want in state.files.items():
        got = out.files.get(p)
        if got is not None and _ok(got):
            assert got == want, f"{p}: wrong plaintext"
    for p, got in out.files.items():
        if p not in state.files:
            assert not _ok(got), f"{p}: read a file that generation does not have"
    if _ok(out.env):
        assert out.env == state.env, "env differs from the generation's"
    if _ok(out.verify) and out.verify.ok:
        assert _ok(out.listing) and _ok(out.env), "verify passed, but listing/env failed"
        bad = [p for p in state.files if not _ok(out.files.get(p))]
        assert not bad, f"verify passed, but reading {bad} failed: {out.errors}"


def check_unchanged(case: ArchiveCase, out: Outcome) -> None:
    assert out.open_error is None, out.errors
    assert out.generation == case.newest
    state = case.states[case.newest]
    assert all(_ok(out.files[p]) for p in state.files), out.errors
    assert _ok(out.listing) and _ok(out.env) and _ok(out.space), out.errors
    assert _ok(out.verify) and out.verify.ok, (out.errors, out.verify)
    check_genuine(case, out)


@st.composite
def archive_edits(draw: st.DrawFn, case: ArchiveCase) -> tuple[bytes, str, bool]:
    """(mutated file, description, whether only ignored bytes changed)."""
    data = bytearray(case.data)
    op = draw(st.sampled_from(["field", "field", "field", "zero", "flip", "truncate",
                               "append", "insert", "unit"]))
    if op == "append":
        tail = draw(st.binary(min_size=1, max_size=64) | st.sampled_from(
            [bytes(4096), case.data[16384:16384 + 4096], case.data[-4096:]]))
        return bytes(data) + tail, f"append {len(tail)} bytes", True
    if op == "flip":
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(data), f"flip at {i}", False
    if op == "unit":
        u = draw(st.integers(0, len(data) // 4096 - 1)) * 4096
        data[u:u + 4096] = bytes(4096)
        return bytes(data), f"zero 4 KiB unit at {u}", False
    f = draw(st.sampled_from(case.fields))
    desc = f"{op} {f.label} [{f.start}, {f.end}) {f.kind}"
    ignored = f.label.endswith(".padding") and f.label.startswith("slot")
    if op == "truncate":
        cut = draw(st.sampled_from([f.start, f.end, (f.start + f.end) // 2]))
        return bytes(data[:cut]), f"truncate at {cut} ({desc})", False
    if op == "insert":
        at = draw(st.sampled_from([f.start, f.end]))
        data[at:at] = draw(st.binary(min_size=1, max_size=3))
        return bytes(data), f"insert at {at} ({desc})", False
    if op == "zero":
        data[f.start:f.end] = bytes(f.end - f.start)
    else:
        data[f.start:f.end] = draw(S.same_length_edit(bytes(data[f.start:f.end]), f.kind,
                                                      f.limit))
    out = bytes(data)
    if f.crc is not None and draw(st.booleans()):
        kind, at = f.crc
        fix = {"slot": S.fix_slot_crc, "page": S.fix_page_crc, "frame": S.fix_frame_crc}[kind]
        out = fix(out, at)
        desc += " (CRC fixed)"
    return out, desc, ignored


@pytest.mark.parametrize("name", ["multi", "external"])
def test_pristine_archives(archives: dict[str, ArchiveCase], name: str) -> None:
    case = archives[name]
    out = exercise(case.data, sorted({p for s in case.states.values() for p in s.files}))
    check_unchanged(case, out)
    assert len(case.fields) > 50


@pytest.mark.parametrize("name", ["multi", "external"])
@ARCHIVE
@given(data=st.data())
def test_mutated_archives(archives: dict[str, ArchiveCase], name: str,
                          data: st.DataObject) -> None:
    case = archives[name]
    buf, desc, ignored = data.draw(archive_edits(case))
    note(desc)
    paths = sorted({p for s in case.states.values() for p in s.files})
    out = exercise(buf, paths)
    note(f"generation {out.generation}; errors {out.errors}")
    if ignored:
        check_unchanged(case, out)
    else:
        check_genuine(case, out)


@pytest.mark.parametrize("name", ["multi", "external"])
def test_truncated_at_every_structure_boundary(archives: dict[str, ArchiveCase],
                                               name: str) -> None:
    """The file cut at the start of every page and frame: typed errors or a real state."""
    case = archives[name]
    paths = sorted({p for s in case.states.values() for p in s.files})
    cuts = sorted({f.start for f in case.fields if f.label.endswith(".header")
                   and f.kind == "raw"} | {16384, 8192, 48, 0, len(case.data) - 1})
    for cut in cuts:
        check_genuine(case, exercise(case.data[:cut], paths))


@st.composite
def forged_edits(draw: st.DrawFn, forger: Forger) -> tuple[bytes, str]:
    off = draw(st.sampled_from(forger.forgeable()))
    info = forger.frames[off]
    fields = forger.fields(off)
    plain = bytearray(info.plain)
    if draw(st.integers(0, 5)) == 0:
        i = draw(st.integers(0, len(plain) - 1))
        plain[i] ^= 1 << draw(st.integers(0, 7))
        desc = f"flip plaintext byte {i}"
    else:
        f = draw(st.sampled_from(fields))
        plain[f.start:f.end] = draw(S.same_length_edit(bytes(plain[f.start:f.end]), f.kind,
                                                       f.limit))
        desc = f"field [{f.start}, {f.end}) {f.kind}"
    return forger.forge(off, bytes(plain)), f"{info.kind.name} frame at {off}: {desc}"


@pytest.mark.parametrize("name", ["multi", "external"])
@FORGED
@given(data=st.data())
def test_forged_plaintexts(archives: dict[str, ArchiveCase], forgers: dict[str, Forger],
                           name: str, data: st.DataObject) -> None:
    case, forger = archives[name], forgers[name]
    buf, desc = data.draw(forged_edits(forger))
    note(desc)
    paths = sorted({p for s in case.states.values() for p in s.files})
    out = exercise(buf, paths)
    note(f"generation {out.generation}; errors {out.errors}")
    if out.open_error is not None:
        return
    assert out.generation in case.states
    genuine = {v for s in case.states.values() for v in s.files.values()}
    for p, got in out.files.items():
        if _ok(got):
            assert got in genuine, f"{p}: read bytes that no file of the archive holds"
    if _ok(out.verify) and out.verify.ok and _ok(out.listing):
        files = [p for p, t, *_ in out.listing if t == EntryType.FILE]
        bad = [p for p in files if not _ok(out.files.get(p))]
        assert not bad, f"verify passed, but reading {bad} failed: {out.errors}"


def test_forger_reaches_every_frame_kind(forgers: dict[str, Forger]) -> None:
    kinds = {forgers["multi"].frames[o].kind.name for o in forgers["multi"].forgeable()}
    assert {"COMMIT", "DATA_CHUNK", "CHUNK_INDEX"} <= kinds, kinds


# -- the extract path: bugs found while fuzzing (strict xfails, see the reasons) ---------------


def test_extract_forged_symlink_target_with_nul(archives: dict[str, ArchiveCase],
                                                forgers: dict[str, Forger],
                                                tmp_path: Any) -> None:
    forger = forgers["multi"]
    plain = forger.frames[forger.commit_offset].plain
    at = plain.find(b"a.txt", plain.find(b"link"))  # the target of docs/link, inline TOC
    assert at > 0
    data = forger.forge(forger.commit_offset, plain[:at] + b"a\x00txt" + plain[at + 5:])
    # A key holder's forged entry with a NUL in its target is a FormatError (FORMAT.md
    # §9), never a ValueError from os.symlink.
    with lockbox.Lockbox(source(data), password=PASSWORD, crypto=DetCrypto(b"r"),
                         cache=0) as box, pytest.raises(LockboxError):
        box.ls("docs")
        box.extract(tmp_path / "out")


def test_extract_name_longer_than_the_file_system_allows(tmp_path: Any) -> None:
    from .archives import ARGON2

    path = tmp_path / "long.lbox"
    box = lockbox.create(path, password=PASSWORD, argon2=ARGON2)
    with box.writer() as w:
        w.add_bytes("n" * 300, b"x")
    box.close()
    with lockbox.open(path, password=PASSWORD) as box:
        try:
            box.extract(tmp_path / "out")
        except LockboxError:
            pass
