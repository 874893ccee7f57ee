"""snapdir snapshots and stores (docs/formats/SNAPDIR.md): manifests and ids byte for byte
as snapdir, ``file://`` and ``http(s)://`` stores, push/pull/verify/diff, and a store +
snapshot id opened as an archive through the format-neutral protocol
(``lockbox.open("file:///store#id=ID")``).

``manifest`` and ``store`` are pure or import their I/O lazily (they run under Pyodide);
``ops`` works on local trees (CPython).
"""

from .manifest import (
    EMPTY_BLAKE3,
    Manifest,
    ManifestEntry,
    build_manifest,
    directory_checksum,
    is_hex64,
    manifest_of_archive,
    manifest_of_directory,
    object_id,
    parse_manifest,
    render_manifest,
    snapshot_id,
)
from .store import (
    FileStore,
    HttpStore,
    StoreUri,
    manifest_path,
    object_path,
    open_store,
    parse_snap_location,
    snap_location,
)

__all__ = [
    "EMPTY_BLAKE3", "Manifest", "ManifestEntry", "build_manifest", "directory_checksum",
    "is_hex64", "manifest_of_archive", "manifest_of_directory", "object_id",
    "parse_manifest", "render_manifest", "snapshot_id", "FileStore", "HttpStore",
    "StoreUri", "manifest_path", "object_path", "open_store", "parse_snap_location",
    "snap_location",
]
