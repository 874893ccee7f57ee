"""lockbox.formats.snap.manifest: the line format, ids, building manifests (snapdir's rules;
the golden values are snapdir's own fixtures)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockbox.errors import FormatError, StorageError, UsageError
from lockbox.formats.snap.manifest import (
    EMPTY_BLAKE3,
    Manifest,
    ManifestEntry,
    build_manifest,
    directory_checksum,
    is_hex64,
    manifest_of_directory,
    object_id,
    parse_manifest,
    render_manifest,
    snapshot_id,
)

# snapdir's guide fixtures (crates/snapdir-core/src/merkle.rs): two empty files, then
# foo.txt = "foo\n"; and their golden snapshot ids.
EMPTY_FILES = (
    "D 700 dba5865c0d91b17958e4d2cac98c338f85cbbda07b71a020ab16c391b5e7af4b 0 ./\n"
    "F 600 af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262 0 ./bar.txt\n"
    "F 600 af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262 0 ./foo.txt\n")
EMPTY_FILES_ID = "c678a299380893769bd7795628b96147229b410a9d5a5b7cae563bcae3c27857"
MODIFIED = (
    "D 700 4a0732cfb45ebe9d8d572fc4c77b759384bed029911e35f8859430b889427d4d 4 ./\n"
    "F 600 af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262 0 ./bar.txt\n"
    "F 600 49dc870df1de7fd60794cebce449f5ccdae575affaa67a24b62acb03e039db92 4 ./foo.txt\n")
MODIFIED_ID = "8af03a1bec09b1838d2c4f56c6940ed35ccdad1064243d2d775e8347ba82b9be"
TWO_EMPTY_ROOT = "dba5865c0d91b17958e4d2cac98c338f85cbbda07b71a020ab16c391b5e7af4b"
H = "a" * 64


def test_golden_ids() -> None:
    assert object_id(b"") == EMPTY_BLAKE3
    assert object_id(b"foo\n") == "49dc870df1de7fd60794cebce449f5ccdae575affaa67a24b62acb03e039db92"
    assert directory_checksum([]) == EMPTY_BLAKE3
    assert directory_checksum([EMPTY_BLAKE3, EMPTY_BLAKE3]) == TWO_EMPTY_ROOT
    assert snapshot_id(EMPTY_FILES.encode()) == EMPTY_FILES_ID
    assert parse_manifest(EMPTY_FILES).id == EMPTY_FILES_ID
    assert parse_manifest(MODIFIED.encode()).id == MODIFIED_ID
    # the id hashes every line's \n, the last one included
    assert snapshot_id(EMPTY_FILES.rstrip("\n").encode()) != EMPTY_FILES_ID


def test_directory_checksum_sorts_and_deduplicates() -> None:
    assert directory_checksum(["ccc", "aaa", "bbb", "bbb"]) == object_id(b"aaabbbccc")
    assert directory_checksum(["b2", "a1"]) == directory_checksum(["a1", "b2", "a1"])


def test_render_is_byte_identical_and_sorted_by_path_bytes() -> None:
    m = parse_manifest(EMPTY_FILES)
    assert m.render() == EMPTY_FILES.encode()
    entries = [ManifestEntry("F", 0o644, H, 1, p) for p in ("./é", "./a/b", "./a-b", "./z")]
    entries.append(ManifestEntry("D", 0o755, H, 3, "./a/"))
    paths = [line.split(" ", 4)[4] for line in render_manifest(entries).decode().splitlines()]
    # '-' (0x2d) < '/' (0x2f) < 'z' < 'é' (0xc3 0xa9): byte order, not locale order
    assert paths == ["./a-b", "./a/", "./a/b", "./z", "./é"]
    assert render_manifest(Manifest.of([])) == b"\n"   # snapdir's echo of nothing


def test_perms_render_as_octal_without_leading_zeros() -> None:
    for mode, text in ((0o644, "644"), (0o4755, "4755"), (0, "0"), (0o7, "7"), (0o1777, "1777")):
        line = ManifestEntry("F", mode, H, 0, "./f").render()
        assert line.split(" ")[1] == text
        assert parse_manifest(line).entries[0].perms == mode


def test_parse_ignores_comments_blank_lines_and_crlf_and_sorts() -> None:
    text = ("# made by hand\n\r\n" + MODIFIED.splitlines()[2] + "\r\n\n#x\n"
            + MODIFIED.splitlines()[0] + "\n" + MODIFIED.splitlines()[1])
    m = parse_manifest(text.encode())
    assert m.render() == MODIFIED.encode()
    assert m.id == MODIFIED_ID


@pytest.mark.parametrize("line, rule", [
    ("F 644 " + H + " 1", "expected 'TYPE PERMS CHECKSUM SIZE PATH'"),
    ("X 644 " + H + " 1 ./f", "TYPE must be F or D"),
    ("f 644 " + H + " 1 ./f", "TYPE must be F or D"),
    ("F 0644 " + H + " 1 ./f", "PERMS"),
    ("F 648 " + H + " 1 ./f", "PERMS"),
    ("F 17777 " + H + " 1 ./f", "PERMS"),
    ("F  644 " + H + " 1 ./f", "PERMS"),
    ("F 644 " + H.upper() + " 1 ./f", "CHECKSUM"),
    ("F 644 " + H[:63] + " 1 ./f", "CHECKSUM"),
    ("F 644 " + H + " 01 ./f", "SIZE"),
    ("F 644 " + H + " +1 ./f", "SIZE"),
    ("F 644 " + H + " 18446744073709551616 ./f", "SIZE"),
    ("F 644 " + H + " 1x ./f", "SIZE"),
    ("F 644 " + H + " 1 /abs/f", "must start with './'"),
    ("F 644 " + H + " 1 f", "must start with './'"),
    ("D 755 " + H + " 1 ./d", "must end with '/'"),
    ("F 644 " + H + " 1 ./f/", "must not end with '/'"),
    ("F 644 " + H + " 1 ./", "must not end with '/'"),
    ("F 644 " + H + " 1 ./a//b", "component"),
    ("F 644 " + H + " 1 ./a/../b", "component"),
    ("D 755 " + H + " 1 ././", "component"),
    ("F 644 " + H + " 1 ./a\x00b", "NUL"),
])
def test_parse_refuses_with_the_line_and_the_rule(line: str, rule: str) -> None:
    with pytest.raises(FormatError) as e:
        parse_manifest(("# c\n" + line + "\n").encode())
    assert "manifest line 2:" in str(e.value)
    assert rule in str(e.value)


def test_parse_keeps_spaces_in_paths_and_accepts_the_max_size() -> None:
    line = f"F 644 {H} 18446744073709551615 ./a b  c "
    e = parse_manifest(line).entries[0]
    assert (e.path, e.size, e.rel_path) == ("./a b  c ", 2**64 - 1, "a b  c ")


def test_parse_refuses_duplicates_and_bad_utf8() -> None:
    with pytest.raises(FormatError, match=r"duplicate path '\./f'"):
        parse_manifest(f"F 644 {H} 1 ./f\nF 600 {H} 1 ./f\n")
    with pytest.raises(FormatError, match="manifest line 2: not valid UTF-8"):
        parse_manifest(f"D 755 {H} 0 ./\nF 644 {H} 1 ./\xff\n".encode("latin-1"))


def test_manifest_lookups() -> None:
    m = parse_manifest(MODIFIED)
    root = m.get("")
    assert root is not None and root.is_dir and root.rel_path == ""
    assert m.get("foo.txt") is not None and m.get("nope") is None
    assert m.object_ids() == [EMPTY_BLAKE3, object_id(b"foo\n")]
    assert m.file_bytes == 4 and len(m) == 3


def test_build_manifest_computes_directories_bottom_up() -> None:
    foo = object_id(b"foo\n")
    m = build_manifest([("", "D", 0o700, 0, ""), ("bar.txt", "F", 0o600, 0, EMPTY_BLAKE3),
                        ("foo.txt", "F", 0o100600, 4, foo)])
    assert m.render() == MODIFIED.encode()
    nested = build_manifest([("a/b/c", "F", 0o644, 2, H), ("a/e", "D", 0o700, 0, "")])
    lines = nested.render().decode().splitlines()
    c = ManifestEntry("F", 0o644, H, 2, "./a/b/c")
    b_sum = directory_checksum([H])
    a_sum = directory_checksum([b_sum, EMPTY_BLAKE3])
    assert lines == [f"D 755 {directory_checksum([a_sum])} 2 ./",
                     f"D 755 {a_sum} 2 ./a/", f"D 755 {b_sum} 2 ./a/b/", c.render(),
                     f"D 700 {EMPTY_BLAKE3} 0 ./a/e/"]


@pytest.mark.parametrize("rows, message", [
    ([("a", "F", 0o644, 1, H), ("a/b", "F", 0o644, 1, H)], "under the file a"),
    ([("a", "F", 0o644, 1, H), ("a", "D", 0o755, 0, "")], "given twice"),
    ([("a/../b", "F", 0o644, 1, H)], "component"),
    ([("a\nb", "F", 0o644, 1, H)], "newline"),
    ([("a", "F", 0o644, 1, "xyz")], "bad checksum"),
    ([("", "F", 0o644, 1, H)], "root must be a directory"),
    ([("a", "L", 0o644, 1, H)], "kind 'L'"),
    ([("a", "F", 0o644, 2**63, H), ("b", "F", 0o644, 2**63, H)], "more than 2\\*\\*64"),
])
def test_build_manifest_refuses(rows: list, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_manifest(rows)


def test_is_hex64() -> None:
    assert is_hex64(H) and not is_hex64(H.upper()) and not is_hex64(H + "0")
    assert not is_hex64(None) and not is_hex64("g" * 64)


# ----------------------------------------------------------------- host directories


def _perms(p: Path) -> str:
    return format(os.lstat(p).st_mode & 0o7777, "o")


def test_manifest_of_directory_rules(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / "d" / "empty").mkdir(parents=True)
    (root / "d" / "x").write_bytes(b"hello")
    (root / "d" / "x").chmod(0o751)
    (root / "link").symlink_to("d/x")
    (root / "dlink").symlink_to("d")
    (root / "broken").symlink_to("nowhere")
    os.mkfifo(root / "fifo")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(root / "sock"))
        m = manifest_of_directory(root)
    x = object_id(b"hello")
    lines = m.render().decode().splitlines()
    empty_d = f"D {_perms(root / 'd' / 'empty')} {EMPTY_BLAKE3} 0"
    assert lines[1:] == [
        f"D {_perms(root / 'd')} {directory_checksum([x, EMPTY_BLAKE3])} 5 ./d/",
        f"{empty_d} ./d/empty/",
        f"F 751 {x} 5 ./d/x",
        f"D 777 {directory_checksum([x, EMPTY_BLAKE3])} 5 ./dlink/",
        f"{empty_d} ./dlink/empty/",
        f"F 751 {x} 5 ./dlink/x",
        f"F 777 {x} 3 ./link",   # a followed link: its own mode and size, as snapdir
    ]
    assert lines[0].endswith(" 13 ./") and lines[0].startswith(f"D {_perms(root)} ")
    plain = manifest_of_directory(root, follow_symlinks=False)
    assert [e.path for e in plain.entries] == ["./", "./d/", "./d/empty/", "./d/x"]


def test_manifest_of_directory_refuses_what_snapdir_cannot_read_back(tmp_path: Path) -> None:
    (tmp_path / "a\nb").write_bytes(b"")
    with pytest.raises(UsageError, match="newline"):
        manifest_of_directory(tmp_path)
    os.unlink(tmp_path / "a\nb")
    os.close(os.open(os.fsencode(tmp_path) + b"/\xff", os.O_CREAT | os.O_WRONLY, 0o644))
    with pytest.raises(UsageError, match="not valid UTF-8"):
        manifest_of_directory(tmp_path)


def test_manifest_of_directory_refuses_cycles_and_non_directories(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "up").symlink_to("..")
    with pytest.raises(UsageError, match="symlink cycle"):
        manifest_of_directory(tmp_path)
    assert [e.path for e in manifest_of_directory(tmp_path, follow_symlinks=False).entries] \
        == ["./", "./d/"]
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(UsageError, match="not a directory"):
        manifest_of_directory(tmp_path / "f")
    with pytest.raises(UsageError, match="no such directory"):
        manifest_of_directory(tmp_path / "missing")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_manifest_of_directory_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"x")
    (tmp_path / "secret").chmod(0)
    with pytest.raises(StorageError, match="cannot read"):
        manifest_of_directory(tmp_path)


def test_manifest_of_directory_hashes_big_files(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)   # several read chunks
    (tmp_path / "big").write_bytes(data)
    e = manifest_of_directory(tmp_path).get("big")
    assert e is not None and (e.checksum, e.size) == (object_id(data), len(data))
    assert stat.S_IMODE(os.stat(tmp_path / "big").st_mode) == e.perms


# ----------------------------------------------------------------- properties

_names = st.text(st.characters(codec="utf-8", exclude_characters="/\n\r\x00"),
                 min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    paths = draw(st.lists(st.lists(_names, min_size=1, max_size=3).map("/".join),
                          max_size=12, unique=True))
    rows = []
    taken: set[str] = set()
    for p in paths:
        if any(p.startswith(t + "/") or t.startswith(p + "/") for t in taken):
            continue
        taken.add(p)
        if draw(st.booleans()):
            rows.append((p, "D", draw(st.integers(0, 0o7777)), 0, ""))
        else:
            rows.append((p, "F", draw(st.integers(0, 0o7777)), draw(st.integers(0, 2**50)),
                         draw(st.sampled_from([H, EMPTY_BLAKE3, "0" * 64]))))
    return build_manifest(rows, implicit_dir_mode=draw(st.integers(0, 0o7777)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests())
def test_parse_render_round_trip(m: Manifest) -> None:
    data = m.render()
    again = parse_manifest(data)
    assert again == m
    assert again.render() == data and again.id == snapshot_id(data)
