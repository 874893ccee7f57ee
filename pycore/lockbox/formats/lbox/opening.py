"""Opening an archive: read the superblock, unlock locally, choose the commit.

A sans-I/O flow (``lockbox.drivers``): the first round trip is the 16 KiB
superblock; then the newest valid slot is unlocked and its commit opened.
docs/FORMAT.md §3, §6 and §11 "Opening".

The older slot is opened in its place only when that protects against damage
done by someone WITHOUT the key: the newest slot's key directory is unreadable,
or the given secret opens none of its key slots (a keyless edit of the newest
key directory must not lock everybody out) — and then only if the newest commit
frame authenticates under the content key the older slot gives (one archive,
one content key). Once a key slot of the newest slot opened with the given
secret, every later failure of that generation (key commitment, commit frame,
commit record, key-directory hash) is raised, naming the older generation that
exists: an older generation is something the user asks for (``generation=N``),
never a silent substitute. Every error describes the newest commit and the
secret actually given.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from ...cache import PageCache
from ...codec.base import Codec as CodecBackend
from ...crypto.base import CryptoBackend
from ...drivers import Flow, Read
from ...errors import (
    FormatError,
    IntegrityError,
    LimitExceededError,
    LockboxError,
    NotFoundError,
    TruncatedError,
    UnsupportedVersionError,
    UsageError,
    WrongKeyError,
)
from ...ranges import ByteRange
from .frames import FrameOpener
from .keys import Identity, LinkSecret, UnlockLimits, as_link_secret, key_commitment, unlock
from .view import ArchiveView
from .wire.commit import decode_commit
from .wire.constants import (
    FRAME_HEADER_SIZE,
    MAX_KEYDIR_SIZE,
    PAGE_HEADER_SIZE,
    PAGE_UNIT,
    READABLE_FORMAT_VERSIONS,
    SLOT_COUNT,
    SLOT_MAGIC,
    SLOT_SIZE,
    SUPERBLOCK_SIZE,
    FrameKind,
)
from .wire.frame import FrameHeader, decode_frame_header
from .wire.keydir import KeySlot, decode_key_directory
from .wire.page import decode_keydir_page
from .wire.superblock import (
    EXTERNAL_POINTER,
    FLAG_KEYDIR_EXTERNAL,
    SLOT_CAPACITY,
    SLOT_HEADER,
    ExternalKeydir,
    Slot,
    decode_slot,
    decode_superblock,
)

__all__ = ["open_flow"]


def _fetch_keydir_flow(slot: Slot) -> Flow[bytes]:
    kd = slot.keydir
    if isinstance(kd, bytes):
        return kd
    assert isinstance(kd, ExternalKeydir)
    if kd.keydir_size > MAX_KEYDIR_SIZE:
        raise LimitExceededError("external key directory larger than the limit")
    blobs = yield Read((ByteRange(kd.page_offset, PAGE_HEADER_SIZE + 16 + kd.keydir_size),))
    _, archive_id, data = decode_keydir_page(blobs[0])
    if archive_id != slot.archive_id or len(data) != kd.keydir_size:
        raise IntegrityError("external key directory page does not match its pointer")
    if hashlib.sha256(data).digest() != kd.sha256:
        raise IntegrityError("external key directory does not match its checksum")
    return data


@dataclass
class _Attempt:
    """How far opening one superblock slot got before it failed."""

    refused: bool = False  # the secret opened no key slot (WrongKey / nothing usable)
    unlocked: bool = False  # a key slot opened with the given secret (or the known key)


class _Unlocker:
    """Unlocks each distinct key directory once with the given secret."""

    def __init__(self, crypto: CryptoBackend, password: str | bytes | None,
                 identity: Identity | None, known_key: tuple[bytes, bytes] | None,
                 limits: UnlockLimits, link: LinkSecret | None = None) -> None:
        self.crypto = crypto
        self.password = password
        self.identity = identity
        self.link = link
        self.known_key = known_key
        self.limits = limits
        self._done: dict[tuple[bytes, bytes], tuple[bytes, int] | LockboxError] = {}

    def unlock(self, archive_id: bytes, keydir: bytes, key_slots: list[KeySlot],
               commitment: bytes | None, attempt: _Attempt) -> tuple[bytes, int]:
        if self.known_key is not None and self.known_key[0] == archive_id:
            # A writer re-reading under its lock with the content key it holds.
            content_key = self.known_key[1]
            if commitment is not None and not hmac.compare_digest(
                    key_commitment(self.crypto, archive_id, content_key), commitment):
                attempt.refused = True
                raise WrongKeyError("the key directory does not commit to this archive's "
                                    "content key")
            attempt.unlocked = True
            return content_key, 0
        mark = (archive_id, keydir)
        done = self._done.get(mark)
        if done is None:
            try:
                done = unlock(self.crypto, archive_id, key_slots, password=self.password,
                              identity=self.identity, link=self.link,
                              commitment=commitment,
                              limits=self.limits)
            except (WrongKeyError, LimitExceededError, IntegrityError) as exc:
                done = exc
            self._done[mark] = done
        if isinstance(done, IntegrityError):  # a slot opened, its key is not the committed one
            attempt.unlocked = True
            raise done
        if isinstance(done, LockboxError):
            attempt.refused = True
            raise done
        attempt.unlocked = True
        return done


def _commit_frame_header(slot: Slot) -> FrameHeader:
    """The commit frame's header, and the frame fills the slot's commit field (``C``
    bytes) exactly: docs/FORMAT.md §5 "The commit frame", steps 1-3. No key is used:
    these failures are the same for every key holder. The header's own errors keep
    their classes; a frame longer than ``C`` is a TruncatedError, a shorter one (bytes
    of the field after it) a FormatError."""
    frame = slot.commit_frame
    if len(frame) < FRAME_HEADER_SIZE:
        raise TruncatedError(f"commit frame: {len(frame)} bytes, shorter than a frame header")
    header = decode_frame_header(frame)
    if header.frame_size > len(frame):
        raise TruncatedError(f"commit frame: its header says {header.frame_size} bytes, its "
                             f"slot holds {len(frame)} (the frame runs past the slot's field)")
    if header.frame_size < len(frame):
        raise FormatError("commit frame size does not match its slot")
    return header


def _open_commit_frame(opener: FrameOpener, slot: Slot) -> tuple[FrameHeader, bytes]:
    """The commit frame's header and the commit record's bytes: docs/FORMAT.md §5 "The
    commit frame", steps 1-6."""
    header = _commit_frame_header(slot)
    if header.kind != FrameKind.COMMIT:
        raise IntegrityError(f"the slot's commit frame is a {header.kind.name} frame, not a "
                             "COMMIT frame: a hostile or damaged archive")
    if not opener.authenticates_at(slot.commit_frame, header, slot.commit_frame_offset):
        raise IntegrityError("the commit record does not open with the content key this "
                             "secret unlocked: a hostile or damaged archive")
    _, payload = opener.open_at(slot.commit_frame, slot.commit_frame_offset, FrameKind.COMMIT)
    return header, bytes(payload)


