"""``lockbox snap ...``: snapdir snapshots, stores and SNAPPACK on the command line.

``add_snap_parser(sub)`` adds the ``snap`` command group to the top-level subparsers of
:func:`lockbox.cli.build_parser`; each ``cmd_snap_*`` function runs one action. Errors
are raised as ``lockbox.errors`` classes and reported by :func:`lockbox.cli.main` (one
line, the class's exit code). The formats are specified in ``docs/formats/SNAPDIR.md``
(manifests, ids, stores) and ``docs/formats/SNAPPACK.md`` (the pack wire format).

The commands, their names, flags and output follow snapdir 1.11's ``snapdir`` binary:
``manifest`` (byte-identical text), ``id``, ``push`` (prints the id), ``pull``,
``verify``, ``diff`` (porcelain ``A\\tPATH`` lines or ``--json``), ``version
[--capabilities]`` and the wire plumbing ``objects-needed``, ``send-pack`` and
``receive-pack``. Differences: ``pull``/``verify`` take the id as an argument (snapdir:
``--id``), ``pull`` writes to ``--to DEST`` and ``diff`` compares two ids of one store;
``--exclude`` is not supported yet.

A DIR|ARCHIVE may also be a snapshot in a store, ``STORE_URI#id=ID``: ``manifest`` and
``id`` give it as stored, ``push`` copies it as it is (snapdir's ``sync``).

A store is ``file:///path`` (or a plain path), or ``http(s)://host/prefix/``: read with
plain GETs of the store layout (any static host), written through lockbox's server
(``lockbox serve --snap-store DIR --push-token-file F``) with a bearer token read from
``--token-file FILE`` (read as the server reads its token file) or the
``LOCKBOX_SNAP_TOKEN`` environment variable, never from argv. ``--store`` falls back to
``SNAPDIR_STORE`` as in snapdir.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import cli as _cli
from .cli import _common_parents, _err, _human, _out
from .errors import IntegrityError, LimitExceededError, NotFoundError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from .facade import Archive
    from .formats.snap.manifest import Manifest
    from .formats.snap.ops import PushReport
    from .formats.snap.snappack import ObjectStream
    from .formats.snap.store import Store, StoreUri

__all__ = ["add_snap_parser", "cmd_snap_manifest", "cmd_snap_id", "cmd_snap_push",
           "cmd_snap_pull", "cmd_snap_verify", "cmd_snap_diff", "cmd_snap_version",
           "cmd_snap_objects_needed", "cmd_snap_send_pack", "cmd_snap_receive_pack",
           "SNAPDIR_VERSION", "TOKEN_ENV", "STORE_ENV", "ZSTD_LEVEL_ENV", "capabilities_line",
           "render_diff_porcelain", "render_diff_json"]

SNAPDIR_VERSION = "1.11.0"
"""The snapdir release whose formats, stores and CLI these commands speak."""
TOKEN_ENV = "LOCKBOX_SNAP_TOKEN"
STORE_ENV = "SNAPDIR_STORE"
ZSTD_LEVEL_ENV = "SNAPDIR_SSH_ZSTD_LEVEL"
NO_STORE = (f"no store configured: pass --store URI or set the {STORE_ENV} environment "
            "variable")


def capabilities_line() -> str:
    """``snapdir 1.11.0 wire=1 caps=objects-needed,send-pack,receive-pack,snappack-zstd``."""
    from .formats.snap import snappack

    return snappack.capabilities_line(SNAPDIR_VERSION)


def _check_id(value: str, what: str) -> str:
    from .formats.snap.manifest import is_hex64

    if not is_hex64(value):
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise UsageError(f"invalid {what} {shown!r}: expected 64 lowercase hex characters")
    return value


def _id_list(data: bytes) -> list[str]:
    """The ids of an objects-needed / send-pack list, checked (one bad line fails before
    anything is answered) and deduplicated, first occurrence kept (snapdir's rules)."""
    from .formats.snap import snappack

    return snappack.parse_id_lines(data, dedupe=True)


# -- output ----------------------------------------------------------------------------


def _write_raw(data: bytes) -> None:
    """Exact bytes on stdout (manifests, packs)."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _stdout_tty() -> bool:
    try:
        return sys.stdout is not None and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _note(text: str) -> None:
    """A line of status on stderr (stdout carries the result)."""
    print(_cli.escape_controls(text), file=sys.stderr, flush=True)


_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _json_string(text: str) -> str:
    """A JSON string the way snapdir's diff writes it: UTF-8 as is, ``"``, ``\\``,
    ``\\n``, ``\\r``, ``\\t`` escaped, other controls ``\\u00xx``."""
    out = []
    for ch in text:
        named = _JSON_ESCAPES.get(ch)
        if named is not None:
            out.append(named)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_diff_porcelain(rows: Iterable[tuple[str, str]]) -> str:
    """snapdir's porcelain: ``STATUS\\tPATH`` per row (A added, D deleted, M modified,
    ``=`` unchanged with ``--all``), each line ending in a newline."""
    return "".join(f"{status}\t{path}\n" for status, path in rows)


def render_diff_json(rows: Iterable[tuple[str, str]]) -> str:
    """snapdir's ``--json``: one compact array of ``{"status":..,"path":..}``."""
    return "[" + ",".join('{"status":' + _json_string(status) + ',"path":'
                          + _json_string(path) + "}" for status, path in rows) + "]"


