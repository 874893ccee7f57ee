"""manifest.toml (lockbox.formats.sync.manifest): sync-rs's model, strict and lenient
parsing, freshness, edits, and the canonical JSON the embedded signature hashes."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from lockbox.errors import FormatError, UsageError
from lockbox.formats.sync.manifest import (
    Manifest,
    canonical_json_bytes,
    format_timestamp,
    parse_timestamp,
)

# The manifest of sync-rs's own tests (crates/sync-format/src/format.rs), with its unknown
# [meta] spec_version key.
SYNC_RS_MANIFEST = b"""
[meta]
spec_version = "1.0"
created_at = "2026-01-01T00:00:00Z"
created_by = "did:key:z6MkTest"
hash_algo = "blake3"

[sync]
version = "1.0"
content_type = "application/json"
display_ext = "json"

[policy]
ttl = 3600
timeout = 30
"""

MINIMAL = b"""
[sync]
version = "1.2"
content_type = "text/csv"
display_ext = "csv"

[meta]
created_by = "did:key:z6Mk"
created_at = "2099-01-23T12:00:00Z"
hash_algo = "blake3"

[policy]
ttl = 3600
timeout = 30
"""

# Written by hand from sync-rs's structs (serde_json::to_value with signature = None, then
# sorted, compact): every known field, defaults and nulls included.
MINIMAL_CANONICAL = (
    b'{"capabilities":{"values":[]},'
    b'"encryption":{"algorithm":null,"enabled":false,"meta":null},'
    b'"meta":{"created_at":"2099-01-23T12:00:00Z","created_by":"did:key:z6Mk",'
    b'"hash_algo":"blake3"},'
    b'"ownership":{"owner_capsule":null,"write_allowed":false},'
    b'"permissions":{"allow_env":[],"allow_hosts":[]},'
    b'"policy":{"timeout":30,"ttl":3600},'
    b'"sync":{"content_type":"text/csv","display_ext":"csv","variant":"plain",'
    b'"version":"1.2"},'
    b'"verification":{"enabled":false,"proof_type":null,"vm_type":null}}'
)

FULL = r'''
top_level_unknown = "kept, not signed"

[sync]
version = "1.3"
content_type = "text/plain; charset=utf-8"
display_ext = ".txt"
variant = "vault"
extra_sync_key = 1

[meta]
created_by = "Zoë \"the\" /author\\ \n\t\r\b\f\u001f\u007f\u2028"
created_at = "2099-01-23T12:00:00+09:00"
hash_algo = "blake3"

[policy]
ttl = 9223372036854775807
timeout = 0

[permissions]
allow_hosts = ["example.com", "*.example.org"]
allow_env = ["HOME"]

[ownership]
owner_capsule = "capsule-1"
write_allowed = true

[verification]
enabled = true
vm_type = "risc0"
proof_type = "stark"

[capabilities]
values = ["local-first", "private-network"]

[encryption]
enabled = true
algorithm = "age-v1"

[encryption.meta]
keys = ["OPENAI_API_KEY"]
recipients = ["did:key:z6MkRecipient"]
kdf = "scrypt"
hint = "ask Alice"
unknown_in_meta = true

[signature]
algo = "Ed25519"
manifest_hash = "blake3:00"
timestamp = "2099-01-01T00:00:00Z"
value = "AA=="

[unknown_table]
x = 1
'''.encode()

# By hand, with serde_json's escaping: " and \ escaped, \n \t \r \b \f short, U+001F as
# \u001f (lowercase), "/" not escaped, DEL, U+2028 and the ë raw UTF-8; integers as
# integers; unknown keys, tables and the signature absent.
FULL_CANONICAL = (
    r'{"capabilities":{"values":["local-first","private-network"]},'
    r'"encryption":{"algorithm":"age-v1","enabled":true,"meta":{"hint":"ask Alice",'
    r'"kdf":"scrypt","keys":["OPENAI_API_KEY"],"recipients":["did:key:z6MkRecipient"]}},'
    r'"meta":{"created_at":"2099-01-23T12:00:00+09:00","created_by":"Zo' + "ë" +
    r' \"the\" /author\\ \n\t\r\b\f\u001f' + "\x7f\u2028" + r'","hash_algo":"blake3"},'
    r'"ownership":{"owner_capsule":"capsule-1","write_allowed":true},'
    r'"permissions":{"allow_env":["HOME"],"allow_hosts":["example.com","*.example.org"]},'
    r'"policy":{"timeout":0,"ttl":9223372036854775807},'
    r'"sync":{"content_type":"text/plain; charset=utf-8","display_ext":".txt",'
    r'"variant":"vault","version":"1.3"},'
    r'"verification":{"enabled":true,"proof_type":"stark","vm_type":"risc0"}}'
).encode("utf-8")


def _toml(text: str) -> bytes:
    return text.encode("utf-8")


def _with(base: bytes, old: str, new: str) -> bytes:
    text = base.decode()
    assert old in text
    return text.replace(old, new, 1).encode()


# --- reading -----------------------------------------------------------------------------------


def test_sync_rs_manifest_reads_with_defaults() -> None:
    m = Manifest.parse(SYNC_RS_MANIFEST)
    assert (m.version, m.content_type, m.display_ext, m.variant) == \
        ("1.0", "application/json", "json", "plain")
    assert m.created_by == "did:key:z6MkTest"
    assert m.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert (m.hash_algo, m.ttl, m.timeout) == ("blake3", 3600, 30)
    assert m.allow_hosts == () and m.allow_env == () and m.capabilities == ()
    assert m.owner_capsule is None and not m.write_allowed and not m.verification_enabled
    assert not m.encryption_enabled and m.encryption_algorithm is None and not m.is_vault
    assert m.signature is None and m.warnings == ()
    assert m.data["meta"]["spec_version"] == "1.0"  # unknown key kept


def test_full_manifest_typed_values() -> None:
    m = Manifest.parse(FULL)
    assert m.variant == "vault" and m.is_vault and m.encryption_enabled
    assert m.display_ext == ".txt"
    assert m.created_at == datetime(2099, 1, 23, 3, 0, tzinfo=UTC)  # +09:00 -> UTC
    assert m.created_at_text == "2099-01-23T12:00:00+09:00"
    assert m.ttl == 2**63 - 1 and m.timeout == 0
    assert m.allow_hosts == ("example.com", "*.example.org") and m.allow_env == ("HOME",)
    assert m.owner_capsule == "capsule-1" and m.write_allowed and m.verification_enabled
    assert m.capabilities == ("local-first", "private-network")
    assert m.encryption_algorithm == "age-v1"
    assert m.signature == {"algo": "Ed25519", "manifest_hash": "blake3:00",
                           "timestamp": "2099-01-01T00:00:00Z", "value": "AA=="}


def test_is_vault_by_encryption_enabled_alone() -> None:
    m = Manifest.parse(MINIMAL + b"\n[encryption]\nenabled = true\n")
    assert m.variant == "plain" and m.is_vault


def test_bom_is_skipped() -> None:
    assert Manifest.parse(b"\xef\xbb\xbf" + MINIMAL) == Manifest.parse(MINIMAL)


@pytest.mark.parametrize("strict", [True, False])
def test_not_utf8_or_not_toml_fails_in_both_modes(strict: bool) -> None:
    with pytest.raises(FormatError, match="not UTF-8: byte 1"):
        Manifest.parse(b"a\xff = 1", strict=strict)
    with pytest.raises(FormatError, match="not valid TOML"):
        Manifest.parse(b"[sync\n", strict=strict)
    with pytest.raises(FormatError, match="not valid TOML"):  # duplicate key
        Manifest.parse(MINIMAL + b'\n[sync]\nversion = "2"\n', strict=strict)
    with pytest.raises(FormatError, match="too deeply"):
        Manifest.parse(b"a = " + b"[" * 100_000, strict=strict)
    with pytest.raises(FormatError, match="too deeply"):
        Manifest.parse(b"a = " + b"{b = " * 100_000, strict=strict)
    for depth in (65, 300, 900):  # parsed by tomllib, refused before copying or writing
        nested = b"a = " + b"[" * depth + b"]" * depth + b"\n" + MINIMAL
        with pytest.raises(FormatError, match="more than 64 levels"):
            Manifest.parse(nested, strict=strict)
    ok = Manifest.parse(b"a = " + b"[" * 63 + b"]" * 63 + b"\n" + MINIMAL, strict=strict)
    assert Manifest.parse(ok.to_toml()) == ok


# --- canonical JSON ----------------------------------------------------------------------------


def test_canonical_json_all_defaults() -> None:
    assert Manifest.parse(MINIMAL).canonical_json() == MINIMAL_CANONICAL


def test_canonical_json_every_optional_table() -> None:
    assert Manifest.parse(FULL).canonical_json() == FULL_CANONICAL


def test_canonical_json_encryption_meta_defaults() -> None:
    m = Manifest.parse(MINIMAL + b"\n[encryption]\n[encryption.meta]\n")
    assert (b'"encryption":{"algorithm":null,"enabled":false,"meta":{"hint":null,'
            b'"kdf":null,"keys":[],"recipients":[]}}') in m.canonical_json()


def test_canonical_json_ignores_unknown_keys_and_the_signature() -> None:
    base = Manifest.parse(MINIMAL).canonical_json()
    extra = Manifest.parse(MINIMAL + b'\n[signature]\nalgo = "x"\nmanifest_hash = "h"\n'
                           b'timestamp = "t"\nvalue = "v"\n[other]\nk = 1\n')
    assert extra.canonical_json() == base
    assert Manifest.parse(_with(MINIMAL, "[meta]", "[meta]\nnew_key = 5")).canonical_json() \
        == base


@pytest.mark.parametrize(("char", "escaped"), [
    ("\x00", rb"\u0000"), ("\x08", rb"\b"), ("\x0b", rb"\u000b"), ("\x0c", rb"\f"),
    ("\x1b", rb"\u001b"), ('"', rb"\""), ("\\", rb"\\"), ("/", b"/"), ("\x7f", b"\x7f"),
    ("é", "é".encode()), ("\U0001f600", "\U0001f600".encode()), ("\u2029", "\u2029".encode()),
])
def test_serde_json_string_escapes(char: str, escaped: bytes) -> None:
    assert canonical_json_bytes({"k": char}) == b'{"k":"' + escaped + b'"}'


def test_canonical_json_bytes_sorts_nested_keys_and_keeps_integers() -> None:
    value = {"b": {"z": 1, "a": [True, None, 2**64 - 1]}, "a": False}
    assert canonical_json_bytes(value) == b'{"a":false,"b":{"a":[true,null,18446744073709551615],' \
        b'"z":1}}'


# --- strict refusals and lenient repairs -------------------------------------------------------

BAD_MANIFESTS = [
    pytest.param(_with(MINIMAL, "[policy]\nttl = 3600\ntimeout = 30", ""),
                 r"missing required table \[policy\]", id="no-policy"),
    pytest.param(_with(MINIMAL, 'version = "1.2"\n', ""),
                 r"missing required key 'version' in \[sync\]", id="no-version"),
    pytest.param(_with(MINIMAL, 'created_at = "2099-01-23T12:00:00Z"\n', ""),
                 r"missing required key 'created_at' in \[meta\]", id="no-created-at"),
    pytest.param(_with(MINIMAL, "timeout = 30", ""),
                 r"missing required key 'timeout' in \[policy\]", id="no-timeout"),
    pytest.param(_with(MINIMAL, "ttl = 3600", 'ttl = "3600"'),
                 r"\[policy\] ttl must be an unsigned integer \(u64\), got a string",
                 id="ttl-string"),
    pytest.param(_with(MINIMAL, "ttl = 3600", "ttl = -1"),
                 r"ttl must be an unsigned integer \(u64\), got -1 \(out of range\)",
                 id="ttl-negative"),
    pytest.param(_with(MINIMAL, "ttl = 3600", "ttl = 3600.0"),
                 "ttl must be an unsigned integer .* got a float", id="ttl-float"),
    pytest.param(_with(MINIMAL, "timeout = 30", "timeout = true"),
                 "timeout must be an unsigned integer .* got a boolean", id="timeout-bool"),
    pytest.param(_with(MINIMAL, 'display_ext = "csv"', "display_ext = 5"),
                 r"\[sync\] display_ext must be a string, got an integer", id="ext-int"),
    pytest.param(_with(MINIMAL, 'display_ext = "csv"', 'display_ext = "csv"\nvariant = "x"'),
                 "variant must be one of 'plain', 'vault', 'app', 'data', got 'x'",
                 id="variant-unknown"),
    pytest.param(_with(MINIMAL, 'display_ext = "csv"', 'display_ext = "csv"\nvariant = "Vault"'),
                 "variant is 'Vault'; sync-rs takes only 'vault'", id="variant-case"),
    pytest.param(MINIMAL + b"\n[permissions]\nallow_hosts = \"example.com\"\n",
                 r"\[permissions\] allow_hosts must be an array of strings, got a string",
                 id="hosts-string"),
    pytest.param(MINIMAL + b"\n[permissions]\nallow_env = [\"A\", 1]\n",
                 "allow_env must be an array of strings, got an array", id="env-mixed"),
    pytest.param(MINIMAL + b"\n[ownership]\nowner_capsule = 7\n",
                 r"\[ownership\] owner_capsule must be a string", id="owner-int"),
    pytest.param(MINIMAL + b"\n[ownership]\nwrite_allowed = \"yes\"\n",
                 "write_allowed must be a boolean, got a string", id="write-string"),
    pytest.param(b"verification = 3\n" + MINIMAL,
                 r"\[verification\] must be a table, got an integer", id="verification-int"),
    pytest.param(MINIMAL + b"\n[encryption]\nmeta = 1\n",
                 r"\[encryption.meta\] must be a table", id="encryption-meta-int"),
    pytest.param(MINIMAL + b"\n[encryption.meta]\nkdf = []\n",
                 r"\[encryption.meta\] kdf must be a string, got an array", id="kdf-array"),
    pytest.param(MINIMAL + b'\n[signature]\nalgo = "Ed25519"\nmanifest_hash = "h"\n'
                 b'timestamp = "t"\n',
                 r"missing required key 'value' in \[signature\]", id="signature-no-value"),
    pytest.param(_with(MINIMAL, 'created_at = "2099-01-23T12:00:00Z"',
                       "created_at = 2099-01-23T12:00:00Z"),
                 "created_at must be a quoted string", id="created-at-toml-datetime"),
    pytest.param(_with(MINIMAL, "2099-01-23T12:00:00Z", "2099-01-23T12:00:00"),
                 "not an RFC 3339 date-time with an offset", id="created-at-no-offset"),
    pytest.param(_with(MINIMAL, "2099-01-23T12:00:00Z", "yesterday"),
                 "not an RFC 3339 date-time", id="created-at-text"),
]


@pytest.mark.parametrize(("toml_bytes", "message"), BAD_MANIFESTS)
def test_strict_refuses_with_the_key_named(toml_bytes: bytes, message: str) -> None:
    with pytest.raises(FormatError, match="manifest.toml: .*" + message):
        Manifest.parse(toml_bytes)


@pytest.mark.parametrize(("toml_bytes", "message"), BAD_MANIFESTS)
def test_lenient_repairs_and_writes_back_what_strict_reads(toml_bytes: bytes,
                                                           message: str) -> None:
    m = Manifest.parse(toml_bytes, strict=False)
    assert len(m.warnings) == 1
    assert __import__("re").search(message, m.warnings[0]), m.warnings
    again = Manifest.parse(m.to_toml())  # strict
    assert again.canonical_json() == m.canonical_json()


def test_lenient_values_of_repairs() -> None:
    m = Manifest.parse(_with(_with(MINIMAL, "ttl = 3600", 'ttl = "x"'),
                             'display_ext = "csv"', 'display_ext = "csv"\nvariant = "APP"'),
                       strict=False)
    assert m.ttl == 3600 and m.variant == "app" and len(m.warnings) == 2
    m = Manifest.parse(_with(MINIMAL, "2099-01-23T12:00:00Z", "garbage"), strict=False)
    assert m.created_at == datetime(1970, 1, 1, tzinfo=UTC)
    assert m.is_expired(datetime(2026, 1, 1, tzinfo=UTC))
    m = Manifest.parse(_with(MINIMAL, 'created_at = "2099-01-23T12:00:00Z"',
                             "created_at = 2099-01-23T12:00:00Z"), strict=False)
    assert m.created_at_text == "2099-01-23T12:00:00Z"
    assert m.created_at == datetime(2099, 1, 23, 12, tzinfo=UTC)
    m = Manifest.parse(b"", strict=False)  # nothing at all: every required part invented
    assert m.content_type == "application/octet-stream" and m.ttl == 3600
    assert len(m.warnings) == 3
    m = Manifest.parse(MINIMAL + b"\n[permissions]\nallow_hosts = 1\n", strict=False)
    assert m.allow_hosts == ()
    m = Manifest.parse(MINIMAL + b'\n[signature]\nalgo = "Ed25519"\n', strict=False)
    assert m.signature is None and "dropped" in m.warnings[0]


# --- writing -----------------------------------------------------------------------------------


def test_to_toml_keeps_unknown_keys() -> None:
    m = Manifest.parse(FULL)
    again = Manifest.parse(m.to_toml())
    assert again == m
    assert tomllib.loads(m.to_toml().decode())["unknown_table"] == {"x": 1}
    assert again.data["encryption"]["meta"]["unknown_in_meta"] is True


def test_new_lays_out_like_sync_rs() -> None:
    m = Manifest.new(content_type="text/csv", display_ext="csv", created_by="did:key:zX",
                     created_at=datetime(2026, 5, 6, 7, 8, 9, 999_999,
                                         tzinfo=timezone(timedelta(hours=2))))
    assert m.to_toml().decode() == (
        '[sync]\nversion = "1.2"\ncontent_type = "text/csv"\ndisplay_ext = "csv"\n'
        'variant = "plain"\n\n[meta]\ncreated_by = "did:key:zX"\n'
        'created_at = "2026-05-06T05:08:09Z"\nhash_algo = "blake3"\n\n'
        '[policy]\nttl = 3600\ntimeout = 30\n\n[permissions]\nallow_hosts = []\nallow_env = []\n'
    )
    vault = Manifest.new(content_type="application/json", display_ext="json",
                         created_by="x", created_at=datetime(2026, 1, 1, tzinfo=UTC),
                         variant="vault", ttl=60, timeout=5, allow_hosts=["a.example"])
    assert vault.is_vault and vault.encryption_algorithm == "age-v1"
    assert (vault.ttl, vault.timeout, vault.allow_hosts) == (60, 5, ("a.example",))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"variant": "secret"}, "variant must be one of"),
    ({"ttl": -1}, "ttl must be an integer"),
    ({"timeout": 2**64}, "timeout must be an integer"),
    ({"ttl": True}, "ttl must be an integer"),
    ({"allow_hosts": "example.com"}, "not one string"),
    ({"allow_env": [1]}, "allow_env must be a list of strings"),
    ({"created_at": datetime(2026, 1, 1)}, "aware datetime"),
    ({"content_type": None}, "content_type must be a string"),
])
def test_new_refuses_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = dict(content_type="t", display_ext="e", created_by="c",
                                   created_at=datetime(2026, 1, 1, tzinfo=UTC))
    args.update(kwargs)
    with pytest.raises(UsageError, match=message):
        Manifest.new(**args)  # type: ignore[arg-type]


def test_replace_and_mark_fresh() -> None:
    m = Manifest.parse(FULL)
    changed = m.replace(ttl=10, allow_hosts=("x.example",), display_ext="csv",
                        owner_capsule=None)
    assert changed.ttl == 10 and changed.allow_hosts == ("x.example",)
    assert changed.display_ext == "csv" and changed.owner_capsule is None
    assert changed.data["unknown_table"] == {"x": 1}
    assert m.ttl == 2**63 - 1  # the original is unchanged
    now = datetime(2030, 6, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    fresh = m.replace(ttl=60).mark_fresh(now)
    assert fresh.created_at_text == "2030-06-01T12:00:00Z"
    assert fresh.signature is None and "signature" not in fresh.data
    assert not fresh.is_expired(now) and fresh.expires_in(now) == 59.5
    assert fresh.is_expired(now + timedelta(seconds=60))
    with pytest.raises(UsageError, match="unknown field 'colour'"):
        m.replace(colour="red")
    with pytest.raises(UsageError, match="ttl must be an unsigned integer"):
        m.replace(ttl="soon")
    with pytest.raises(UsageError, match="variant must be one of"):
        m.replace(variant="nope")


# --- freshness ---------------------------------------------------------------------------------


def test_expiry_boundary() -> None:
    m = Manifest.parse(MINIMAL)  # created 2099-01-23T12:00:00Z, ttl 3600
    end = datetime(2099, 1, 23, 13, tzinfo=UTC)
    assert m.expires_at() == end
    assert not m.is_expired(end) and m.expires_in(end) == 0.0  # equal: not expired
    assert m.is_expired(end + timedelta(microseconds=1))
    assert m.expires_in(end + timedelta(days=1)) == 0.0
    assert m.expires_in(end - timedelta(seconds=1.25)) == 1.25
    tokyo = timezone(timedelta(hours=9))
    assert not m.is_expired(datetime(2099, 1, 23, 22, tzinfo=tokyo))  # = 13:00Z
    assert m.is_expired(datetime(2099, 1, 23, 22, 0, 1, tzinfo=tokyo))
    with pytest.raises(UsageError, match="aware"):
        m.is_expired(datetime(2099, 1, 1))


def test_huge_ttl_never_expires() -> None:
    m = Manifest.parse(_with(MINIMAL, "ttl = 3600", "ttl = 9223372036854775807"))
    assert m.expires_at() is None
    late = datetime(9999, 12, 31, tzinfo=UTC)
    assert not m.is_expired(late) and m.expires_in(late) > 1e18


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-01T00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),
    ("2026-01-01t00:00:00z", datetime(2026, 1, 1, tzinfo=UTC)),
    ("2026-01-01 00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),
    ("2026-01-01T00:00:00 UTC", datetime(2026, 1, 1, tzinfo=UTC)),
    ("2026-01-01T09:30:00+09:30", datetime(2026, 1, 1, tzinfo=UTC)),
    ("2025-12-31T18:30:00-0530", datetime(2026, 1, 1, tzinfo=UTC)),
    ("2026-01-01T00:00:00.123456789Z", datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
    ("2026-01-01T00:00:00.5+00:00", datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
])
def test_parse_timestamp_accepts(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected
    assert parse_timestamp(text).tzinfo == UTC


@pytest.mark.parametrize("text", [
    "2026-01-01T00:00:00", "2026-01-01", "2026-13-01T00:00:00Z", "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:60Z", "26-01-01T00:00:00Z", "2026-01-01X00:00:00Z",
    "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00Z trailing", "",
])
def test_parse_timestamp_refuses(text: str) -> None:
    with pytest.raises(FormatError):
        parse_timestamp(text)


def test_format_timestamp() -> None:
    assert format_timestamp(datetime(2026, 1, 1, 1, 2, 3, 999_999,
                                     tzinfo=timezone(timedelta(hours=1)))) == \
        "2026-01-01T00:02:03Z"
    with pytest.raises(UsageError):
        format_timestamp(datetime(2026, 1, 1))