def _open_slot_flow(crypto: CryptoBackend, codec: CodecBackend, slot: Slot,
                    unlocker: _Unlocker, cache: PageCache,
                    attempt: _Attempt) -> Flow[ArchiveView]:
    keydir = yield from _fetch_keydir_flow(slot)
    directory = decode_key_directory(keydir)
    content_key, slot_id = unlocker.unlock(slot.archive_id, keydir, directory.slots,
                                           directory.key_commitment, attempt)
    opener = FrameOpener(crypto, codec, slot.archive_id, content_key)
    header, record = _open_commit_frame(opener, slot)
    commit = decode_commit(record)
    if not commit.generation == header.generation == slot.generation:
        raise IntegrityError(f"commit record generation does not match its slot (slot "
                             f"{slot.generation}, frame header {header.generation}, record "
                             f"{commit.generation})")
    if commit.archive_end < SUPERBLOCK_SIZE or commit.archive_end % PAGE_UNIT:
        raise FormatError("commit record: archive end is out of place")
    if commit.keydir_sha256 != hashlib.sha256(keydir).digest():
        raise IntegrityError("key directory was modified outside a commit")
    return ArchiveView(opener, slot, commit, directory.slots, slot_id, keydir, cache)


def _check_one_key(crypto: CryptoBackend, codec: CodecBackend, newest: Slot,
                   view: ArchiveView) -> None:
    """The older slot was opened in place of the newest: the newest commit frame must
    authenticate under the same content key. An archive has one content key for its
    whole life, so when it does not, the two generations were sealed under different
    keys — one file showing different contents to different key holders."""
    try:
        header = _commit_frame_header(newest)
    except LockboxError:
        return  # too malformed to be tried: damage that every key holder sees alike
    opener = FrameOpener(crypto, codec, newest.archive_id, view.opener.content_key)
    if header.kind != FrameKind.COMMIT or not opener.authenticates_at(
            newest.commit_frame, header, newest.commit_frame_offset):
        g = view.generation
        raise IntegrityError(
            f"generation {newest.generation} is not sealed under the content key of "
            f"generation {g}, which this secret opens: a hostile or damaged archive "
            f"(generation {g} was not opened in its place; ask for it with --generation "
            f"{g})")