# -- stores and trees ------------------------------------------------------------------


def _store_uri(args: argparse.Namespace) -> StoreUri:
    from .formats.snap.store import StoreUri

    uri = getattr(args, "store", None) or os.environ.get(STORE_ENV) or None
    if uri is None:
        raise UsageError(NO_STORE)
    return StoreUri.parse(uri)


def _token(args: argparse.Namespace) -> str | None:
    """The push token: the text of --token-file, else LOCKBOX_SNAP_TOKEN (never argv);
    read as the server reads its --push-token-file (surrounding whitespace dropped)."""
    path = getattr(args, "token_file", None)
    if path:
        from .formats.snap.remote import read_token_file

        return read_token_file(path)
    return os.environ.get(TOKEN_ENV, "").strip() or None


@contextlib.contextmanager
def _reading(args: argparse.Namespace) -> Iterator[Store]:
    """The store of --store, to read: a FileStore or an HttpStore (plain GETs)."""
    from .formats.snap.store import open_store

    store = open_store(_store_uri(args))
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def _server(args: argparse.Namespace, uri: StoreUri) -> Iterator[Any]:
    """lockbox's server at ``uri`` (lockbox serve --snap-store), with the push token."""
    from .formats.snap.remote import ServerStore

    token = _token(args)
    if token is None:
        raise UsageError(f"writing to {uri} needs the server's push token: use "
                         f"--token-file FILE or the {TOKEN_ENV} environment variable")
    server = ServerStore(uri, token=token)
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def _tree(args: argparse.Namespace) -> Iterator[str | Archive]:
    """args.archive: a directory (its path), a snapshot in a store (``STORE_URI#id=ID``)
    or an opened archive of any format the reader opens (a .lbox asks for its password
    like ``lockbox ls``)."""
    from .facade import Archive
    from .formats.snap.store import parse_snap_location
    from .sources import is_url

    location: str = args.archive
    if parse_snap_location(location) is not None:
        with Archive.open(location) as snapshot:
            yield snapshot
        return
    if not is_url(location) and os.path.isdir(location):
        yield location
        return
    with _cli._open_any(args) as box:
        yield box


@contextlib.contextmanager
def _snapshot(location: str) -> Iterator[tuple[Store, Manifest] | None]:
    """For ``STORE_URI#id=ID``: the store and the snapshot's manifest, read from the store
    and checked against ID (not recomputed: a followed symlink's SIZE, which snapdir
    records as the link's own, stays as recorded). None for any other location."""
    from .formats.snap.store import open_store, parse_snap_location

    parsed = parse_snap_location(location)
    if parsed is None:
        yield None
        return
    uri, snapshot_id = parsed
    store = open_store(uri)
    try:
        yield store, store.get_manifest(snapshot_id)
    finally:
        store.close()


