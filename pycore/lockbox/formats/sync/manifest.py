"""The ``manifest.toml`` of a ``.sync`` container: parse, check, edit, write, hash.

The model is sync-rs's ``SyncManifest`` (crates/sync-format/src/manifest.rs), field by
field: required tables ``[sync]``, ``[meta]``, ``[policy]``; optional tables with serde
defaults (``[permissions]``, ``[ownership]``, ``[verification]``, ``[capabilities]``,
``[encryption]`` (+ ``[encryption.meta]``), ``[signature]``). Keys sync-rs does not know
are kept (:attr:`Manifest.data`, :meth:`Manifest.to_toml`) but are not part of
:meth:`Manifest.canonical_json`, exactly as sync-rs drops them from the hash it signs.

Reading uses the standard library's ``tomllib``, writing ``tomli_w``; nothing here does
I/O, so it runs unchanged in the browser.

Strict mode (the default) refuses what sync-rs's serde model refuses, with one line naming
the key: a missing required table or key, a value of the wrong type, an unknown variant,
an integer out of the u64 range. Lenient mode repairs what it can (the default of the
field, or sync-rs's ``ManifestPolicy::default()`` for ``[policy]``), records one warning
per repair in :attr:`Manifest.warnings`, and writes the repaired values back.

``meta.created_at`` must be a TOML *string* (sync-rs's field is a ``String``: an unquoted
TOML datetime fails its parse), holding an RFC 3339 date-time with an offset; it is
converted to UTC. We accept ``YYYY-MM-DD``, a ``T``/``t``/space separator,
``HH:MM:SS``, an optional fraction (kept to the microsecond), and ``Z``/``z``/``UTC``/
``+HH:MM``/``+HHMM``: a subset of what chrono's ``DateTime<Utc>`` parser takes (it also
takes unpadded fields and spaces between them, which RFC 3339 does not). In lenient mode
an unquoted TOML datetime is accepted (written back as a string) and an unreadable
``created_at`` becomes 1970-01-01T00:00:00Z, so the manifest reads as expired.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from ...errors import FormatError, UsageError

__all__ = [
    "Manifest", "VARIANTS", "FORMAT_VERSION", "HASH_ALGO", "AGE_ALGORITHM",
    "DEFAULT_TTL_S", "DEFAULT_TIMEOUT_S", "U64_MAX", "MAX_NESTING_DEPTH", "format_timestamp",
    "parse_timestamp", "canonical_json_bytes",
]

VARIANTS = ("plain", "vault", "app", "data")
FORMAT_VERSION = "1.2"       # what sync-rs's builder writes
HASH_ALGO = "blake3"
AGE_ALGORITHM = "age-v1"
DEFAULT_TTL_S = 3600         # sync-rs ManifestPolicy::default()
DEFAULT_TIMEOUT_S = 30
U64_MAX = (1 << 64) - 1
MAX_NESTING_DEPTH = 64      # of arrays and tables (sync-rs's model needs 3)
_TOO_DEEP = f"manifest.toml nests arrays or tables too deeply (more than {MAX_NESTING_DEPTH} " \
    "levels)"
_EPOCH_TEXT = "1970-01-01T00:00:00Z"
_BOM = "\ufeff"

# --- field model (sync-rs's serde structs) ---------------------------------------------------

_STR, _OPT_STR, _STR_LIST, _BOOL, _U64, _VARIANT = "str", "opt_str", "str_list", "bool", "u64", \
    "variant"
_TYPE_WORDS = {
    _STR: "a string", _OPT_STR: "a string", _STR_LIST: "an array of strings",
    _BOOL: "a boolean", _U64: "an unsigned integer (u64)",
    _VARIANT: "one of " + ", ".join(repr(v) for v in VARIANTS),
}


@dataclass(frozen=True)
class _Field:
    key: str
    kind: str
    required: bool = False
    default: Any = None


# table -> (required table?, fields, lenient default when the whole table must be invented)
_TABLES: dict[str, tuple[bool, tuple[_Field, ...]]] = {
    "sync": (True, (
        _Field("version", _STR, True, FORMAT_VERSION),
        _Field("content_type", _STR, True, "application/octet-stream"),
        _Field("display_ext", _STR, True, "bin"),
        _Field("variant", _VARIANT, False, "plain"),
    )),
    "meta": (True, (
        _Field("created_by", _STR, True, ""),
        _Field("created_at", _STR, True, _EPOCH_TEXT),
        _Field("hash_algo", _STR, True, HASH_ALGO),
    )),
    "policy": (True, (
        _Field("ttl", _U64, True, DEFAULT_TTL_S),
        _Field("timeout", _U64, True, DEFAULT_TIMEOUT_S),
    )),
    "permissions": (False, (
        _Field("allow_hosts", _STR_LIST, False, ()),
        _Field("allow_env", _STR_LIST, False, ()),
    )),
    "ownership": (False, (
        _Field("owner_capsule", _OPT_STR),
        _Field("write_allowed", _BOOL, False, False),
    )),
    "verification": (False, (
        _Field("enabled", _BOOL, False, False),
        _Field("vm_type", _OPT_STR),
        _Field("proof_type", _OPT_STR),
    )),
    "capabilities": (False, (
        _Field("values", _STR_LIST, False, ()),
    )),
    "encryption": (False, (
        _Field("enabled", _BOOL, False, False),
        _Field("algorithm", _OPT_STR),
        # "meta" (Option<EncryptionMeta>) is handled apart: a nested optional table
    )),
}
_ENCRYPTION_META: tuple[_Field, ...] = (
    _Field("keys", _STR_LIST, False, ()),
    _Field("recipients", _STR_LIST, False, ()),
    _Field("kdf", _OPT_STR),
    _Field("hint", _OPT_STR),
)
_SIGNATURE: tuple[_Field, ...] = (
    _Field("algo", _STR, True),
    _Field("manifest_hash", _STR, True),
    _Field("payload_hash", _OPT_STR),
    _Field("timestamp", _STR, True),
    _Field("value", _STR, True),
)
_SIGNATURE_KEYS = frozenset(f.key for f in _SIGNATURE)


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, datetime | date | time):
        return "a TOML date/time"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _check_value(kind: str, value: object) -> bool:
    if kind in (_STR, _OPT_STR):
        return isinstance(value, str)
    if kind == _STR_LIST:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _U64:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX
    if kind == _VARIANT:
        return value in VARIANTS
    raise AssertionError(kind)


# --- timestamps --------------------------------------------------------------------------------

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"\s*(?:([Zz]|(?i:UTC))|([+-])(\d{2}):?(\d{2}))\s*",
    re.ASCII,
)


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 date-time with an offset (see the module docstring), as an aware UTC
    datetime. Raises FormatError with the text on anything else."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise FormatError(f"not an RFC 3339 date-time with an offset: {text[:64]!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    fraction = match.group(7) or ""
    micro = int((fraction + "000000")[:6])
    if match.group(8):
        offset = timedelta(0)
    else:
        sign = -1 if match.group(9) == "-" else 1
        oh, om = int(match.group(10)), int(match.group(11))
        if oh > 23 or om > 59:
            raise FormatError(f"bad UTC offset in {text[:64]!r}")
        offset = sign * timedelta(hours=oh, minutes=om)
    try:
        local = datetime(year, month, day, hour, minute, second, micro,
                         tzinfo=timezone(offset))
        return local.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise FormatError(f"not a valid date-time: {text[:64]!r} ({exc})") from None


def format_timestamp(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC, whole seconds (what sync-rs writes:
    ``to_rfc3339_opts(SecondsFormat::Secs, true)``). ``moment`` must be aware."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise UsageError("a timestamp needs a time zone (an aware datetime)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _aware(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise UsageError(f"{what} must be an aware datetime (with a time zone)")
    return moment


# --- the manifest ------------------------------------------------------------------------------


class _Checker:
    """Validates (strict) or repairs (lenient) a parsed manifest dict in place."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.warnings: list[str] = []

    def problem(self, message: str) -> None:
        if self.strict:
            raise FormatError(f"manifest.toml: {message}")
        self.warnings.append(message)

    def table(self, data: dict[str, Any], name: str, where: str,
              fields: Iterable[_Field] | None) -> dict[str, Any] | None:
        """The table ``data[name]``; ``fields`` given: it is required (a missing or
        non-table one is refused, or invented with the defaults of its required keys)."""
        value = data.get(name)
        if isinstance(value, dict):
            return value
        if value is None:
            if fields is None:
                return None
            self.problem(f"missing required table [{where}]")
        else:
            self.problem(f"[{where}] must be a table, got {_type_name(value)}")
            if fields is None:
                del data[name]
                return None
        data[name] = {f.key: _default(f) for f in fields or () if f.required}
        return data[name]  # type: ignore[no-any-return]

    def fields(self, table: dict[str, Any], where: str, fields: Iterable[_Field]) -> None:
        for f in fields:
            if f.key not in table:
                if f.required:
                    self.problem(f"missing required key {f.key!r} in [{where}]")
                    table[f.key] = _default(f)
                continue
            value = table[f.key]
            if f.key == "created_at" and where == "meta" and isinstance(value, datetime):
                self.problem("[meta] created_at must be a quoted string (sync-rs reads a "
                             "String), not a TOML datetime")
                table[f.key] = _toml_datetime_text(value)
                continue
            if not _check_value(f.kind, value):
                if f.kind == _VARIANT and isinstance(value, str) and value.lower() in VARIANTS:
                    self.problem(f"[{where}] {f.key} is {value!r}; sync-rs takes only "
                                 f"{value.lower()!r}")
                    table[f.key] = value.lower()
                    continue
                got = repr(value[:40]) if f.kind == _VARIANT and isinstance(value, str) else \
                    _type_name(value)
                if f.kind == _U64 and isinstance(value, int) and not isinstance(value, bool):
                    got = f"{value} (out of range)"
                self.problem(f"[{where}] {f.key} must be {_TYPE_WORDS[f.kind]}, got {got}")
                if f.required or f.default is not None:
                    table[f.key] = _default(f)
                else:
                    del table[f.key]


