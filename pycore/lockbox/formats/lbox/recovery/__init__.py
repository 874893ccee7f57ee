"""Recovery: rebuild what a damaged archive still holds, trusting nothing but the AEAD.

docs/FORMAT.md §15. One module per part: ``report`` (the report model), ``lenient``
(the strict wire decoders, their errors caught), ``scanner`` (steps 1 to 3 and the
completeness check), ``findings`` (what the scan found), ``rebuild`` (step 4),
``salvage`` (step 5). :class:`RecoveryScanner` is sans-I/O like the read engine:
:meth:`RecoveryScanner.scan_flow` is a flow (it yields :class:`~lockbox.drivers.Read`
batches) and :meth:`RecoveryScanner.scan` runs it on a
:class:`~lockbox.sources.base.RangeSource`. It never trusts the superblock, a page
header or a tree:

1. **Keys.** The archive id and key directory come from the superblock slots,
   parsed leniently (a slot whose CRC fails is still tried: the key wrap and the
   commit's AEAD decide), else from KEYDIR pages found at 4096-aligned offsets
   (newest generation first). Each distinct key slot is tried once.
2. **Frames.** The file is read once, front to back, in windows of
   ``window_bytes`` (8 MiB): memory stays bounded whatever the archive size. A
   C-speed search finds every frame magic followed by a known kind and zero
   flags; the 48-byte header must pass its CRC before its size is believed, and
   the frame must then authenticate *at that offset* (the AAD binds it: a frame
   copied elsewhere is rejected). An authenticated frame is stepped over whole;
   back-to-back frames of an intact page are thus walked by their sizes, and
   zeroed holes or damaged regions are crossed by the search. FREE pages are
   stepped over (§4); no other page header is trusted to say where not to look.
   **Bounded work:** a candidate that fails to authenticate costs its size in
   AEAD work; the search resumes right after its magic while the bytes spent
   on failures stay under ``2 x bytes scanned + 16 MiB``, and past that budget
   it resumes after the candidate's claimed end, so hostile input (thousands of
   fake headers claiming 4 MiB each) costs at most about three AEAD passes
   over the file, never a quadratic amount.
3. **Classify.** DATA_CHUNK frames are grouped by ``file_id`` (their data is
   hashed as it streams by, never kept); each member of a PACK frame (format
   version 3) is the one chunk of a one-chunk file and joins its ``file_id``'s
   group the same way (a member that does not decode costs only itself);
   TOC_NODE and ENV_NODE leaves are kept per key, newest generation first;
   commits come from the slots.
4. **Rebuild** the best tree: the newest authenticated commit's TOC if every
   node of it authenticates; else per path the newest entry of any surviving
   TOC leaf (an entry is dropped when a *newer* leaf whose key range covers it
   does not contain it: it was removed or moved by then); plus, from data frames
   alone, file versions that no surviving entry names (path and metadata from
   their last chunk; directories implied by paths). Symlinks and empty
   directories come from TOC leaves only.
5. **Report** (:class:`RecoveryReport`): each file complete (every chunk
   authenticated, lengths right, BLAKE3 of the content equals the recorded
   hash), partial (with the byte ranges that survive) or lost (named by a TOC
   entry, no chunk found). :meth:`RecoveryScanner.salvage` writes every complete
   file, the directories, symlinks and env values into a **new** archive through
   the normal writer, re-reading each chunk and re-authenticating it against the
   tag seen during the scan (a PACK frame once for its members, not once per
   member: :class:`~.findings.PackCache`): no byte that did not authenticate is
   ever returned or written.

The salvaged archive is a fresh one (new archive id, new content key). The
damaged archive's key directory cannot be carried over: its slots wrap the old
content key under the old archive id, and reusing both would make the new file
a diverged copy of the old one (§17.2: frames of either would authenticate in
the other). It is protected by the secret used for recovery: the password
(with the Argon2id parameters of the slot it opened), and/or the identity's
recipient. Other passwords and recipients of the damaged archive must be added
again (``lockbox keys add-password`` / ``add-recipient``).
"""

from __future__ import annotations

import os
from typing import Any

from ..keys import Identity
from .report import (
    COMPLETE,
    LOST,
    PARTIAL,
    SOURCE_COMMIT,
    SOURCE_DATA_FRAMES,
    SOURCE_IMPLIED,
    SOURCE_TOC_LEAF,
    RecoveredEntry,
    RecoveryReport,
    SalvageResult,
)
from .scanner import DEFAULT_WINDOW, RecoveryScanner

__all__ = ["RecoveryScanner", "RecoveryReport", "RecoveredEntry", "SalvageResult", "recover",
           "COMPLETE", "PARTIAL", "LOST", "SOURCE_COMMIT", "SOURCE_TOC_LEAF",
           "SOURCE_DATA_FRAMES", "SOURCE_IMPLIED", "DEFAULT_WINDOW"]


def recover(path: str | os.PathLike[str], *, password: str | bytes | None = None,
            identity: Identity | None = None, out: str | os.PathLike[str] | None = None,
            **kw: Any) -> RecoveryReport:
    """Scan the archive at ``path`` (a local file or an http(s) URL) and, with
    ``out``, salvage its complete files into a new archive there."""
    from ....sources import open_source

    source = open_source(os.fspath(path))
    try:
        scanner = RecoveryScanner(password=password, identity=identity, **kw)
        report = scanner.scan(source)
        if out is not None:
            scanner.salvage(out, source)
        return report
    finally:
        source.close()