def _manifest_of(tree: str | Archive, args: argparse.Namespace) -> Manifest:
    from .formats.snap import manifest as snapmanifest

    follow = not getattr(args, "no_follow", False)
    if isinstance(tree, str):
        return snapmanifest.manifest_of_directory(tree, follow_symlinks=follow)
    meter = _cli._Meter(tree.session.info().file_bytes, "hashing",
                        enabled=not getattr(args, "quiet", False))
    try:
        return snapmanifest.manifest_of_archive(tree, follow_symlinks=follow, progress=meter)
    finally:
        meter.close()


# -- commands --------------------------------------------------------------------------


def cmd_snap_manifest(args: argparse.Namespace) -> int:
    """lockbox snap manifest: snapdir's manifest of a directory or an archive, exactly the
    bytes ``snapdir manifest`` prints."""
    _write_raw(_manifest(args).render())
    return 0


def _manifest(args: argparse.Namespace) -> Manifest:
    with _snapshot(args.archive) as stored:
        if stored is not None:
            return stored[1]
    with _tree(args) as tree:
        return _manifest_of(tree, args)


def cmd_snap_id(args: argparse.Namespace) -> int:
    """lockbox snap id: the snapshot id of a directory, an archive, or a manifest piped
    on stdin."""
    from .formats.snap import manifest as snapmanifest

    if args.archive is None:
        if _cli._stdin_tty():
            raise UsageError("no directory given and no manifest on stdin: pass a PATH "
                             "(or .), or pipe a manifest")
        data = sys.stdin.buffer.read(snapmanifest.MAX_MANIFEST_SIZE + 1)
        if len(data) > snapmanifest.MAX_MANIFEST_SIZE:
            raise LimitExceededError(f"the manifest on stdin is over "
                                     f"{snapmanifest.MAX_MANIFEST_SIZE} bytes")
        _out(snapmanifest.parse_manifest(data).id)
        return 0
    _out(_manifest(args).id)
    return 0


def cmd_snap_push(args: argparse.Namespace) -> int:
    """lockbox snap push: push a directory or an archive (only the objects the store
    lacks, the manifest last); prints the snapshot id."""
    from .formats.snap import ops
    from .formats.snap.store import FileStore

    uri = _store_uri(args)
    follow = not getattr(args, "no_follow", False)
    with _snapshot(args.archive) as stored:
        if stored is not None:  # a snapshot of another store: copied as it is
            report = _copy_snapshot(stored[0], stored[1], args, uri)
            _pushed(args, report, uri)
            return 0
    meter = _cli._Meter(None, "hashing", enabled=not args.quiet)
    try:
        with _tree(args) as tree:
            if uri.kind == "http":
                with _server(args, uri) as server:
                    report = ops.push(tree, server, follow_symlinks=follow, progress=meter)
            else:
                store = FileStore(uri, create=True)
                try:
                    report = ops.push(tree, store, follow_symlinks=follow, progress=meter)
                finally:
                    store.close()
    finally:
        meter.close()
    _pushed(args, report, uri)
    return 0


def _pushed(args: argparse.Namespace, report: PushReport, uri: StoreUri) -> None:
    _out(report.snapshot_id)
    if not args.quiet:
        if report.already_present:
            _note(f"{report.snapshot_id} was already in {uri}: nothing sent")
        else:
            _note(f"pushed {report.snapshot_id} to {uri}: {report.objects_sent} of "
                  f"{report.objects} objects sent ({_human(report.bytes_sent)})")