def _again(exc: LockboxError, message: str) -> LockboxError:
    """The same error class with a message that says more."""
    return type(exc)(message)


def _slot_ignoring_crc(region: memoryview, slot_no: int) -> Slot | None:
    """A slot whose checksum fails (e.g. a damaged inline key directory), decoded as
    :func:`decode_slot` does otherwise; None when its framing does not hold either.
    Only for a restore from a key-directory backup: the commit frame's AEAD under the
    backup's content key decides whether anything of it is used."""
    if len(region) < SLOT_HEADER.size:
        return None
    magic, version, no, flags, reserved, archive_id, gen, kd_size, c_size = (
        SLOT_HEADER.unpack_from(region, 0))
    end = SLOT_HEADER.size + kd_size + c_size
    if (magic != SLOT_MAGIC or kd_size + c_size > SLOT_CAPACITY or len(region) < end + 4
            or version not in READABLE_FORMAT_VERSIONS or no != slot_no or reserved
            or flags & ~FLAG_KEYDIR_EXTERNAL or gen == 0 or gen % 2 != slot_no):
        return None
    field = bytes(region[SLOT_HEADER.size:SLOT_HEADER.size + kd_size])
    keydir: bytes | ExternalKeydir = field
    if flags & FLAG_KEYDIR_EXTERNAL:
        if kd_size != EXTERNAL_POINTER.size:
            return None
        keydir = ExternalKeydir(*EXTERNAL_POINTER.unpack(field))
    return Slot(slot_no, bytes(archive_id), gen, keydir,
                bytes(region[SLOT_HEADER.size + kd_size:end]), version)


def _restore_slots(buf: bytes, archive_id: bytes) -> list[tuple[Slot, bool]]:
    """The superblock's slots for a restore, newest first, each with ``intact`` (its
    checksum holds). A slot whose checksum fails is read anyway; one of another
    archive is refused when intact, skipped when damaged."""
    found: list[tuple[Slot, bool]] = []
    for no in range(SLOT_COUNT):
        region = memoryview(buf)[no * SLOT_SIZE:(no + 1) * SLOT_SIZE]
        if bytes(region[:len(SLOT_MAGIC)]) != SLOT_MAGIC:
            continue
        try:
            found.append((decode_slot(region, no), True))
        except UnsupportedVersionError:
            raise
        except (FormatError, IntegrityError):
            slot = _slot_ignoring_crc(region, no)
            if slot is not None and slot.archive_id == archive_id:
                found.append((slot, False))
            continue
        if found[-1][0].archive_id != archive_id:
            raise IntegrityError(f"superblock slot {no} belongs to archive "
                                 f"{found[-1][0].archive_id.hex()}, not to {archive_id.hex()} "
                                 "of the key directory given")
    if not found:
        raise IntegrityError("no superblock slot of this archive can be read")
    return sorted(found, key=lambda f: f[0].generation, reverse=True)


def _open_with_keydir_flow(crypto: CryptoBackend, codec: CodecBackend, keydir: bytes,
                           known_key: tuple[bytes, bytes], cache: PageCache) -> Flow[ArchiveView]:
    """Open the newest commit with ``keydir`` in place of every slot's own key directory
    (not fetched) and the content key ``known_key`` (a key-directory restore). The
    directory must commit to the key; the commit frame must authenticate under it (one
    archive, one content key). The commit's ``keydir_sha256`` is not checked: the given
    directory replaces a damaged or older one. Only a newest slot whose checksum fails
    (torn or damaged) lets the older one be opened in its place."""
    archive_id, content_key = known_key
    directory = decode_key_directory(keydir)
    if directory.key_commitment is not None and not hmac.compare_digest(
            key_commitment(crypto, archive_id, content_key), directory.key_commitment):
        raise WrongKeyError("the key directory given does not commit to this content key")
    blobs = yield Read((ByteRange(0, SUPERBLOCK_SIZE),))
    problems: list[str] = []
    for slot, intact in _restore_slots(blobs[0], archive_id):
        opener = FrameOpener(crypto, codec, archive_id, content_key)
        try:
            header, record = _open_commit_frame(opener, slot)
            commit = decode_commit(record)
            if not commit.generation == header.generation == slot.generation:
                raise IntegrityError("commit record generation does not match its slot")
            if commit.archive_end < SUPERBLOCK_SIZE or commit.archive_end % PAGE_UNIT:
                raise FormatError("commit record: archive end is out of place")
        except LockboxError as exc:
            if intact:
                raise _again(exc, f"generation {slot.generation}: {exc}") from exc
            problems.append(f"generation {slot.generation} (a damaged slot): {exc}")
            continue
        return ArchiveView(opener, slot, commit, directory.slots, 0, keydir, cache)
    raise IntegrityError("no commit of this archive opens with this content key: "
                         + "; ".join(problems))