def _default(f: _Field) -> Any:
    return list(f.default) if isinstance(f.default, tuple) else f.default


def _toml_datetime_text(value: datetime) -> str:
    if value.tzinfo is None:  # a TOML local date-time has no offset: not RFC 3339
        return value.isoformat()
    return format_timestamp(value) if value.microsecond == 0 else \
        value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Manifest:
    """One ``manifest.toml``: immutable; edits return a new Manifest.

    ``data`` is the whole TOML document as a dict (unknown keys and tables kept);
    the properties are the typed values sync-rs's model reads, defaults filled in.
    """

    __slots__ = ("_created_at", "_data", "_warnings")

    def __init__(self, data: Mapping[str, Any], *, strict: bool = True) -> None:
        """Check (strict) or repair (lenient) a manifest given as a parsed TOML dict."""
        if _nesting_depth(data) > MAX_NESTING_DEPTH:  # copying and writing recurse
            raise FormatError(_TOO_DEEP)
        doc = copy.deepcopy(dict(data))
        checker = _Checker(strict)
        for name, (required, fields) in _TABLES.items():
            table = checker.table(doc, name, name, fields if required else None)
            if table is None:
                continue
            checker.fields(table, name, fields)
            if name == "encryption":
                meta = checker.table(table, "meta", "encryption.meta", None)
                if meta is not None:
                    checker.fields(meta, "encryption.meta", _ENCRYPTION_META)
        signature = checker.table(doc, "signature", "signature", None)
        if signature is not None:
            try:
                _Checker(True).fields(signature, "signature", _SIGNATURE)
            except FormatError as exc:  # a partial signature cannot be repaired: drop it
                checker.problem(str(exc).removeprefix("manifest.toml: ") +
                                " (the [signature] table is dropped)")
                del doc["signature"]
        created_text = doc["meta"]["created_at"]
        try:
            created_at = parse_timestamp(created_text)
        except FormatError as exc:
            checker.problem(f"[meta] created_at: {exc}")
            doc["meta"]["created_at"] = _EPOCH_TEXT
            created_at = parse_timestamp(_EPOCH_TEXT)
        self._data = doc
        self._warnings = tuple(checker.warnings)
        self._created_at = created_at

    # -- constructors --

    @classmethod
    def parse(cls, toml_bytes: bytes | bytearray | memoryview, *, strict: bool = True
              ) -> Manifest:
        """Parse ``manifest.toml`` bytes (UTF-8; a leading BOM is skipped).

        Raises FormatError (one line, naming the key) when the bytes are not UTF-8 or not
        TOML (in both modes: nothing can be repaired then), or in strict mode when the
        document does not fit sync-rs's model.
        """
        try:
            text = bytes(toml_bytes).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"manifest.toml is not UTF-8: byte {exc.start} "
                              f"(0x{bytes(toml_bytes)[exc.start]:02x})") from None
        if text.startswith(_BOM):
            text = text[1:]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FormatError(f"manifest.toml is not valid TOML: {exc}") from None
        except RecursionError:  # tomllib recurses into nested arrays and inline tables
            raise FormatError(_TOO_DEEP) from None
        return cls(data, strict=strict)

    @classmethod
    def new(cls, *, content_type: str, display_ext: str, created_by: str,
            created_at: datetime, variant: str = "plain", ttl: int = DEFAULT_TTL_S,
            timeout: int = DEFAULT_TIMEOUT_S, allow_hosts: Iterable[str] = (),
            allow_env: Iterable[str] = ()) -> Manifest:
        """A fresh manifest as sync-rs's builder lays it out (version "1.2", hash_algo
        "blake3", ``created_at`` in whole UTC seconds). ``[permissions]`` is always
        written (an empty list denies every host). A ``vault`` variant also gets
        ``[encryption] enabled = true, algorithm = "age-v1"``. Raises UsageError on a bad
        argument."""
        if variant not in VARIANTS:
            raise UsageError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        for name, number in (("ttl", ttl), ("timeout", timeout)):
            if not _check_value(_U64, number):
                raise UsageError(f"{name} must be an integer in 0..{U64_MAX}, got {number!r}")
        hosts, env = _str_list(allow_hosts, "allow_hosts"), _str_list(allow_env, "allow_env")
        for name, value in (("content_type", content_type), ("display_ext", display_ext),
                            ("created_by", created_by)):
            if not isinstance(value, str):
                raise UsageError(f"{name} must be a string")
        data: dict[str, Any] = {
            "sync": {"version": FORMAT_VERSION, "content_type": content_type,
                     "display_ext": display_ext, "variant": variant},
            "meta": {"created_by": created_by,
                     "created_at": format_timestamp(_aware(created_at, "created_at")),
                     "hash_algo": HASH_ALGO},
            "policy": {"ttl": ttl, "timeout": timeout},
            "permissions": {"allow_hosts": hosts, "allow_env": env},
        }
        if variant == "vault":
            data["encryption"] = {"enabled": True, "algorithm": AGE_ALGORITHM}
        return cls(data)

    # -- the document --

    @property
    def data(self) -> dict[str, Any]:
        """The whole document (a deep copy: unknown keys and tables included)."""
        return copy.deepcopy(self._data)

    @property
    def warnings(self) -> tuple[str, ...]:
        """What lenient parsing repaired (empty in strict mode)."""
        return self._warnings

    def to_toml(self) -> bytes:
        """The document as TOML (tomli_w), unknown keys kept."""
        import tomli_w  # only writers need it (the browser build ships it for them)

        return tomli_w.dumps(self._data).encode("utf-8")

    def _get(self, table: str, key: str, default: Any = None) -> Any:
        section = self._data.get(table)
        if not isinstance(section, dict):
            return default
        return section.get(key, default)

    # -- typed values --

    @property
    def version(self) -> str:
        return str(self._data["sync"]["version"])

    @property
    def content_type(self) -> str:
        return str(self._data["sync"]["content_type"])

    @property
    def display_ext(self) -> str:
        """As written (it may start with a dot)."""
        return str(self._data["sync"]["display_ext"])

    @property
    def variant(self) -> str:
        return str(self._data["sync"].get("variant", "plain"))

    @property
    def created_by(self) -> str:
        return str(self._data["meta"]["created_by"])

    @property
    def created_at_text(self) -> str:
        """``meta.created_at`` exactly as written (what the signature covers)."""
        return str(self._data["meta"]["created_at"])

    @property
    def created_at(self) -> datetime:
        """``meta.created_at`` in UTC (aware)."""
        return self._created_at

    @property
    def hash_algo(self) -> str:
        return str(self._data["meta"]["hash_algo"])

    @property
    def ttl(self) -> int:
        """``policy.ttl`` in seconds."""
        return int(self._data["policy"]["ttl"])

    @property
    def timeout(self) -> int:
        """``policy.timeout`` in seconds (sync-rs never enforces it; our hook runner does)."""
        return int(self._data["policy"]["timeout"])

    @property
    def allow_hosts(self) -> tuple[str, ...]:
        return tuple(self._get("permissions", "allow_hosts", ()))

    @property
    def allow_env(self) -> tuple[str, ...]:
        return tuple(self._get("permissions", "allow_env", ()))

    @property
    def owner_capsule(self) -> str | None:
        value = self._get("ownership", "owner_capsule")
        return None if value is None else str(value)

    @property
    def write_allowed(self) -> bool:
        return bool(self._get("ownership", "write_allowed", False))

    @property
    def verification_enabled(self) -> bool:
        return bool(self._get("verification", "enabled", False))

    @property
    def capabilities(self) -> tuple[str, ...]:
        return tuple(self._get("capabilities", "values", ()))

    @property
    def encryption_enabled(self) -> bool:
        return bool(self._get("encryption", "enabled", False))

    @property
    def encryption_algorithm(self) -> str | None:
        value = self._get("encryption", "algorithm")
        return None if value is None else str(value)

    @property
    def is_vault(self) -> bool:
        """sync-rs's ``is_vault``: the vault variant, or ``[encryption] enabled``."""
        return self.variant == "vault" or self.encryption_enabled

    @property
    def signature(self) -> dict[str, str] | None:
        """The ``[signature]`` table (sync-rs's fields only), or None when unsigned."""
        table = self._data.get("signature")
        if table is None:
            return None
        return {k: v for k, v in table.items() if k in _SIGNATURE_KEYS}

    # -- freshness --

    def expires_at(self) -> datetime | None:
        """``created_at + ttl`` in UTC, or None when that lies past the year 9999
        (such a manifest never expires; sync-rs's chrono arithmetic panics there)."""
        try:
            return self._created_at + timedelta(seconds=self.ttl)
        except OverflowError:
            return None

    def _remaining_us(self, now: datetime) -> int:
        elapsed_us = (_aware(now, "now") - self._created_at) // timedelta(microseconds=1)
        return self.ttl * 1_000_000 - elapsed_us

    def is_expired(self, now: datetime) -> bool:
        """now > created_at + ttl; exactly at the boundary is not expired (sync-rs)."""
        return self._remaining_us(now) < 0

    def expires_in(self, now: datetime) -> float:
        """Seconds until expiry, 0.0 once expired."""
        return max(0, self._remaining_us(now)) / 1_000_000

    # -- the signed form --

    def canonical_value(self) -> dict[str, Any]:
        """sync-rs's ``serde_json::to_value`` of the manifest with ``signature = None``:
        every known field with its default, None for an absent option, unknown keys
        dropped, no ``signature`` key."""
        out: dict[str, Any] = {}
        for name, (_required, fields) in _TABLES.items():
            table = self._data.get(name) or {}
            section = {f.key: table.get(f.key, _default(f)) for f in fields}
            if name == "encryption":
                meta = table.get("meta")
                section["meta"] = None if meta is None else {
                    f.key: meta.get(f.key, _default(f)) for f in _ENCRYPTION_META}
            out[name] = section
        return out

    def canonical_json(self) -> bytes:
        """The bytes sync-rs hashes for ``signature.manifest_hash``: :meth:`canonical_value`
        as compact JSON with sorted keys, serde_json's escaping (raw UTF-8, ``\\n``-style
        short escapes, other control characters as lowercase ``\\u00xx``)."""
        return canonical_json_bytes(self.canonical_value())

    # -- edits --

    def replace(self, **changes: Any) -> Manifest:
        """A copy with typed fields changed (strictly checked). Names: the properties
        ``version, content_type, display_ext, variant, created_by, created_at`` (an aware
        datetime or an RFC 3339 string), ``hash_algo, ttl, timeout, allow_hosts,
        allow_env, owner_capsule, write_allowed, encryption_enabled,
        encryption_algorithm``, and ``signature`` (a dict, or None to remove the table).
        Unknown keys of the document are kept."""
        data = copy.deepcopy(self._data)
        for name, value in changes.items():
            if name == "signature":
                if value is None:
                    data.pop("signature", None)
                else:
                    data["signature"] = dict(value)
                continue
            target = _EDITABLE.get(name)
            if target is None:
                raise UsageError(f"Manifest.replace: unknown field {name!r}")
            table, key, convert = target
            value = convert(value)
            section = data.setdefault(table, {})
            if value is None:
                section.pop(key, None)
            else:
                section[key] = value
        try:
            return Manifest(data, strict=True)
        except FormatError as exc:
            raise UsageError(str(exc)) from None

    def mark_fresh(self, now: datetime) -> Manifest:
        """What an update writes: ``created_at = now`` (whole UTC seconds), so sync-rs's
        ``now > created_at + ttl`` reads the archive fresh for another ``ttl`` seconds.
        An embedded ``[signature]`` is removed: it covered the old ``created_at`` (and the
        old payload), so it could only fail; re-sign to sign the new content."""
        return self.replace(created_at=now, signature=None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Manifest) and self._data == other._data

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Manifest(content_type={self.content_type!r}, display_ext="
                f"{self.display_ext!r}, variant={self.variant!r}, "
                f"created_at={self.created_at_text!r}, ttl={self.ttl})")