def _object_reader(store: Store) -> Callable[[str], bytes | ObjectStream]:
    """An object of ``store`` for write_pack: streamed from a local store (memory bounded
    whatever its size), whole from an HTTP one; verified either way."""
    from .formats.snap import snappack
    from .formats.snap.store import FileStore

    def get_object(object_id: str) -> bytes | ObjectStream:
        if isinstance(store, FileStore):
            size = store.object_size(object_id)
            if size is None:
                raise NotFoundError(f"object {object_id} is not in the store {store.uri}")
            return snappack.ObjectStream(size, store.iter_object(object_id))
        return store.get_object(object_id)

    return get_object


def _copy_snapshot(source: Store, manifest: Manifest, args: argparse.Namespace,
                   uri: StoreUri) -> PushReport:
    """Copy a snapshot from one store to another as it is (snapdir's ``sync``): only the
    objects the target lacks, each verified, the manifest last."""
    from .formats.snap import snappack
    from .formats.snap.ops import PushReport
    from .formats.snap.store import FileStore

    snapshot_id = manifest.id
    ids = list(dict.fromkeys(manifest.object_ids()))
    if uri.kind == "http":
        with _server(args, uri) as server:
            if server.has_manifest(snapshot_id):
                return PushReport(snapshot_id, len(ids), 0, 0, True)
            needed = server.objects_needed(ids)
            reader = _object_reader(source)
            sizes: list[int] = []

            def counted(object_id: str) -> bytes | ObjectStream:
                obj = reader(object_id)
                sizes.append(obj.size if isinstance(obj, snappack.ObjectStream) else len(obj))
                return obj

            server.send_pack(needed, counted, manifest=(snapshot_id, manifest.render()))
            return PushReport(snapshot_id, len(ids), len(needed), sum(sizes), False)
    target = FileStore(uri, create=True)
    try:
        if target.has_manifest(snapshot_id):
            return PushReport(snapshot_id, len(ids), 0, 0, True)
        needed = [i for i in ids if not target.has_object(i)]
        sent = 0
        for object_id in needed:
            with target.object_writer(object_id) as writer:
                for piece in source.iter_object(object_id):
                    writer.write(piece)
                writer.commit()
                sent += writer.size
        target.put_manifest(manifest, snapshot_id)
        return PushReport(snapshot_id, len(ids), len(needed), sent, False)
    finally:
        target.close()


def cmd_snap_pull(args: argparse.Namespace) -> int:
    """lockbox snap pull: fetch a snapshot (every object verified) into DEST."""
    from .formats.snap import ops

    snapshot_id = _check_id(args.id, "snapshot id")
    started = time.monotonic()
    meter = _cli._Meter(None, "pulling", enabled=not args.quiet)
    try:
        with _reading(args) as store:
            report = ops.pull(snapshot_id, store, args.to, overwrite=args.overwrite,
                              progress=meter)
    finally:
        meter.close()
    if not args.quiet:
        _out(f"pulled {snapshot_id}: {report.entries} entries, {report.bytes:,} bytes "
             f"({_human(report.bytes)}) to {args.to} in {time.monotonic() - started:.2f} s")
    return 0


def cmd_snap_verify(args: argparse.Namespace) -> int:
    """lockbox snap verify: the manifest hashes to ID and every object it names is in the
    store with the right BLAKE3; exit 5 with one line per problem otherwise."""
    from .formats.snap import ops

    snapshot_id = _check_id(args.id, "snapshot id")
    meter = _cli._Meter(None, "verifying", enabled=not args.quiet)
    try:
        with _reading(args) as store:
            report = ops.verify(snapshot_id, store, progress=meter)
    finally:
        meter.close()
    if report.ok:
        if not args.quiet:
            _out(f"ok: {snapshot_id}: {report.entries_checked} entries "
                 f"({_human(report.bytes_checked)}) checked")
        return 0
    for problem in report.problems:
        _err(f"verify: {problem}")
    return IntegrityError.exit_code


