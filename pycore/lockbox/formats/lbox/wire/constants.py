"""Fixed numbers of the .lbox format (version 2, and version 3 for commits with packs;
readers also read version 1). docs/FORMAT.md §1 is their source."""

from __future__ import annotations

__all__ = [
    "FORMAT_VERSION", "PACKED_FORMAT_VERSION", "READABLE_FORMAT_VERSIONS", "SLOT_MAGIC",
    "PAGE_MAGIC", "FRAME_MAGIC", "KEYDIR_MAGIC",
    "SLOT_SIZE", "SLOT_COUNT", "SUPERBLOCK_SIZE", "SLOT_HEADER_SIZE", "PAGE_UNIT",
    "PAGE_HEADER_SIZE", "MAX_PAGE_SIZE", "FRAME_HEADER_SIZE", "TAG_SIZE", "FRAME_OVERHEAD",
    "DEFAULT_CHUNK_SIZE", "MIN_CHUNK_SIZE", "MAX_CHUNK_SIZE", "MAX_FRAME_SEALED_SIZE",
    "MAX_NODE_PLAIN_SIZE", "NODE_TARGET_SIZE", "MAX_NODE_ENTRIES", "MAX_KEY_SIZE",
    "MAX_PATH_SIZE", "MAX_NAME_SIZE", "MAX_SYMLINK_SIZE", "MAX_ENV_NAME_SIZE",
    "MAX_ENV_VALUE_SIZE", "MAX_TREE_HEIGHT", "INLINE_CHUNK_REFS", "INDEX_FANOUT",
    "MAX_ROOT_LISTING_LEAVES", "INLINE_ROOT_MAX", "MAX_KEYDIR_SIZE", "MAX_KEY_SLOTS",
    "MAX_PASSWORD_SLOTS", "KEY_COMMITMENT_SIZE", "MAX_PACK_MEMBERS", "PACK_FILE_LIMIT",
    "PACK_TARGET_SIZE",
    "FrameKind", "Codec", "EntryType", "SlotKind", "PageKind",
    "ARGON2_MIN_MEMORY_KIB", "ARGON2_MAX_MEMORY_KIB", "ARGON2_MAX_TIME_COST",
    "DEFAULT_ARGON2_MEMORY_KIB", "DEFAULT_ARGON2_TIME_COST",
    "LABEL_FRAME_KEY", "LABEL_PASSWORD_WRAP", "LABEL_RECIPIENT_WRAP", "LABEL_KEY_COMMITMENT",
    "AAD_FRAME",
    "AAD_SLOT", "MAX_PLAIN_CHUNK_PAYLOAD", "MAX_INDEX_PLAIN_SIZE", "MAX_COMMIT_PLAIN_SIZE",
]

from enum import IntEnum

# Version 2 = version 1 + key directory version 2 (key commitment, at most 4 password
# slots). Version 3 = version 2 + packs (PACK frames, entry layout 2, space records of
# kind 7): a writer writes 3 exactly when the commit references a PACK frame, 2
# otherwise; readers read 1, 2 and 3 (docs/FORMAT.md §20).
FORMAT_VERSION = 2
PACKED_FORMAT_VERSION = 3
READABLE_FORMAT_VERSIONS = (1, 2, 3)

SLOT_MAGIC = b"LBOX\r\n\x1a\n"
PAGE_MAGIC = b"LBXP"
FRAME_MAGIC = b"LBXF"
KEYDIR_MAGIC = b"LBKD"

SLOT_SIZE = 8192
SLOT_COUNT = 2
SUPERBLOCK_SIZE = SLOT_SIZE * SLOT_COUNT  # 16 KiB: the reader's first fetch
SLOT_HEADER_SIZE = 48

PAGE_UNIT = 4096
PAGE_HEADER_SIZE = 32
MAX_PAGE_SIZE = 8 * 1024 * 1024

