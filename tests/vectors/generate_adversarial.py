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
(``open``, ``ls``, ``read PATH``, ``verify``, ``env``) and the expected outcome: a
``lockbox.errors`` class name, ``opens-at-generation N`` (the newest valid slot,
or the older one the reader opens in its place), ``verify-reports`` (verify()
lists a problem) or ``verify-ok``. Optional ``still_reads`` lists files that must
still read back exactly (their golden SHA-256); optional ``key_commitment``, what
the opened archive reports.

Structures are located from the cleartext (slot headers §3, page headers §4,
frame headers §5, key directory §6); which frame holds which file is taken
from the golden archive's TOC, read with its golden password. Nothing random:
regenerating gives identical bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import zlib
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


def golden_manifest() -> dict[str, dict[str, Any]]:
    m = json.loads((GOLDEN / "manifest.json").read_text())
    return {a["file"]: a for a in m["archives"]}


def file_refs(source: str, password: str, path: str) -> list[tuple[int, int]]:
    """(frame_offset, frame_size) of the frames holding a file's content."""
    import lockbox

    with lockbox.open(GOLDEN / source, password=password) as box:
        entry = box._run(box.view.stat_flow(path))
        refs = box._run(box.view.content_refs_flow(entry))
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

    c = Case("commit-frame-size-mismatch", "hello.lbox",
             "newest commit header's sealed_size lowered by 1 (header and slot CRCs "
             "recomputed): fails after its key slot opened: raised, no fallback")
    s = c.slot(0)
    sealed = struct.unpack_from("<I", c.data, s["commit"] + 8)[0]
    c.write(s["commit"] + 8, struct.pack("<I", sealed - 1))
    c.fix_frame_crc(s["commit"])
    c.fix_slot_crc(0)
    add(c, "open", "IntegrityError")

    c = Case("spliced-archive-id", "hello.lbox",
             "slot 1's archive_id changed, CRC recomputed: two valid slots of different archives")
    c.flip(c.slot(1)["base"] + 16)
    c.fix_slot_crc(1)
    add(c, "open", "IntegrityError")

    c = Case("unsupported-version-newest", "hello.lbox", "slot 0 version 3, CRC recomputed")
    c.write(c.slot(0)["base"] + 8, struct.pack("<H", 3))
    c.fix_slot_crc(0)
    add(c, "open", "UnsupportedVersionError")

    c = Case("unsupported-version-older", "hello.lbox",
             "slot 1 (the older, generation 1) version 3, CRC recomputed: still refused")
    c.write(c.slot(1)["base"] + 8, struct.pack("<H", 3))
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


def generate(out: Path) -> dict[str, Any]:
    golden = golden_manifest()
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for case, spec in build(golden):
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