def cmd_snap_diff(args: argparse.Namespace) -> int:
    """lockbox snap diff: what changed from ID_A to ID_B (manifests only), in snapdir's
    porcelain (paths escaped as ``ls`` escapes them) or its exact ``--json``."""
    from .formats.snap import ops

    id_a = _check_id(args.id_a, "snapshot id")
    id_b = _check_id(args.id_b, "snapshot id")
    with _reading(args) as store:
        entries = ops.diff(id_a, id_b, store, include_unchanged=args.all)
    rows = [(e.status, e.path) for e in entries]
    if args.json:
        _write_raw((render_diff_json(rows) + "\n").encode("utf-8", "surrogateescape"))
    else:
        for status, path in rows:
            print(f"{status}\t{_cli.escape_controls(path)}")
    if args.exit_code and any(status != "=" for status, _ in rows):
        return 1
    return 0


def cmd_snap_version(args: argparse.Namespace) -> int:
    """lockbox snap version: the snapdir version spoken (and the wire capabilities)."""
    _out(capabilities_line() if args.capabilities else f"snapdir {SNAPDIR_VERSION}")
    return 0


def cmd_snap_objects_needed(args: argparse.Namespace) -> int:
    """lockbox snap objects-needed: the ids on stdin the store lacks, first-seen order.
    Every line is checked before the store is asked (nothing is half answered)."""
    from .formats.snap import ops

    ids = _id_list(sys.stdin.buffer.read())
    uri = _store_uri(args)
    if uri.kind == "http" and _token(args) is not None:
        with _server(args, uri) as server:  # one POST to lockbox's server
            needed = server.objects_needed(ids)
    else:
        with _reading(args) as store:
            needed = ops.objects_needed(store, ids)
    _write_raw("".join(f"{i}\n" for i in needed).encode("ascii"))
    return 0


def _zstd_level() -> int:
    """SNAPDIR_SSH_ZSTD_LEVEL as snapdir reads it: an integer (clamped to 1..19 by the
    writer), anything else the default."""
    from .formats.snap import snappack

    try:
        return int(os.environ.get(ZSTD_LEVEL_ENV, "").strip())
    except ValueError:
        return snappack.DEFAULT_ZSTD_LEVEL


def _read_ids_arg(path: str) -> list[str]:
    if path == "-":
        return _id_list(sys.stdin.buffer.read())
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError(f"cannot read --ids file {path}: {e.strerror or e}") from e
    return _id_list(data)


def cmd_snap_send_pack(args: argparse.Namespace) -> int:
    """lockbox snap send-pack: a SNAPPACK stream of the listed objects (and a manifest,
    last) on stdout; any failure stops it before ``end``."""
    from .formats.snap import snappack

    if _stdout_tty():
        raise UsageError("send-pack writes a binary pack to stdout: pipe it (to "
                         "receive-pack, ssh, curl) or redirect it to a file")
    ids = _read_ids_arg(args.ids)
    manifest_id = args.manifest_id
    if manifest_id is not None:
        _check_id(manifest_id, "--manifest-id")
    with _reading(args) as store:
        manifest = None
        if manifest_id is not None:
            manifest = (manifest_id, store.get_manifest_bytes(manifest_id))

        sys.stdout.flush()
        report = snappack.write_pack(ids, _object_reader(store), sys.stdout.buffer,
                                     manifest=manifest,
                                     pack_format=args.pack_format, level=_zstd_level())
    if not args.quiet:
        _note(f"sent pack: {report.objects_written} object(s)"
              + (" + manifest" if report.manifest_written else ""))
    return 0


def cmd_snap_receive_pack(args: argparse.Namespace) -> int:
    """lockbox snap receive-pack: file a SNAPPACK 1 or 1Z stream from stdin into the
    store (lockbox's server for an http(s) store); stdout stays silent."""
    from .formats.snap import snappack
    from .formats.snap.store import FileStore

    required = args.require_manifest
    if required is not None:
        _check_id(required, "--require-manifest")
    uri = _store_uri(args)
    stdin = sys.stdin.buffer
    if uri.kind == "http":
        with _server(args, uri) as server:
            report = server.receive_pack(stdin, require_manifest=required)
    else:
        store = FileStore(uri, create=True)
        sink = snappack.FileSink(store)
        try:
            report = snappack.read_pack(stdin, sink, require_manifest=required)
        finally:
            sink.close()
            store.close()
    if not args.quiet:
        _note(f"received pack: {report.objects_written} object(s) written, "
              f"{report.objects_skipped} skipped"
              + (f", manifest {report.manifest_id}" if report.manifest_id else ""))
    return 0