FRAME_HEADER_SIZE = 48
TAG_SIZE = 16
FRAME_OVERHEAD = FRAME_HEADER_SIZE + TAG_SIZE

DEFAULT_CHUNK_SIZE = 1024 * 1024
MIN_CHUNK_SIZE = 4096
MAX_CHUNK_SIZE = 4 * 1024 * 1024
MAX_PATH_SIZE = 4096
MAX_NAME_SIZE = 1024
MAX_KEY_SIZE = MAX_PATH_SIZE + 1
MAX_SYMLINK_SIZE = 4096
MAX_ENV_NAME_SIZE = 256
MAX_ENV_VALUE_SIZE = 64 * 1024
# A data chunk's plaintext: the preamble (file id, numbers, path, metadata) plus the data.
MAX_PLAIN_CHUNK_PAYLOAD = MAX_CHUNK_SIZE + 16 * 1024
MAX_NODE_PLAIN_SIZE = 1024 * 1024
NODE_TARGET_SIZE = 32 * 1024
MAX_NODE_ENTRIES = 65536
MAX_TREE_HEIGHT = 16
INLINE_CHUNK_REFS = 8
INDEX_FANOUT = 4096
MAX_INDEX_PLAIN_SIZE = 64 + INDEX_FANOUT * 40
MAX_COMMIT_PLAIN_SIZE = 64 * 1024
# Plaintext (+1 byte codec + varint) of the largest frame; bounds every allocation.
MAX_FRAME_SEALED_SIZE = MAX_PLAIN_CHUNK_PAYLOAD + 16 + TAG_SIZE
MAX_ROOT_LISTING_LEAVES = 16
INLINE_ROOT_MAX = 3072
MAX_KEYDIR_SIZE = 1024 * 1024
MAX_KEY_SLOTS = 512
MAX_PASSWORD_SLOTS = 4  # PASSWORD-kind slots of a version-2 key directory
KEY_COMMITMENT_SIZE = 32
# Packs (docs/FORMAT.md §10 "Packs"): small files share one PACK frame.
MAX_PACK_MEMBERS = 4096  # members of one PACK frame (member numbers 0..4095)
PACK_FILE_LIMIT = 64 * 1024  # writer policy: files up to this size (and a chunk) are packed
PACK_TARGET_SIZE = 1 << 20  # writer policy: a pack's plaintext stays within this

ARGON2_MIN_MEMORY_KIB = 8
ARGON2_MAX_MEMORY_KIB = 4 * 1024 * 1024
ARGON2_MAX_TIME_COST = 64
DEFAULT_ARGON2_MEMORY_KIB = 64 * 1024
DEFAULT_ARGON2_TIME_COST = 3

# Labels (domain separation); every derived key and every AAD carries one.
LABEL_FRAME_KEY = b"lockbox/v1/frame-key"
LABEL_PASSWORD_WRAP = b"lockbox/v1/password-wrap"
LABEL_RECIPIENT_WRAP = b"lockbox/v1/recipient-wrap"
LABEL_KEY_COMMITMENT = b"lockbox/v1/key-commitment"
AAD_FRAME = b"lockbox/v1/frame"
AAD_SLOT = b"lockbox/v1/slot"


class FrameKind(IntEnum):
    COMMIT = 1
    TOC_NODE = 2
    ENV_NODE = 3
    SPACE_NODE = 4
    DATA_CHUNK = 5
    CHUNK_INDEX = 6
    PACK = 7  # version 3: the last chunks of several one-chunk files


class PageKind(IntEnum):
    FRAMES = 1
    KEYDIR = 2
    FREE = 3  # a freed (and redacted) page: the header, then zeros


class Codec(IntEnum):
    RAW = 0
    ZSTD = 1


class EntryType(IntEnum):
    FILE = 1
    DIR = 2
    SYMLINK = 3


class SlotKind(IntEnum):
    PASSWORD = 1
    MLKEM1024 = 2