def open_flow(crypto: CryptoBackend, codec: CodecBackend, *, password: str | bytes | None,
              identity: Identity | None, cache: PageCache,
              known_key: tuple[bytes, bytes] | None = None,
              limits: UnlockLimits | None = None,
              generation: int | None = None,
              link: LinkSecret | str | None = None,
              keydir_override: bytes | None = None) -> Flow[ArchiveView]:
    """First round trip: the 16 KiB superblock. Then unlock locally and open the
    newest valid slot (docs/FORMAT.md §11 "Opening").

    ``limits``: the local unlock limits (default: this platform's,
    ``lockbox.platform.default_unlock_limits``). ``generation``: open exactly that
    generation (one of the two the superblock holds), with no fallback at all;
    NotFoundError names the generations there are. ``link``: a share link's key (a
    ``LinkSecret`` or its ``lbk1-...`` text), a third secret besides ``password`` and
    ``identity``. ``keydir_override`` (with ``known_key``; a key-directory restore,
    ``lockbox.formats.lbox.keybackup``): these key-directory bytes in place of the
    archive's own, which are not read (see :func:`_open_with_keydir_flow`).
    """
    if keydir_override is not None:
        if known_key is None or generation is not None:
            raise UsageError("a key directory in place of the archive's own needs the "
                             "content key, and opens the newest commit only")
        return (yield from _open_with_keydir_flow(crypto, codec, keydir_override, known_key,
                                                  cache))
    link = as_link_secret(link)
    if generation is not None and (isinstance(generation, bool)
                                   or not isinstance(generation, int) or generation < 1):
        raise UsageError(f"a generation is a number >= 1, not {generation!r}")
    blobs = yield Read((ByteRange(0, SUPERBLOCK_SIZE),))
    slots = decode_superblock(blobs[0])
    unlocker = _Unlocker(crypto, password, identity, known_key,
                         limits if limits is not None else UnlockLimits.default(), link)
    if generation is not None:
        chosen = [s for s in slots if s.generation == generation]
        if not chosen:
            held = " and ".join(str(s.generation) for s in slots)
            raise NotFoundError(
                f"generation {generation} is not in this archive: its superblock holds "
                f"generation{'s' if len(slots) > 1 else ''} {held} (only the two newest "
                f"commits can be opened)")
        return (yield from _open_slot_flow(crypto, codec, chosen[0], unlocker, cache,
                                           _Attempt()))
    newest = slots[0]
    newest_error: LockboxError | None = None
    for i, slot in enumerate(slots):
        older = slots[i + 1] if i + 1 < len(slots) else None
        attempt = _Attempt()
        try:
            view = yield from _open_slot_flow(crypto, codec, slot, unlocker, cache, attempt)
        except LockboxError as exc:
            if slot is not newest:
                assert newest_error is not None
                if attempt.unlocked:  # the secret opens this older generation: say so
                    raise _again(exc, f"generation {slot.generation}: {exc} (generation "
                                      f"{newest.generation} does not open with this "
                                      f"secret: {newest_error})") from exc
                if attempt.refused:
                    raise newest_error from None
                raise _again(newest_error, f"{newest_error}; the older generation "
                                           f"{slot.generation}: {exc}") from exc
            if attempt.unlocked:
                # The secret opened a key slot of the newest generation: never fall back.
                if older is None:
                    raise
                raise _again(exc, f"generation {slot.generation}: {exc}; the older "
                                  f"generation {older.generation} was not opened in its "
                                  f"place (ask for it with --generation "
                                  f"{older.generation})") from exc
            newest_error = exc
            if older is None:
                raise
            if attempt.refused and older.keydir == slot.keydir:
                raise  # the older slot has the same key directory: it refuses it too
            # Damage before any key slot opened, or a key directory the secret does not
            # open and that differs from the older one (a keyless edit): try the older.
            continue
        if slot is not newest:
            _check_one_key(crypto, codec, newest, view)
        return view
    raise AssertionError("unreachable")  # pragma: no cover