# -- parser ----------------------------------------------------------------------------


_SNAP_DESCRIPTION = f"""\
snapdir snapshots (content-addressed directory trees) and their stores, speaking
snapdir {SNAPDIR_VERSION}'s manifests, ids, store layout and SNAPPACK wire format byte
for byte (docs/formats/SNAPDIR.md, docs/formats/SNAPPACK.md).

A DIR|ARCHIVE is a directory, or any archive lockbox reads (.lbox, .uri, .sync; a local
file or an http(s):// URL; a .lbox is decrypted as it streams): an archive's id is the
id of its extracted tree.

A store URI is file:///path (or a plain path), or http(s)://host/prefix/ (read with
plain GETs: any static host; written through 'lockbox serve --snap-store DIR' with a
bearer token from --token-file FILE or {TOKEN_ENV}). --store defaults to
${STORE_ENV}. A snapshot in a store is also an archive for ls/cat/extract/convert:
'file:///srv/store#id=ID'.

examples:
  lockbox snap id ~/photos                        # == snapdir id ~/photos
  lockbox snap push photos.lbox --store file:///srv/snaps
  lockbox snap pull ID --store https://example.org/snaps/ --to restored
  lockbox snap send-pack --store file:///a --ids ids.txt --manifest-id ID \\
    | ssh host lockbox snap receive-pack --store file:///b --require-manifest ID
"""