def _nesting_depth(value: Any) -> int:
    """How deep lists and dicts nest in ``value`` (iteratively: no recursion)."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            if deepest > MAX_NESTING_DEPTH:
                break
            stack.extend((child, depth + 1) for child in
                         (item.values() if isinstance(item, dict) else item))
    return deepest


def _str_list(values: Iterable[str], what: str) -> list[str]:
    if isinstance(values, str | bytes):
        raise UsageError(f"{what} must be a list of strings, not one string")
    out = list(values)
    if not all(isinstance(v, str) for v in out):
        raise UsageError(f"{what} must be a list of strings")
    return out


def _as_timestamp_text(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    return format_timestamp(_aware(value, "created_at"))


def _same(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


_EDITABLE: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "version": ("sync", "version", _same),
    "content_type": ("sync", "content_type", _same),
    "display_ext": ("sync", "display_ext", _same),
    "variant": ("sync", "variant", _same),
    "created_by": ("meta", "created_by", _same),
    "created_at": ("meta", "created_at", _as_timestamp_text),
    "hash_algo": ("meta", "hash_algo", _same),
    "ttl": ("policy", "ttl", _same),
    "timeout": ("policy", "timeout", _same),
    "allow_hosts": ("permissions", "allow_hosts", lambda v: _str_list(v, "allow_hosts")),
    "allow_env": ("permissions", "allow_env", lambda v: _str_list(v, "allow_env")),
    "owner_capsule": ("ownership", "owner_capsule", _same),
    "write_allowed": ("ownership", "write_allowed", _same),
    "encryption_enabled": ("encryption", "enabled", _same),
    "encryption_algorithm": ("encryption", "algorithm", _same),
}


def canonical_json_bytes(value: Any) -> bytes:
    """serde_json's compact output of a value whose maps are sorted (sync-rs's
    ``canonicalize_json`` + ``serde_json::to_vec``). Python's json module with
    ``ensure_ascii=False`` escapes exactly what serde_json escapes (``"``, ``\\``, the
    control characters below U+0020: ``\\b \\t \\n \\f \\r`` short, the rest as lowercase
    ``\\u00xx``), leaves ``/``, DEL and every non-ASCII character as raw UTF-8, and
    prints integers as integers."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                      allow_nan=False).encode("utf-8")
