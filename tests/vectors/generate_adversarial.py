#!/usr/bin/env python3
"""Deterministic generator of the adversarial corpus: damaged copies of the golden archives.

    .venv/bin/python tests/vectors/generate_adversarial.py           # adversarial/v1/
    .venv/bin/python tests/vectors/generate_adversarial.py --out DIR # elsewhere

Each case copies one golden archive of ``tests/vectors/v1`` (docs/FORMAT.md §19.6)
and damages it in one precise way: a truncation, overwritten bytes (recorded as
offset + new bytes, CRCs recomputed where the case says so), or appended
garbage. A few cases are instead archives that a hostile AUTHOR (a key holder)
writes with lockbox's own code (``tests/hostile``: two truths in one file, a 4 GiB
decoy password slot, too many password slots); they have no source, and
``built_by`` names the builder that regenerates them. ``manifest.json`` lists, per
case, the source archive (or ``built_by``), the edits, the secret, the operation
(``open``, ``ls`` — recursive, ``ls-root`` — the root directory's listing, ``read
PATH``, ``verify``, ``env``) and the expected outcome: a
``lockbox.errors`` class name, ``opens-at-generation N`` (the newest valid slot,
or the older one the reader opens in its place), ``verify-reports`` (verify()
lists a problem) or ``verify-ok``. Optional ``still_reads`` lists files that must
still read back exactly (their golden SHA-256); optional ``key_commitment``, what
the opened archive reports.

Other key-holder edits re-seal the newest commit (or one frame) of a golden archive
under its content key (:class:`KeyHolder`: a session id derived from the case name,
so the bytes are reproducible) and are recorded as overwritten bytes like any edit.

Structures are located from the cleartext (slot headers §3, page headers §4,
frame headers §5, key directory §6); which frame holds which file is taken
from the golden archive's TOC, read with its golden password. Nothing random:
regenerating gives identical bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "v1"
DEFAULT_OUT = HERE / "adversarial" / "v1"
sys.path.insert(0, str(HERE.parent))  # tests/: the ``hostile`` builders

# The crafted cases' builders: ``built_by`` in the manifest -> a function returning bytes.
BUILDERS = {
    "hostile.two_truths:two_truths_archive()":
        lambda: _hostile("two_truths").two_truths_archive(),
    "hostile.two_truths:two_truths_archive(legacy=True)":
        lambda: _hostile("two_truths").two_truths_archive(legacy=True),
    "hostile.two_truths:two_truths_archive(bob_in_newest=False)":
        lambda: _hostile("two_truths").two_truths_archive(bob_in_newest=False),
    "hostile.unlock_cost:decoy_archive()": lambda: _hostile("unlock_cost").decoy_archive(),
    "hostile.unlock_cost:too_many_password_slots_archive()":
        lambda: _hostile("unlock_cost").too_many_password_slots_archive(),
    **{f"hostile.tree_cases:{name}()": (lambda name=name: _hostile("tree_cases").CASES[name]()[0])
       for name in ("same_frame_fanout", "distinct_bombs", "entry_flood", "flood_at_limit",
                    "shared_chunks", "overlapping_refs", "internal_bombs")},
}


def _hostile(module: str) -> Any:
    import importlib

    return importlib.import_module(f"hostile.{module}")

SLOT_SIZE = 8192
SLOT_HEADER = 48
SUPERBLOCK = 16384
PAGE_HEADER = 32
FRAME_HEADER = 48
KEY_COMMITMENT = 32
_SLOT_HEAD = struct.Struct("<8sHBBI16sQII")


class Case:
    """A copy of one golden archive plus a record of every change made to it (or, with
    ``built_by``, an archive a hostile author wrote: no source, no edits)."""

    def __init__(self, name: str, source: str | None, about: str,
                 built_by: str | None = None) -> None:
        self.name = name
        self.source = source
        self.about = about
        self.built_by = built_by
        if built_by is not None:
            self.data = bytearray(BUILDERS[built_by]())
        else:
            assert source is not None
            self.data = bytearray((GOLDEN / source).read_bytes())
        self.edits: list[dict[str, Any]] = []

    def write(self, offset: int, new: bytes) -> None:
        self.data[offset : offset + len(new)] = new
        self.edits.append({"offset": offset, "bytes": new.hex()})

    def flip(self, offset: int, mask: int = 0x01) -> None:
        self.write(offset, bytes([self.data[offset] ^ mask]))

    def truncate(self, size: int) -> None:
        del self.data[size:]
        self.edits.append({"truncate_to": size})

    def append(self, extra: bytes) -> None:
        self.edits.append({"append_at": len(self.data), "bytes": extra.hex()})
        self.data += extra

    # -- slots (§3) ------------------------------------------------------------

    def slot(self, no: int) -> dict[str, int]:
        base = no * SLOT_SIZE
        _m, version, _n, flags, _r, _aid, gen, k, c = _SLOT_HEAD.unpack_from(self.data, base)
        return {"base": base, "version": version, "flags": flags, "generation": gen,
                "K": k, "C": c, "keydir": base + SLOT_HEADER,
                "commit": base + SLOT_HEADER + k, "crc": base + SLOT_HEADER + k + c}

    def fix_slot_crc(self, no: int) -> None:
        s = self.slot(no)
        crc = zlib.crc32(bytes(self.data[s["base"] : s["crc"]]))
        self.write(s["crc"], struct.pack("<I", crc))

    def newest_slot(self) -> int:
        return max((0, 1), key=lambda n: self.slot(n)["generation"])

    # -- pages and frames (§4, §5) ---------------------------------------------

    def pages(self) -> list[tuple[int, int, int]]:
        """(offset, kind, page_size) of every page, walked from 16384."""
        out = []
        off = SUPERBLOCK
        while off + PAGE_HEADER <= len(self.data):
            magic, _v, kind, _f, size = struct.unpack_from("<4sBBHI", self.data, off)
            assert magic == b"LBXP", (self.source, off)
            out.append((off, kind, size))
            off += size
        return out

    def fix_frame_crc(self, frame_offset: int) -> None:
        crc = zlib.crc32(bytes(self.data[frame_offset : frame_offset + 44]))
        self.write(frame_offset + 44, struct.pack("<I", crc))

    def fix_page_crc(self, page_offset: int) -> None:
        crc = zlib.crc32(bytes(self.data[page_offset : page_offset + 28]))
        self.write(page_offset + 28, struct.pack("<I", crc))


class KeyHolder:
    """What the author of an archive — a key holder — can do to a copy of it: re-seal
    frames and the newest commit under its content key, deterministically (a session id
    derived from the case's name; counters from 0). Every change is recorded in the
    case as overwritten bytes, like any other edit."""

    def __init__(self, case: Case, password: str) -> None:
        from lockbox.formats.lbox.frames import FrameOpener
        from lockbox.formats.lbox.keys import unlock
        from lockbox.formats.lbox.wire.keydir import decode_key_directory
        from lockbox.formats.lbox.wire.superblock import decode_superblock
        from lockbox.platform import default_codec, default_crypto

        self.case = case
        self.crypto = default_crypto()
        self.codec = default_codec()
        self.slot = decode_superblock(bytes(case.data[:SUPERBLOCK]))[0]
        assert isinstance(self.slot.keydir, bytes), "inline key directories only"
        directory = decode_key_directory(self.slot.keydir)
        self.content_key, _ = unlock(self.crypto, self.slot.archive_id, directory.slots,
                                     password=password, commitment=directory.key_commitment)
        self.opener = FrameOpener(self.crypto, self.codec, self.slot.archive_id,
                                  self.content_key)
        self.session_id = garbage("session/" + case.name, 16)
        self.counter = 0

    def commit(self) -> Any:
        """The newest commit record (a ``CommitRecord``)."""
        from lockbox.formats.lbox.wire.commit import decode_commit
        from lockbox.formats.lbox.wire.constants import FrameKind

        _, payload = self.opener.open_at(self.slot.commit_frame, self.slot.commit_frame_offset,
                                         FrameKind.COMMIT)
        return decode_commit(bytes(payload))

    def frame_payload(self, offset: int, size: int, kind: int) -> bytes:
        from lockbox.formats.lbox.wire.constants import FrameKind
        from lockbox.formats.lbox.wire.refs import Ref

        blob = bytes(self.case.data[offset:offset + size])
        tag = blob[-16:]
        return bytes(self.opener.open_ref(blob, Ref(offset, size, tag), FrameKind(kind)))

    def seal(self, kind: int, generation: int, offset: int, plain: bytes) -> bytes:
        """A frame of ``kind`` holding the frame plaintext ``plain`` (codec byte, size,
        body: §5), sealed to authenticate at ``offset``."""
        from lockbox.formats.lbox.frames import session_key
        from lockbox.formats.lbox.wire.constants import TAG_SIZE, FrameKind
        from lockbox.formats.lbox.wire.frame import (
            FrameHeader,
            encode_frame_header,
            frame_aad,
            frame_nonce,
        )

        header = encode_frame_header(FrameHeader(FrameKind(kind), len(plain) + TAG_SIZE,
                                                 generation, self.session_id, self.counter))
        aead = self.crypto.aead(session_key(self.crypto, self.content_key, self.session_id))
        sealed = aead.seal(frame_nonce(self.counter), plain,
                           frame_aad(self.slot.archive_id, header, offset))
        self.counter += 1
        return header + sealed

    def reseal_frame(self, offset: int, size: int, kind: int, plain: bytes) -> Any:
        """Replace the frame at ``offset`` (``size`` bytes) by one holding ``plain``, in
        the same place (the page has room after it); returns its new ``Ref``."""
        from lockbox.formats.lbox.wire.refs import Ref

        generation = struct.unpack_from("<Q", self.case.data, offset + 12)[0]
        frame = self.seal(kind, generation, offset, plain)
        self.case.write(offset, frame + bytes(max(0, size - len(frame))))
        return Ref(offset, len(frame), frame[-16:])

    def rewrite_commit(self, record: Any = None, *, plain: bytes | None = None,
                       kind: int = 1, frame: bytes | None = None) -> None:
        """Rewrite the newest slot: its commit frame sealed anew (from ``record``, or
        the frame plaintext ``plain``, as a frame of ``kind``) or replaced by ``frame``
        bytes; ``C`` and the slot CRC follow."""
        from lockbox.formats.lbox.frames import encode_plain
        from lockbox.formats.lbox.wire.commit import encode_commit
        from lockbox.formats.lbox.wire.superblock import Slot, encode_slot

        s = self.slot
        if frame is None:
            if plain is None:
                plain = encode_plain(self.codec, encode_commit(record), compress=False)
            frame = self.seal(kind, s.generation, s.commit_frame_offset, plain)
        image = encode_slot(Slot(s.slot_no, s.archive_id, s.generation, s.keydir, frame,
                                 s.version))
        base = s.slot_no * SLOT_SIZE
        old_used = SLOT_HEADER + len(s.keydir) + len(s.commit_frame) + 4
        new_used = SLOT_HEADER + len(s.keydir) + len(frame) + 4
        self.case.write(base, image[:max(old_used, new_used)])


def zstd_frame(data: bytes) -> bytes:
    """One zstd frame holding ``data``, its content size recorded (lockbox's codec)."""
    from lockbox.platform import default_codec

    return default_codec().compress(data, 3)


def golden_manifest() -> dict[str, dict[str, Any]]:
    m = json.loads((GOLDEN / "manifest.json").read_text())
    return {a["file"]: a for a in m["archives"]}


def file_refs(source: str, password: str, path: str) -> list[tuple[int, int]]:
    """(frame_offset, frame_size) of the frames holding a file's content."""
    import lockbox

    with lockbox.open(GOLDEN / source, password=password) as box:
        entry = box.run(box.view.stat_flow(path))
        refs = box.run(box.view.content_refs_flow(entry))
    return [(r.frame_offset, r.frame_size) for r in refs]


def garbage(label: str, n: int) -> bytes:
    return hashlib.shake_256(b"lockbox/v1/adversarial/" + label.encode()).digest(n)


def build(golden: dict[str, dict[str, Any]]) -> list[tuple[Case, dict[str, Any]]]:
    cases: list[tuple[Case, dict[str, Any]]] = []

    def add(case: Case, op: str, expected: str, *, secret: dict[str, str] | None = None,
            still_reads: list[str] = (), key_commitment: bool | None = None) -> None:
        if secret is None:
            assert case.source is not None
            g = golden[case.source]
            secret = ({"password": g["password"]} if g["password"] is not None
                      else {"identity": g["identities"][0]})
        spec: dict[str, Any] = {"op": op, "expected": expected, "secret": secret,
                                "still_reads": list(still_reads)}
        if key_commitment is not None:
            spec["key_commitment"] = key_commitment
        cases.append((case, spec))

    pw = {name: a["password"] for name, a in golden.items()}
    hello_chunk = file_refs("hello.lbox", pw["hello.lbox"], "hello.txt")[0]  # (20512, 150)

    # ---- not a lockbox file / superblock (§3) ----------------------------------
    c = Case("not-lockbox", "hello.lbox", "both slot magics zeroed: no slot at all")
    c.write(0, bytes(8))
    c.write(SLOT_SIZE, bytes(8))
    add(c, "open", "FormatError")

    c = Case("not-lockbox-text", "hello.lbox", "the file is 4096 bytes of text")
    c.truncate(0)
    c.append((b"this is not a lockbox archive\n" * 137)[:4096])
    add(c, "open", "FormatError")

    c = Case("truncated-superblock", "hello.lbox",
             "cut inside slot 0's contents (the file is 200 bytes)")
    c.truncate(200)
    add(c, "open", "TruncatedError")

    c = Case("truncated-slot-header", "hello.lbox", "cut inside slot 0's 48-byte header")
    c.truncate(20)
    add(c, "open", "TruncatedError")  # the magic is there, the header is not

    c = Case("both-slots-crc", "hello.lbox",
             "one commit-frame byte flipped in each slot, CRCs kept")
    for no in (0, 1):
        c.flip(c.slot(no)["commit"] + 60)
    add(c, "open", "IntegrityError")

    c = Case("newest-slot-crc", "history.lbox", "newest slot's CRC damaged: generation 3 opens")
    c.flip(c.slot(c.newest_slot())["crc"])
    add(c, "open", "opens-at-generation 3")

    c = Case("newest-slot-oversize", "hello.lbox",
             "newest slot's K + C > 8140: damaged, slot 1 opens")
    c.write(c.slot(0)["base"] + 40, struct.pack("<I", 8000))
    add(c, "open", "opens-at-generation 1")

    c = Case("newest-commit-aead", "hello.lbox",
             "ciphertext byte of the newest commit frame flipped, slot CRC recomputed: the "
             "password opened generation 2's key slot, so its failure is raised (§11), "
             "generation 1 is not opened in its place")
    c.flip(c.slot(0)["commit"] + FRAME_HEADER + 5)
    c.fix_slot_crc(0)
    add(c, "open", "IntegrityError")

    c = Case("newest-slot-generation-parity", "hello.lbox",
             "slot 0 claims generation 3 (odd), CRC recomputed: FormatError, slot 1 opens")
    c.write(c.slot(0)["base"] + 32, struct.pack("<Q", 3))
    c.fix_slot_crc(0)
    add(c, "open", "opens-at-generation 1")

    c = Case("slot-generation-mismatch", "hello.lbox",
             "slot 0 claims generation 4, its commit frame says 2 (CRC recomputed): "
             "IntegrityError after its key slot opened: raised, no fallback")
    c.write(c.slot(0)["base"] + 32, struct.pack("<Q", 4))
    c.fix_slot_crc(0)
    add(c, "open", "IntegrityError")

    # The commit frame must fill the slot's commit field (C bytes) exactly; checked
    # before any AEAD (§5 "The commit frame"). The password had opened the key slot, so
    # each failure is raised: generation 1 is not opened in its place (§11).
    c = Case("commit-frame-shorter-than-field", "hello.lbox",
             "newest commit header's sealed_size lowered by 1 (header and slot CRCs "
             "recomputed): 48 + sealed_size < C, the field has a byte after the frame: "
             "FormatError, raised, no fallback")
    s = c.slot(0)
    sealed = struct.unpack_from("<I", c.data, s["commit"] + 8)[0]
    c.write(s["commit"] + 8, struct.pack("<I", sealed - 1))
    c.fix_frame_crc(s["commit"])
    c.fix_slot_crc(0)
    add(c, "open", "FormatError")

    c = Case("commit-frame-longer-than-field", "hello.lbox",
             "newest commit header's sealed_size raised by 1 (header and slot CRCs "
             "recomputed): 48 + sealed_size > C, the frame runs past the field: "
             "TruncatedError, raised, no fallback")
    s = c.slot(0)
    sealed = struct.unpack_from("<I", c.data, s["commit"] + 8)[0]
    c.write(s["commit"] + 8, struct.pack("<I", sealed + 1))
    c.fix_frame_crc(s["commit"])
    c.fix_slot_crc(0)
    add(c, "open", "TruncatedError")

    c = Case("commit-field-longer-than-frame", "hello.lbox",
             "newest slot's C raised by 1 and a zero byte put after the intact commit frame "
             "(slot CRC recomputed): the frame would authenticate, but it does not fill "
             "its field: FormatError, raised, no fallback")
    s = c.slot(0)
    c.write(s["base"] + 44, struct.pack("<I", s["C"] + 1))
    c.write(s["crc"], b"\x00")
    body = bytes(c.data[s["base"]:s["crc"] + 1])
    c.write(s["crc"] + 1, struct.pack("<I", zlib.crc32(body)))
    add(c, "open", "FormatError")

    c = Case("spliced-archive-id", "hello.lbox",
             "slot 1's archive_id changed, CRC recomputed: two valid slots of different archives")
    c.flip(c.slot(1)["base"] + 16)
    c.fix_slot_crc(1)
    add(c, "open", "IntegrityError")

    c = Case("unsupported-version-newest", "hello.lbox", "slot 0 version 4, CRC recomputed")
    c.write(c.slot(0)["base"] + 8, struct.pack("<H", 4))
    c.fix_slot_crc(0)
    add(c, "open", "UnsupportedVersionError")

    c = Case("unsupported-version-older", "hello.lbox",
             "slot 1 (the older, generation 1) version 4, CRC recomputed: still refused")
    c.write(c.slot(1)["base"] + 8, struct.pack("<H", 4))
    c.fix_slot_crc(1)
    add(c, "open", "UnsupportedVersionError")

    c = Case("damaged-version-newest", "hello.lbox",
             "slot 0 version field damaged without the CRC: damage, slot 1 opens")
    c.write(c.slot(0)["base"] + 8, struct.pack("<H", 3))
    add(c, "open", "opens-at-generation 1")

    # ---- key directory (§6) ------------------------------------------------------
    def keydir_both(name: str, about: str, rel: int, new: bytes, expected: str) -> None:
        case = Case(name, "hello.lbox",
                    about + " (inline key directory of both slots, CRCs recomputed)")
        for no in (0, 1):
            case.write(case.slot(no)["keydir"] + rel, new)
            case.fix_slot_crc(no)
        add(case, "open", expected)

    # keydir (version 2) = "LBKD" version:u8 key_commitment[32] count:u16, then the slots
    count_at, first = 5 + KEY_COMMITMENT, 5 + KEY_COMMITMENT + 2
    keydir_both("keydir-bad-magic", "'LBKD' -> 'XBKD'", 0, b"X", "FormatError")
    keydir_both("keydir-unsupported-version", "version 2 -> 3", 4, b"\x03",
                "UnsupportedVersionError")
    keydir_both("keydir-too-many-slots", "count 1 -> 513", count_at, struct.pack("<H", 513),
                "LimitExceededError")
    keydir_both("keydir-truncated-slot", "count 1 -> 2", count_at, struct.pack("<H", 2),
                "TruncatedError")
    # slot_rec = kind:u8 slot_id:u32 body_size:u16, then salt[16] t:u32 m:u32 p:u8 wrapped[48]
    keydir_both("keydir-argon2-time-cost", "the only password slot gets t = 65 (unusable)",
                first + 7 + 16, struct.pack("<I", 65), "LimitExceededError")
    keydir_both("keydir-argon2-memory", "the only password slot gets m = 4 KiB (unusable)",
                first + 7 + 16 + 4, struct.pack("<I", 4), "LimitExceededError")
    keydir_both("keydir-argon2-parallelism", "the only password slot gets p = 2 (unusable)",
                first + 7 + 16 + 8, b"\x02", "LimitExceededError")
    keydir_both("keydir-unknown-slot-kind", "the only slot gets kind 9 (unusable)", first,
                b"\x09", "LimitExceededError")
    keydir_both("keydir-bad-body-size", "password body_size 73 -> 72", first + 5,
                struct.pack("<H", 72), "FormatError")
    keydir_both("keydir-argon2-over-local-limit",
                "the only password slot gets m = 4 GiB: within the format, over the reader's "
                "local limit (512 MiB): never derived", first + 7 + 16 + 4,
                struct.pack("<I", 4 * 1024 * 1024), "LimitExceededError")

    c = Case("keydir-newest-bad-magic", "hello.lbox",
             "newest slot's inline key directory magic damaged (CRC recomputed): slot 1 opens")
    c.write(c.slot(0)["keydir"], b"X")
    c.fix_slot_crc(0)
    add(c, "open", "opens-at-generation 1")

    c = Case("keydir-wrapped-key", "hello.lbox",
             "wrapped key byte flipped in both slots (CRCs recomputed): the unwrap fails")
    for no in (0, 1):
        c.flip(c.slot(no)["keydir"] + first + 7 + 25 + 3)
        c.fix_slot_crc(no)
    add(c, "open", "WrongKeyError")

    c = Case("wrong-password", "hello.lbox", "unchanged copy, wrong password")
    add(c, "open", "WrongKeyError", secret={"password": "not lockbox"})

    c = Case("wrong-identity", "recipient.lbox",
             "unchanged copy, an identity that is not a recipient")
    add(c, "open", "WrongKeyError", secret={"identity": "bob.identity"})

    c = Case("password-without-password-slot", "recipient.lbox", "unchanged copy, a password")
    add(c, "open", "WrongKeyError", secret={"password": "lockbox"})

    c = Case("identity-without-recipient-slot", "hello.lbox", "unchanged copy, an identity")
    add(c, "open", "WrongKeyError", secret={"identity": "alice.identity"})

    # Rule 1 of §6 "Unlocking": LimitExceededError only when nothing was tried and a
    # slot THIS secret might open was passed over (of its own kind, or of an unknown kind).
    def keydir_edit(name: str, source: str, about: str, rel: int, new: bytes,
                    expected: str, secret: dict[str, str]) -> None:
        case = Case(name, source, about + " (both slots' inline key directories, CRCs "
                    "recomputed)")
        for no in (0, 1):
            case.write(case.slot(no)["keydir"] + rel, new)
            case.fix_slot_crc(no)
        add(case, "open", expected, secret=secret)

    keydir_edit("password-unusable-slot-recipient-usable", "password-recipient.lbox",
                "the password slot gets t = 65 (unusable), the recipient slot is intact; "
                "a password: no slot of its kind could be tried", first + 7 + 16,
                struct.pack("<I", 65), "LimitExceededError", {"password": "shared secret"})
    keydir_edit("identity-unusable-password-slot", "hello.lbox",
                "the only slot, a password slot, gets t = 65 (unusable); an identity: the "
                "unusable slot is not of its kind — no recipient slot", first + 7 + 16,
                struct.pack("<I", 65), "WrongKeyError", {"identity": "alice.identity"})
    keydir_edit("identity-unknown-slot-kind", "hello.lbox",
                "the only slot gets kind 9 (unknown: it may be for any secret); an identity",
                first, b"\x09", "LimitExceededError", {"identity": "alice.identity"})

    # ---- external key directory (§3, §4, §11) ----------------------------------
    src = "keydir-external.lbox"
    probe = Case("probe", src, "")
    s = probe.slot(probe.newest_slot())
    assert s["flags"] & 1 and s["K"] == 44
    kd_page, kd_size = struct.unpack_from("<QI", probe.data, s["keydir"])

    c = Case("external-keydir-byte", src, "a byte of the key directory in its KEYDIR page flipped")
    c.flip(kd_page + 48 + 7 + 30)
    add(c, "open", "IntegrityError")

    c = Case("external-keydir-page-crc", src,
             "the KEYDIR page header's used_size damaged (CRC kept)")
    c.flip(kd_page + 12)
    add(c, "open", "IntegrityError")

    c = Case("external-keydir-archive-id", src,
             "the archive id in the KEYDIR page changed (page CRC unaffected)")
    c.flip(kd_page + 32)
    add(c, "open", "IntegrityError")

    c = Case("external-keydir-truncated", src, "the file ends inside the KEYDIR page")
    c.truncate(kd_page + 48 + kd_size // 2)
    add(c, "open", "TruncatedError")

    c = Case("external-keydir-pointer-oversize", src,
             "both slots' pointer keydir_size set to 1 MiB + 1 (CRCs recomputed)")
    for no in (0, 1):
        c.write(c.slot(no)["keydir"] + 8, struct.pack("<I", (1 << 20) + 1))
        c.fix_slot_crc(no)
    add(c, "open", "LimitExceededError")

    # ---- truncation of pages and frames (§4, §5) ---------------------------------
    off, size = hello_chunk
    c = Case("truncated-page-header", "hello.lbox", "cut 16 bytes into the FRAMES page at 20480")
    c.truncate(20480 + 16)
    add(c, "read hello.txt", "TruncatedError")

    c = Case("truncated-frame", "hello.lbox", "cut inside the data chunk frame of hello.txt")
    c.truncate(off + size // 2)
    add(c, "read hello.txt", "TruncatedError")

    c = Case("truncated-frame-header", "hello.lbox", "cut inside the data chunk frame's header")
    c.truncate(off + 20)
    add(c, "read hello.txt", "TruncatedError")

    # ---- page headers: keyless, verify reports them (§4, §12) ----------------
    c = Case("page-bad-magic", "hello.lbox", "FRAMES page at 20480: 'LBXP' -> 'XBXP'")
    c.write(20480, b"X")
    add(c, "verify", "verify-reports", still_reads=["hello.txt"])

    c = Case("page-bad-crc", "hello.lbox", "FRAMES page at 20480: CRC byte flipped")
    c.flip(20480 + 28)
    add(c, "verify", "verify-reports", still_reads=["hello.txt"])

    c = Case("page-bad-size", "hello.lbox",
             "FRAMES page at 20480: page_size 4096 -> 8192, page CRC recomputed")
    c.write(20480 + 8, struct.pack("<I", 8192))
    c.fix_page_crc(20480)
    add(c, "verify", "verify-reports", still_reads=["hello.txt"])

    # ---- frames under a ref (§5 "Opening") --------------------------------------
    tree_pw = pw["tree.lbox"]
    x_off, _x_size = file_refs("tree.lbox", tree_pw, "a/x.txt")[0]
    others = ["a/b/c/deep.txt", "bin/tool", "old.txt", "ünïcødé/naïve.txt", "empty"]
    for name, rel, new, about in (
        ("frame-header-magic", 0, b"X", "'LBXF' -> 'XBXF'"),
        ("frame-header-crc", 44, None, "header CRC byte flipped"),
        ("frame-header-counter", 36, None, "counter byte flipped (header CRC kept)"),
        ("frame-header-kind", 4, None, "kind byte changed (header CRC kept)"),
    ):
        c = Case(name, "tree.lbox", f"data chunk frame of a/x.txt: {about}")
        if new is None:
            c.flip(x_off + rel)
        else:
            c.write(x_off + rel, new)
        add(c, "read a/x.txt", "IntegrityError", still_reads=others)

    c = Case("frame-header-kind-recrc", "tree.lbox",
             "data chunk frame of a/x.txt: kind -> TOC_NODE, header CRC recomputed")
    c.write(x_off + 4, b"\x02")
    c.fix_frame_crc(x_off)
    add(c, "read a/x.txt", "IntegrityError", still_reads=others)

    c = Case("frame-header-counter-recrc", "tree.lbox",
             "data chunk frame of a/x.txt: counter changed, header CRC recomputed (AEAD fails)")
    c.flip(x_off + 36)
    c.fix_frame_crc(x_off)
    add(c, "read a/x.txt", "IntegrityError", still_reads=others)

    c = Case("ciphertext-flip", "hello.lbox", "one ciphertext bit of hello.txt's chunk flipped")
    c.flip(off + FRAME_HEADER + 10, 0x80)
    add(c, "read hello.txt", "IntegrityError")

    c = Case("tag-flip", "hello.lbox", "last tag byte of hello.txt's chunk flipped")
    c.flip(off + size - 1)
    add(c, "read hello.txt", "IntegrityError")

    c = Case("ciphertext-flip-verify", "tree.lbox", "one ciphertext bit of a/x.txt's chunk flipped")
    c.flip(x_off + FRAME_HEADER + 3, 0x04)
    add(c, "verify", "verify-reports", still_reads=others)

    c = Case("frame-moved", "hello.lbox",
             "hello.txt's chunk frame moved 256 bytes further in its page; its old place zeroed")
    frame = bytes(c.data[off : off + size])
    c.write(off, bytes(size))
    c.write(off + 256, frame)
    add(c, "read hello.txt", "IntegrityError")

    c = Case("frame-moved-onto-ref", "multichunk.lbox",
             "eight.txt: chunk 1's frame copied over chunk 0's (same size, other offset and tag)")
    mrefs = file_refs("multichunk.lbox", pw["multichunk.lbox"], "eight.txt")
    (a_off, a_size), (b_off, b_size) = mrefs[0], mrefs[1]
    if a_size == b_size:
        c.write(a_off, bytes(c.data[b_off : b_off + b_size]))
    else:  # pragma: no cover - the golden layout has equal sizes
        c.write(a_off, bytes(c.data[b_off : b_off + min(a_size, b_size)]))
    add(c, "read eight.txt", "IntegrityError", still_reads=["big.txt", "exact.bin", "noise.bin"])

    c = Case("frame-from-other-archive", "kdf-default.lbox",
             "readme.txt's chunk frame replaced by hello.lbox's chunk frame (hello.txt)")
    k_off, k_size = file_refs("kdf-default.lbox", pw["kdf-default.lbox"], "readme.txt")[0]
    hello = (GOLDEN / "hello.lbox").read_bytes()
    c.write(k_off, bytes(k_size))
    c.write(k_off, hello[off : off + min(size, k_size)])
    add(c, "read readme.txt", "IntegrityError")

    c = Case("frame-from-other-archive-tree", "tree.lbox",
             "a/x.txt's chunk frame zeroed, then password-recipient's shared.txt chunk frame "
             "written at its offset")
    other = (GOLDEN / "password-recipient.lbox").read_bytes()
    s_off, s_size = file_refs("password-recipient.lbox", pw["password-recipient.lbox"],
                              "shared.txt")[0]
    c.write(x_off, bytes(_x_size))
    c.write(x_off, other[s_off : s_off + min(s_size, _x_size)])
    add(c, "read a/x.txt", "IntegrityError")

    c = Case("hostile-sealed-size", "hello.lbox",
             "hello.txt's chunk header: sealed_size 0xffffffff, header CRC recomputed")
    c.write(off + 8, struct.pack("<I", 0xFFFFFFFF))
    c.fix_frame_crc(off)
    add(c, "read hello.txt", "LimitExceededError")

    c = Case("hostile-sealed-size-in-page", "tree.lbox",
             "a/x.txt's chunk header: sealed_size 4 210 721, header CRC recomputed")
    c.write(x_off + 8, struct.pack("<I", 4_210_721))
    c.fix_frame_crc(x_off)
    add(c, "read a/x.txt", "LimitExceededError", still_reads=others)

    c = Case("small-sealed-size", "hello.lbox",
             "hello.txt's chunk header: sealed_size 8, header CRC recomputed")
    c.write(off + 8, struct.pack("<I", 8))
    c.fix_frame_crc(off)
    add(c, "read hello.txt", "IntegrityError")

    c = Case("redacted-page", "hello.lbox", "the FRAMES page at 20480 zeroed (redacted) entirely")
    c.write(20480, bytes(4096))
    add(c, "read hello.txt", "IntegrityError")

    c = Case("redacted-frame", "tree.lbox", "a/x.txt's chunk frame zeroed")
    c.write(x_off, bytes(_x_size))
    add(c, "read a/x.txt", "IntegrityError", still_reads=others)

    c = Case("redacted-toc-node", "wide.lbox", "first TOC_NODE frame (a TOC leaf) zeroed")
    w_off, w_size = _first_frame(c, kind=2)
    c.write(w_off, bytes(w_size))
    add(c, "ls", "IntegrityError")

    c = Case("redacted-space-map", "hello.lbox",
             "the space map's page zeroed: nothing reads it but verify")
    c.write(24576, bytes(4096))
    add(c, "verify", "verify-reports", still_reads=["hello.txt"])

    c = Case("env-ok-after-data-damage", "tree.lbox",
             "a/x.txt's chunk frame zeroed; env still reads")
    c.write(x_off, bytes(_x_size))
    add(c, "env", "ok", still_reads=others)

    # ---- the commit frame's plaintext and record (§5, §7): a key holder's edits ----
    from lockbox.formats.lbox.wire.encoding import uvarint

    def commit_case(name: str, about: str, source: str = "hello.lbox"
                    ) -> tuple[Case, KeyHolder, Any, bytes]:
        case = Case(name, source, about)
        kh = KeyHolder(case, pw[source])
        record = kh.commit()
        from lockbox.formats.lbox.wire.commit import encode_commit

        return case, kh, record, encode_commit(record)

    c, kh, rec, raw = commit_case(
        "commit-zstd", "the newest commit re-sealed with its record zstd-compressed (codec "
        "1): readers accept either codec for every kind, the commit included")
    kh.rewrite_commit(plain=b"\x01" + uvarint(len(raw)) + zstd_frame(raw))
    add(c, "read hello.txt", "opens-at-generation 2", still_reads=["hello.txt"])

    c, kh, rec, raw = commit_case(
        "commit-raw-size-mismatch", "the newest commit re-sealed RAW with plain_size one "
        "more than the record: FormatError")
    kh.rewrite_commit(plain=b"\x00" + uvarint(len(raw) + 1) + raw)
    add(c, "open", "FormatError")

    c, kh, rec, raw = commit_case(
        "commit-unknown-codec", "the newest commit re-sealed with codec 2 and a plain_size "
        "over the commit limit: the codec is checked first: FormatError")
    kh.rewrite_commit(plain=b"\x02" + uvarint(1 << 20) + raw)
    add(c, "open", "FormatError")

    c, kh, rec, raw = commit_case(
        "commit-zstd-corrupt", "the newest commit's zstd frame with its first block's type "
        "set to the reserved value 3: FormatError")
    z = bytearray(zstd_frame(raw))
    assert z[4] & 0x20 and not z[4] & 0xC3  # single segment, 1-byte content size, no dict
    z[6] |= 0x06  # the first block header's Block_Type bits: 3 (reserved)
    kh.rewrite_commit(plain=b"\x01" + uvarint(len(raw)) + bytes(z))
    add(c, "open", "FormatError")

    c, kh, rec, raw = commit_case(
        "commit-zstd-short", "the newest commit's zstd frame holds the record without its "
        "last byte; plain_size is the record's: it decodes short: FormatError")
    kh.rewrite_commit(plain=b"\x01" + uvarint(len(raw)) + zstd_frame(raw[:-1]))
    add(c, "open", "FormatError")

    c, kh, rec, raw = commit_case(
        "commit-zstd-trailing", "a zero byte after the newest commit's zstd frame: "
        "FormatError")
    kh.rewrite_commit(plain=b"\x01" + uvarint(len(raw)) + zstd_frame(raw) + b"\x00")
    add(c, "open", "FormatError")

    c, kh, rec, raw = commit_case(
        "commit-zstd-cut", "the newest commit's zstd frame without its last byte: a "
        "malformed body of a whole frame, FormatError (not TruncatedError)")
    kh.rewrite_commit(plain=b"\x01" + uvarint(len(raw)) + zstd_frame(raw)[:-1])
    add(c, "open", "FormatError")

    c, kh, rec, raw = commit_case(
        "commit-zstd-over-size", "the newest commit's zstd frame declares (and holds) one "
        "byte more than plain_size: LimitExceededError, before decoding")
    kh.rewrite_commit(plain=b"\x01" + uvarint(len(raw)) + zstd_frame(raw + b"\x00"))
    add(c, "open", "LimitExceededError")

    c, kh, rec, raw = commit_case(
        "commit-frame-other-kind", "the newest commit record sealed, validly, as a "
        "TOC_NODE frame in the slot: IntegrityError, raised, no fallback")
    kh.rewrite_commit(rec, kind=2)
    add(c, "open", "IntegrityError")

    import dataclasses

    from lockbox.formats.lbox.frames import encode_plain
    from lockbox.formats.lbox.wire.commit import TreeRoot
    from lockbox.formats.lbox.wire.entry import decode_entry, encode_entry
    from lockbox.formats.lbox.wire.node import Leaf, decode_node, encode_node
    from lockbox.formats.lbox.wire.refs import Ref

    c, kh, rec, raw = commit_case(
        "inline-root-height-2", "the newest commit's INLINE TOC root says height 2: "
        "FormatError")
    kh.rewrite_commit(dataclasses.replace(rec, toc=dataclasses.replace(rec.toc, height=2)))
    add(c, "open", "FormatError")

    def with_entry_ref_size(name: str, about: str, size: int) -> tuple[Case, Any]:
        case, holder, record, _ = commit_case(name, about)
        leaf = decode_node(record.toc.inline, 1 << 16)
        entry = decode_entry(leaf.values[0])
        (ref,) = entry.refs
        value = encode_entry(dataclasses.replace(entry, refs=(Ref(ref.frame_offset, size,
                                                                  ref.tag),)))
        inline = encode_node(Leaf(leaf.keys, [value]))
        holder.rewrite_commit(dataclasses.replace(
            record, toc=TreeRoot(record.toc.count, 1, None, inline)))
        return case, holder

    c, _ = with_entry_ref_size(
        "ref-size-below-minimum", "hello.txt's entry: its ref's frame_size 10 (< 64), "
        "commit re-sealed: checked when the ref is decoded, reading: FormatError", 10)
    add(c, "read hello.txt", "FormatError")
    c, _ = with_entry_ref_size(
        "ref-size-below-minimum-listing", "the same archive, listed: a listing does not "
        "decode a file entry's refs (only that its bytes could hold them)", 10)
    add(c, "ls", "ok")
    c, _ = with_entry_ref_size(
        "ref-size-over-limit", "hello.txt's entry: its ref's frame_size 4 210 769 (over "
        "48 + 4 210 720), commit re-sealed: reading: LimitExceededError", 4_210_769)
    add(c, "read hello.txt", "LimitExceededError")

    # root_leaves (§7, §12): the root's children only; each must be a leaf.
    c = Case("root-listing-deeper-keys", "wide.lbox",
             "unchanged: the root-listing leaves hold deeper keys too (the first "
             "directories' children); the root's listing keeps only the root's children")
    add(c, "ls-root", "ok")

    c, kh, rec, raw = commit_case(
        "root-listing-non-leaf", "the newest commit's first root_leaves ref replaced by "
        "the TOC root's ref (an internal node), commit re-sealed: listing the root: "
        "IntegrityError", source="wide.lbox")
    assert rec.root_leaves_complete and rec.toc.ref is not None
    kh.rewrite_commit(dataclasses.replace(
        rec, root_leaves=(rec.toc.ref, *rec.root_leaves[1:])))
    add(c, "ls-root", "IntegrityError")

    # The space map (§14): a TAIL-kind value under a page's key.
    c, kh, rec, raw = commit_case(
        "space-tail-kind-under-page-key", "hello's space map leaf re-sealed with the FRAMES "
        "record of 20480 replaced by a TAIL value (6, 2097152), commit re-sealed: an unknown "
        "record kind under a page key: verify reports it; readers ignore the map")
    sref = rec.space.ref
    leaf = decode_node(kh.frame_payload(sref.frame_offset, sref.frame_size, 4), 64)
    at = leaf.keys.index((20480).to_bytes(8, "big"))
    values = list(leaf.values)
    values[at] = b"\x06" + uvarint(1 << 21)  # the same 5 bytes as the record it replaces
    assert len(values[at]) == len(leaf.values[at])
    node = encode_node(Leaf(leaf.keys, values))
    new_ref = kh.reseal_frame(sref.frame_offset, sref.frame_size, 4,
                              encode_plain(kh.codec, node, compress=False))
    assert new_ref.frame_size == sref.frame_size
    kh.rewrite_commit(dataclasses.replace(rec, space=dataclasses.replace(rec.space,
                                                                         ref=new_ref)))
    add(c, "verify", "verify-reports", still_reads=["hello.txt"])

    # ---- trailing garbage (§7 archive_end) ------------------------------------
    c = Case("trailing-garbage", "hello.lbox", "8000 bytes of garbage after archive_end")
    c.append(garbage("trailing", 8000))
    add(c, "verify", "verify-ok", still_reads=["hello.txt"])

    c = Case("trailing-fake-page", "hello.lbox",
             "a well-formed-looking page header and garbage after archive_end")
    c.append(bytes(c.data[20480:24576]))
    add(c, "verify", "verify-ok", still_reads=["hello.txt"])

    # ---- key commitment, no silent fallback, legacy (§6, §11, §17.6, §20) -------------
    c = Case("commitment-mismatch", "hello.lbox",
             "one byte of the key commitment flipped in both slots (CRCs recomputed): the "
             "password slot opens, its key does not match the commitment")
    for no in (0, 1):
        c.flip(c.slot(no)["keydir"] + 5 + 7)
        c.fix_slot_crc(no)
    add(c, "open", "IntegrityError")

    c = Case("commitment-mismatch-newest", "hello.lbox",
             "the newest key directory's commitment flipped (CRC recomputed): raised — "
             "generation 1 (intact) is not opened in its place")
    c.flip(c.slot(0)["keydir"] + 5 + 7)
    c.fix_slot_crc(0)
    add(c, "open", "IntegrityError")

    c = Case("keydir-downgraded-to-v1", "hello.lbox",
             "the newest slot rewritten with its key directory as version 1 (commitment "
             "removed; K, the commit frame's place and the CRC recomputed): the slot still "
             "opens, its commit does not (moved, and keydir_sha256 pins the version-2 "
             "directory): raised, no fallback")
    s0 = c.slot(0)
    kd = bytes(c.data[s0["keydir"]:s0["commit"]])
    assert kd[4] == 2
    legacy_kd = kd[:4] + b"\x01" + kd[5 + KEY_COMMITMENT:]
    body = bytearray(c.data[s0["base"]:s0["base"] + SLOT_HEADER])
    body[8:10] = struct.pack("<H", 1)
    body[40:44] = struct.pack("<I", len(legacy_kd))
    body += legacy_kd + c.data[s0["commit"]:s0["crc"]]
    image = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
    c.write(s0["base"], image + bytes(SLOT_SIZE - len(image)))
    add(c, "open", "IntegrityError")

    c = Case("legacy-keydir-v1", "legacy-hello.lbox",
             "unchanged: an archive written before key commitments (slot and key directory "
             "version 1) opens and reports no key commitment")
    add(c, "read hello.txt", "opens-at-generation 2", key_commitment=False)

    c = Case("two-truths", None,
             "one file, two truths: generation 3 (K1, 'account A') whose key directory "
             "gives Alice K1 and Bob K2; generation 2 (K2, 'account B'). Bob's slot opens "
             "but its key is not the one the directory commits to",
             built_by="hostile.two_truths:two_truths_archive()")
    add(c, "open", "IntegrityError", secret={"password": "bob's password"})

    c = Case("two-truths-alice", None, "the same archive, Alice: generation 3",
             built_by="hostile.two_truths:two_truths_archive()")
    add(c, "read account.txt", "opens-at-generation 3", secret={"password": "alice's password"},
        key_commitment=True)

    c = Case("two-truths-legacy", None,
             "the two-truths archive with version-1 key directories (no commitment): Bob "
             "unwraps K2, generation 3's commit does not open under it: raised, generation 2 "
             "is not opened in its place",
             built_by="hostile.two_truths:two_truths_archive(legacy=True)")
    add(c, "open", "IntegrityError", secret={"password": "bob's password"})

    c = Case("two-truths-bob-removed", None,
             "generation 3 has no slot for Bob at all; his secret opens generation 2, but "
             "generation 3 is not sealed under the content key generation 2 gives: refused",
             built_by="hostile.two_truths:two_truths_archive(bob_in_newest=False)")
    add(c, "open", "IntegrityError", secret={"password": "bob's password"})

    c = Case("decoy-4gib-slot", None,
             "a password slot with Argon2id m = 4 GiB and a random wrapped key listed before "
             "the real one: skipped by the reader's local limit, the real slot opens",
             built_by="hostile.unlock_cost:decoy_archive()")
    add(c, "read hello.txt", "opens-at-generation 2",
        secret={"password": "the real password"})

    c = Case("decoy-4gib-slot-wrong-password", None,
             "the same archive, a wrong password: WrongKeyError naming the skipped slot and "
             "--max-argon2-memory, without deriving 4 GiB",
             built_by="hostile.unlock_cost:decoy_archive()")
    add(c, "open", "WrongKeyError", secret={"password": "a wrong password"})

    c = Case("too-many-password-slots", None,
             "a version-2 key directory (correctly committed) with 5 password slots: "
             "refused before any Argon2id",
             built_by="hostile.unlock_cost:too_many_password_slots_archive()")
    add(c, "open", "LimitExceededError", secret={"password": "the real password"})

    # ---- packs (format version 3, §10 "Packs"): packed.lbox --------------------------
    from lockbox.formats.lbox.wire.constants import FrameKind
    from lockbox.formats.lbox.wire.entry import key_path
    from lockbox.formats.lbox.wire.pack import decode_pack, encode_pack

    pk_pw = pw["packed.lbox"]
    pack1 = file_refs("packed.lbox", pk_pw, "notes.txt")[0]  # 13 entries name it
    pack2 = file_refs("packed.lbox", pk_pw, "more/added.txt")[0]  # 2 entries name it
    in_pack2 = ["docs/readme.md", "more/added.txt", "big.bin"]

    c = Case("pack-ciphertext-flip", "packed.lbox",
             "one ciphertext bit of the first PACK frame flipped: every file packed in it "
             "fails, the others read")
    c.flip(pack1[0] + FRAME_HEADER + 40, 0x10)
    add(c, "read src/module_00.py", "IntegrityError", still_reads=in_pack2)

    def packed_case(name: str, about: str, change: Any) -> Case:
        """A key holder's edit of packed.lbox's inline TOC leaf: ``change(path, entry)``
        returns the entry to store (or the same one); the commit is re-sealed."""
        case, holder, record, _ = commit_case(name, about, "packed.lbox")
        leaf = decode_node(record.toc.inline, 1 << 16)
        values = [encode_entry(change(key_path(k), decode_entry(v)))
                  for k, v in zip(leaf.keys, leaf.values)]
        holder.rewrite_commit(dataclasses.replace(
            record, toc=TreeRoot(record.toc.count, 1, None,
                                 encode_node(Leaf(leaf.keys, values)))))
        return case

    def member(path: str, no: int) -> Any:
        return lambda p, e: dataclasses.replace(e, member_no=no) if p == path else e

    c = packed_case("pack-member-out-of-range", "notes.txt's entry names member 15 of a "
                    "pack of 15 members (0-14): IntegrityError", member("notes.txt", 15))
    add(c, "read notes.txt", "IntegrityError", still_reads=["src/module_00.py", *in_pack2])

    c = packed_case("pack-other-member", "notes.txt's entry names member 2, the chunk of "
                    "src/module_00.py (another file id): IntegrityError",
                    member("notes.txt", 2))
    add(c, "read notes.txt", "IntegrityError", still_reads=["src/module_00.py", *in_pack2])

    big_off, big_size = file_refs("packed.lbox", pk_pw, "big.bin")[0]
    big_ref = Ref(big_off, big_size,
                  (GOLDEN / "packed.lbox").read_bytes()[big_off + big_size - 16:big_off + big_size])
    c = packed_case("pack-entry-names-a-chunk-frame", "notes.txt's entry (layout 2) names "
                    "big.bin's DATA_CHUNK frame: the kind differs, IntegrityError",
                    lambda p, e: dataclasses.replace(e, refs=(big_ref,))
                    if p == "notes.txt" else e)
    add(c, "read notes.txt", "IntegrityError", still_reads=["src/module_00.py", *in_pack2])

    def repack_case(name: str, about: str, payload: Any) -> Case:
        """A key holder re-seals the second PACK frame (its payload ``payload(members)``,
        zstd) in its place and points both of its entries at it."""
        case, holder, record, _ = commit_case(name, about, "packed.lbox")
        members = [bytes(m) for m in decode_pack(holder.frame_payload(*pack2,
                                                                      FrameKind.PACK))]
        body = payload(members)  # zstd (as the pack was), to fit the frame's place
        new = holder.reseal_frame(*pack2, FrameKind.PACK,
                                  b"\x01" + uvarint(len(body)) + zstd_frame(body))
        assert new.frame_size <= pack2[1], (new.frame_size, pack2[1])
        leaf = decode_node(record.toc.inline, 1 << 16)
        values = []
        for v in leaf.values:
            e = decode_entry(v)
            if e.layout == 2 and e.refs[0].frame_offset == pack2[0]:
                e = dataclasses.replace(e, refs=(new,))
            values.append(encode_entry(e))
        holder.rewrite_commit(dataclasses.replace(
            record, toc=TreeRoot(record.toc.count, 1, None,
                                 encode_node(Leaf(leaf.keys, values)))))
        return case

    c = repack_case("pack-sizes-sum-short", "the second pack re-sealed with its last member "
                    "one byte shorter than its size says: FormatError",
                    lambda ms: encode_pack(ms)[:-1])
    add(c, "read more/added.txt", "FormatError", still_reads=["src/module_00.py", "big.bin"])

    c = repack_case("pack-count-zero", "the second pack re-sealed as a pack of 0 members: "
                    "FormatError", lambda ms: b"\x00")
    add(c, "read docs/readme.md", "FormatError", still_reads=["src/module_00.py", "big.bin"])

    c = repack_case("pack-members-swapped", "the second pack re-sealed with its two members "
                    "swapped: each entry finds the other file's chunk, IntegrityError",
                    lambda ms: encode_pack(ms[::-1]))
    add(c, "read more/added.txt", "IntegrityError",
        still_reads=["src/module_00.py", "big.bin"])

    # ---- hostile tree shapes (issue 7, item 3): bounded walks ------------------------
    tree_pw = {"password": "pw"}
    for name, op, expected, about in (
        ("same_frame_fanout", "ls", "IntegrityError",
         "one internal node names the same leaf frame ~38,000 times: refused before fetching"),
        ("distinct_bombs", "ls", "LimitExceededError",
         "256 distinct ~290-byte leaf frames that each inflate to a 1 MiB node: the walk's "
         "decompression bound"),
        ("entry_flood", "ls", "LimitExceededError",
         "leaves of 65,536 empty directories each, from a 45 KiB archive: the decompression "
         "bound"),
        ("flood_at_limit", "ls", "ok",
         "a valid 80 KiB tree just under the decompression bound: it lists (bounded memory)"),
        ("shared_chunks", "verify", "verify-reports",
         "100,000 entries naming one 4 MiB chunk frame: verify reports the sharing without "
         "hashing it 100,000 times"),
        ("overlapping_refs", "ls", "TruncatedError",
         "children whose refs overlap and run past the archive's end: refused before "
         "fetching"),
        ("internal_bombs", "ls", "IntegrityError",
         "internal nodes that inflate and name frames twice: refused"),
    ):
        c = Case(f"tree-{name.replace('_', '-')}", None, about,
                 built_by=f"hostile.tree_cases:{name}()")
        add(c, op, expected, secret=tree_pw)

    return cases


def _first_frame(case: Case, kind: int) -> tuple[int, int]:
    for off, pkind, _size in case.pages():
        if pkind != 1:
            continue
        used = struct.unpack_from("<I", case.data, off + 12)[0]
        f = off + PAGE_HEADER
        while f + FRAME_HEADER <= off + used:
            fkind = case.data[f + 4]
            sealed = struct.unpack_from("<I", case.data, f + 8)[0]
            if fkind == kind:
                return f, FRAME_HEADER + sealed
            f += FRAME_HEADER + sealed
    raise AssertionError(f"no frame of kind {kind} in {case.source}")


@contextlib.contextmanager
def _no_packing() -> Iterator[None]:
    """The hostile authors' archives are written with packing off (format version 2),
    as they were before packs: the writer's policy must not change their bytes
    (``generate.packing(False)``, the golden archives' switch)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lockbox_vectors_generate",
                                                  HERE / "generate.py")
    assert spec is not None and spec.loader is not None
    golden_generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(golden_generator)
    with golden_generator.packing(False):
        yield


def generate(out: Path) -> dict[str, Any]:
    golden = golden_manifest()
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    with _no_packing():
        cases = list(build(golden))
    for case, spec in cases:
        (out / f"{case.name}.lbox").write_bytes(bytes(case.data))
        origin = ({"source": case.source} if case.built_by is None
                  else {"source": None, "built_by": case.built_by})
        entries.append({"case": case.name, "file": f"{case.name}.lbox", **origin,
                        "about": case.about, "edits": case.edits, "size": len(case.data),
                        "sha256": hashlib.sha256(case.data).hexdigest(), **spec})
    names = [e["case"] for e in entries]
    assert len(names) == len(set(names)), "duplicate case names"
    manifest = {
        "format_version": 2,
        "about": ("Adversarial archives derived from tests/vectors/v1 by "
                  "tests/vectors/generate_adversarial.py. 'source' is relative to "
                  "tests/vectors/v1, as are identity files in 'secret'. 'edits' are applied in "
                  "order to a copy of the source: {offset, bytes} overwrites, {truncate_to}, "
                  "{append_at, bytes}. Cases with 'source' null were written by a hostile "
                  "author with lockbox's own code: 'built_by' names the builder in tests/ "
                  "(module:call) that regenerates them. "
                  "'op' is open, ls (recursive), ls-root (the root's listing), read "
                  "PATH, verify or env. "
                  "'expected' is a lockbox.errors class name raised by 'op', "
                  "'opens-at-generation N', 'verify-reports', 'verify-ok' or 'ok'. "
                  "'still_reads' must still read back exactly; 'key_commitment' is what the "
                  "opened archive reports."),
        "cases": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    m = generate(args.out)
    print(f"{len(m['cases'])} cases written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