def add_snap_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``lockbox snap ACTION ...`` to the top-level subparsers ``sub`` (those of
    :func:`lockbox.cli.build_parser`); returns the ``snap`` parser."""
    quiet, secrets = _common_parents()
    group: argparse.ArgumentParser = sub.add_parser(
        "snap", help="snapdir snapshots and stores: id, push, pull, send/receive-pack ...",
        description=_SNAP_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[quiet])
    actions = group.add_subparsers(dest="snap_command", metavar="ACTION", required=True)

    def cmd(name: str, func: Callable[[argparse.Namespace], int], help: str,
            description: str | None = None,
            parents: Sequence[argparse.ArgumentParser] = (quiet,)) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(
            name, help=help, description=description or help, parents=list(parents))
        p.set_defaults(func=func)
        return p

    def store_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", metavar="URI", default=None,
                       help=f"the store: file:///path, a path, or http(s)://... "
                            f"(default: ${STORE_ENV})")

    def token_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--token-file", metavar="FILE", default=None,
                       help="an http(s) store (lockbox serve --snap-store): the push token "
                            f"in FILE (default: ${TOKEN_ENV})")

    def tree_arguments(p: argparse.ArgumentParser, *, optional: bool = False) -> None:
        p.add_argument("archive", metavar="DIR|ARCHIVE", nargs="?" if optional else None,
                       help="a directory, or an archive of any format lockbox reads")

    p = cmd("manifest", cmd_snap_manifest, "print the manifest (byte-identical to snapdir's)",
            description="Print snapdir's manifest of DIR or ARCHIVE: one 'TYPE PERMS "
                        "CHECKSUM SIZE PATH' line per entry, sorted by path, exactly the "
                        "bytes 'snapdir manifest' prints.", parents=(quiet, secrets))
    tree_arguments(p)
    p.add_argument("--no-follow", action="store_true",
                   help="leave symbolic links out (default: follow them, as snapdir does)")

    p = cmd("id", cmd_snap_id, "print the snapshot id",
            description="Print the snapshot id of DIR or ARCHIVE (the BLAKE3 of its "
                        "manifest), or of a manifest piped on stdin when no path is given.",
            parents=(quiet, secrets))
    tree_arguments(p, optional=True)

    p = cmd("push", cmd_snap_push, "push a snapshot into a store; prints its id",
            description="Push DIR or ARCHIVE into the store: only the objects it lacks, "
                        "the manifest last. Prints the snapshot id.", parents=(quiet, secrets))
    tree_arguments(p)
    store_option(p)
    token_option(p)

    p = cmd("pull", cmd_snap_pull, "pull a snapshot from a store into a directory",
            description="Fetch snapshot ID from the store into DEST: every object is "
                        "BLAKE3-checked before it is put in place; nothing is written "
                        "outside DEST.")
    p.add_argument("id", metavar="ID")
    store_option(p)
    p.add_argument("--to", "-C", required=True, metavar="DEST",
                   help="destination directory (created if missing)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing files (default: refuse before writing anything)")

    p = cmd("verify", cmd_snap_verify, "check a snapshot in a store",
            description="Check that snapshot ID's manifest hashes to ID and that every "
                        "object it names is in the store with the right BLAKE3. Exit code "
                        "0 when intact, 5 (problems on stderr) otherwise.")
    p.add_argument("id", metavar="ID")
    store_option(p)

    p = cmd("diff", cmd_snap_diff, "what changed between two snapshots",
            description="Compare the manifests of ID_A and ID_B (no object is read): one "
                        "'STATUS<TAB>PATH' line per file added (A), deleted (D) or "
                        "modified (M), as snapdir diff prints them.")
    p.add_argument("id_a", metavar="ID_A")
    p.add_argument("id_b", metavar="ID_B")
    store_option(p)
    p.add_argument("--json", action="store_true",
                   help='print a JSON array of {"status", "path"} objects')
    p.add_argument("--all", action="store_true", help="also list unchanged paths (=)")
    p.add_argument("--exit-code", action="store_true",
                   help="exit 1 when there is any difference")

    p = cmd("version", cmd_snap_version, "print the snapdir version spoken",
            description=f"Print 'snapdir {SNAPDIR_VERSION}', the snapdir release these "
                        "commands speak; --capabilities adds the wire version and the "
                        "plumbing capabilities.")
    p.add_argument("--capabilities", action="store_true",
                   help="also print the wire version and capabilities")

    p = cmd("objects-needed", cmd_snap_objects_needed,
            "print the object ids on stdin that the store lacks",
            description="Read object ids on stdin (one per line) and print those the store "
                        "does not hold, in first-seen order. Any malformed line fails the "
                        "command before anything is printed.")
    store_option(p)
    token_option(p)

    p = cmd("send-pack", cmd_snap_send_pack, "write a SNAPPACK stream to stdout",
            description="Write a SNAPPACK stream of the listed objects (and the manifest "
                        "of --manifest-id, last) to stdout. A missing object stops the "
                        "stream before its 'end' line, so the receiver fails too.")
    store_option(p)
    p.add_argument("--ids", required=True, metavar="FILE|-",
                   help="file listing one object id per line ('-': stdin)")
    p.add_argument("--manifest-id", metavar="ID", default=None,
                   help="snapshot id whose manifest rides the pack as the last record")
    p.add_argument("--pack-format", choices=("v1", "zstd"), default="v1",
                   help=f"v1 (SNAPPACK 1, default) or zstd (SNAPPACK 1Z at level "
                        f"${ZSTD_LEVEL_ENV}, default 3)")

    p = cmd("receive-pack", cmd_snap_receive_pack, "file a SNAPPACK stream from stdin",
            description="Read a SNAPPACK 1 or 1Z stream on stdin into the store: every "
                        "object is BLAKE3-checked before it is filed, the manifest is "
                        "filed only after the stream's 'end'. A summary goes to stderr.")
    store_option(p)
    token_option(p)
    p.add_argument("--require-manifest", metavar="ID", default=None,
                   help="fail unless the stream carries exactly this manifest")
    return group
