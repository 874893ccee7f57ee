"""The ``lockbox`` command line.

Every command is a thin layer over the public API (``lockbox.open``,
``Lockbox``, ``Writer``). Secrets never come from the command line: a
password is read from ``--password-file``, ``LOCKBOX_PASSWORD`` or an
interactive prompt; an identity from ``--identity`` or ``LOCKBOX_IDENTITY``.

Errors are reported as one line ``lockbox: <message>`` on stderr and the exit
code of the error class (see ``lockbox.errors``); ``LOCKBOX_DEBUG=1`` adds the
traceback.
"""

from __future__ import annotations

import argparse
import errno
import gc
import getpass
import os
import stat as stat_mod
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from functools import cache, partial
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .errors import (
    FormatError,
    IntegrityError,
    InvalidPathError,
    LockboxError,
    StorageError,
    UnsafePathError,
    UsageError,
    WrongKeyError,
)

# Everything else is imported by the command that needs it: a command pays only for its
# own imports (``python -X importtime -m lockbox ls ...``; tests/test_cli_imports.py). The
# parser itself is built lazily: only the parser of the command that runs (see
# _LazySubParsersAction).
if TYPE_CHECKING:
    from .convert import NewLbox
    from .facade import Archive
    from .formats.lbox.archive import Lockbox
    from .formats.lbox.keys import Argon2Params, Identity, Recipient, UnlockLimits
    from .formats.lbox.walk import WalkLimits
    from .info import EntryInfo
    from .protocol import SessionInfo


__all__ = ["main", "run", "build_parser", "escape_controls"]

PROG = "lockbox"
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `cat big | head`
EXIT_OS_ERROR = StorageError.exit_code

NO_SECRET = ("no password or identity given and no terminal to ask on: use "
             "--password-file FILE, the LOCKBOX_PASSWORD environment variable, or "
             "--identity FILE (LOCKBOX_IDENTITY)")

Progress = Callable[[str, int], None]


# -- small helpers -------------------------------------------------------------------


# Characters that never reach the terminal raw: controls (C0, DEL, C1), format characters
# (bidi embeddings/overrides/isolates U+202A-U+202E and U+2066-U+2069, soft hyphen, BOM,
# zero-width space...), line/paragraph separators, and lone surrogates (undecodable bytes
# of host file names). ZWNJ/ZWJ stay: scripts (Persian, Indic) and emoji need them, and
# they can neither move the cursor nor reorder text.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_KEPT_FORMAT = frozenset("\u200c\u200d")
_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """``text`` made safe and unambiguous for a terminal, like ``ls -b``.

    Backslash becomes ``\\\\``; newline, CR and tab ``\\n``, ``\\r``, ``\\t``; other ASCII
    controls and DEL ``\\xHH``; a lone surrogate U+DC80..U+DCFF (an undecodable byte of a
    host file name, ``surrogateescape``) ``\\xHH`` with that byte; other controls, format
    characters (bidi overrides and isolates...), U+2028/U+2029 ``\\uHHHH`` (or
    ``\\UHHHHHHHH``). So ``\\x`` always stands for a byte and ``\\u`` for a code point, and
    distinct strings stay distinct. Printable text (any script) is unchanged.
    """
    if "\\" not in text and text.isprintable():
        return text
    out = []
    for ch in text:
        if ch != "\\" and ch.isprintable():
            out.append(ch)
            continue
        named = _NAMED_ESCAPES.get(ch)
        if named is not None:
            out.append(named)
        elif ch in _KEPT_FORMAT or unicodedata.category(ch) not in _ESCAPED_CATEGORIES:
            out.append(ch)  # e.g. no-break space, private use: harmless
        else:
            cp = ord(ch)
            if cp < 0x80:
                out.append(f"\\x{cp:02x}")
            elif 0xDC80 <= cp <= 0xDCFF:
                out.append(f"\\x{cp - 0xDC00:02x}")
            elif cp <= 0xFFFF:
                out.append(f"\\u{cp:04x}")
            else:
                out.append(f"\\U{cp:08x}")
    return "".join(out)


def _err(message: str) -> None:
    """One line on stderr, prefixed with the program name; control characters escaped
    (messages can embed archive paths)."""
    print(f"{PROG}: {escape_controls(str(message).strip())}", file=sys.stderr, flush=True)


def _out(text: str = "") -> None:
    """One line of human output on stdout, control characters escaped."""
    print(escape_controls(text), flush=False)


def _out_json(data: object) -> None:
    """Exact machine output: JSON escapes control characters itself (ASCII only)."""
    import json

    print(json.dumps(data, indent=2), flush=False)


def _stdin_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _stderr_tty() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _human(n: int) -> str:
    """A byte count for people: 3.0 MiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


_SIZE_UNITS = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def _parse_size(text: str) -> int:
    """'65536', '64K', '64KiB', '1M', '1MiB', '2G', '1T' -> bytes (argparse type)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    if t[-1:] in _SIZE_UNITS:
        mult, t = _SIZE_UNITS[t[-1]], t[:-1]
    try:
        value = int(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a size: {text!r} (e.g. 65536, 64K, 1M, 2G)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _write_binary(data: bytes | memoryview) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the exit flush is quiet."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


class _Meter:
    """Counts bytes; draws a tqdm bar on stderr when it is a terminal (and tqdm exists)."""

    def __init__(self, total: int | None, desc: str, *, enabled: bool) -> None:
        self.bytes = 0
        self._bar: Any = None
        if enabled and _stderr_tty():
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True,
                             unit_divisor=1024, file=sys.stderr, leave=False,
                             dynamic_ncols=True)

    def __call__(self, path: str, n: int) -> None:
        self.bytes += n
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# -- secrets ---------------------------------------------------------------------------


def _file_or_env_secret(path: str | None, env: str, what: str) -> str | None:
    """A secret from the first line of ``path`` (an option's file), else from the
    environment variable ``env`` (never from argv); None when neither gives one."""
    if path:
        return _read_secret_line(path, what)
    return os.environ.get(env) or None


def _read_secret_line(path: str, what: str) -> str:
    """The first line of a file, without its line ending."""
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline()
    except OSError as e:
        raise UsageError(f"cannot read {what} file {path}: {e.strerror or e}") from e
    except UnicodeDecodeError:
        raise UsageError(f"{what} file {path} is not UTF-8 text") from None
    line = line.rstrip("\r\n")
    if not line:
        raise UsageError(f"{what} file {path} is empty (its first line is the {what})")
    return line


def _prompt(prompt: str) -> str:
    try:
        return getpass.getpass(escape_controls(prompt))
    except EOFError:
        raise UsageError("no password entered") from None


def _password(args: argparse.Namespace) -> str | None:
    """The password from --password-file or LOCKBOX_PASSWORD (never from argv)."""
    path = getattr(args, "password_file", None)
    if path:
        return _read_secret_line(path, "password")
    return os.environ.get("LOCKBOX_PASSWORD") or None


def _identity(args: argparse.Namespace) -> Identity | None:
    from .formats.lbox.keys import Identity

    path = getattr(args, "identity", None) or os.environ.get("LOCKBOX_IDENTITY") or None
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"cannot read identity file {path}: {e.strerror or e}") from e
    except UnicodeDecodeError:
        raise UsageError(f"identity file {path} is not a lockbox identity file") from None
    try:
        return Identity.decode(text)
    except FormatError as e:
        raise UsageError(f"{path}: {e}") from None


def _new_password(args: argparse.Namespace, file_attr: str, env_name: str) -> str:
    """A password for a new key slot: file, environment, or asked twice on a terminal."""
    path = getattr(args, file_attr, None)
    if path:
        return _read_secret_line(path, "password")
    value = os.environ.get(env_name)
    if value:
        return value
    if not _stdin_tty():
        opt = "--" + file_attr.replace("_", "-")
        raise UsageError(f"no new password given and no terminal to ask on: use {opt} FILE "
                         f"or the {env_name} environment variable")
    first = _prompt("New password: ")
    if not first:
        raise UsageError("the password is empty")
    if _prompt("Repeat the new password: ") != first:
        raise UsageError("the passwords do not match")
    return first


def _check_source(location: str) -> None:
    """Fail early (before prompting) when a local archive cannot be opened."""
    from .registry import is_special_location
    from .sources import is_url, open_source

    if is_url(location) or is_special_location(location):
        return

    open_source(location).close()


# Options that only mean something for a .lbox (their defaults are SUPPRESS: present in
# the namespace only when given).
_LBOX_ONLY_OPTIONS = (("generation", "--generation"), ("max_argon2_memory", "--max-argon2-memory"),
                      ("max_argon2_time", "--max-argon2-time"),
                      ("max_unlock_work", "--max-unlock-work"),
                      ("max_tree_amplification", "--max-tree-amplification"))


def _open_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The format settings the options give (each format uses what applies to it)."""
    cache = getattr(args, "cache", None)
    if cache is None:
        cache = _cache_limit(os.environ.get("LOCKBOX_CACHE", "auto"))
    return {"cache": cache, "limits": _unlock_limits(args),
            "generation": getattr(args, "generation", None),
            "walk_limits": _walk_limits(args)}


def _open_any(args: argparse.Namespace, *, only_lbox: str | None = None,
              use_agent: bool = True) -> Archive:
    """Open args.archive, whatever its format, through the generic facade.

    The format is probed first (one read, reused by the open): a password is asked (or
    required) only when the format is encrypted. ``only_lbox``: the command, which works
    on .lbox archives only (UsageError for another format, before any prompt).

    A .lbox opened without a given secret is opened first with the key the unlock agent
    holds for it (``use_agent``), and a password or identity that opens one gives the
    agent its key (docs/VAULT.md "Using the agent")."""
    from .facade import Archive, probe
    from .registry import is_special_location
    from .sources import open_source

    location: str = args.archive
    settings = _open_settings(args)
    if is_special_location(location):  # STORE_URI#id=ID: a snapdir snapshot, no probing
        if only_lbox:
            raise UsageError(f"{location} is a snapdir snapshot: '{only_lbox}' works on "
                             ".lbox archives only")
        given = [flag for attr, flag in _LBOX_ONLY_OPTIONS if hasattr(args, attr)]
        if given:
            raise UsageError(f"{location} is a snapdir snapshot: {', '.join(given)} "
                             "applies to .lbox archives only")
        return Archive.open(location, **settings)
    password = _password(args)
    identity = _identity(args)
    source = open_source(location)  # a missing file is reported before any prompt
    try:
        probed = probe(source)
        if only_lbox and probed.spec.name != "lbox":
            raise UsageError(f"{location} is a {probed.spec.title}: '{only_lbox}' works on "
                             ".lbox archives only")
        if probed.spec.name != "lbox":
            given = [flag for attr, flag in _LBOX_ONLY_OPTIONS if hasattr(args, attr)]
            if given:
                raise UsageError(f"{location} is a {probed.spec.title}: {', '.join(given)} "
                                 "applies to .lbox archives only")
        secret_given = password is not None or identity is not None
        is_lbox = probed.spec.name == "lbox"
        if not probed.spec.encrypted or secret_given:
            box = Archive.open(location, source=source, probe=probed, password=password,
                               identity=identity, close_source=False, **settings)
            if (not secret_given and getattr(box.session, "is_vault", False)
                    and _stdin_tty()):
                # A .sync vault: the container is plain (it lists without a secret), its
                # payload is age-encrypted. Ask now, as for an encrypted format.
                typed = _prompt(f"Passphrase for {os.path.basename(location) or location}: ")
                box = Archive.open(location, source=source, probe=probed, password=typed,
                                   close_source=False, **settings)
            elif secret_given and is_lbox:
                _agent_remember(box)
        else:
            agent_box = _open_from_agent(location, source, probed, settings) \
                if is_lbox and use_agent else None
            if agent_box is not None:
                box = agent_box
            else:
                box = _open_prompting(location, source, probed, settings)
                if is_lbox:
                    _agent_remember(box)
    except BaseException:
        source.close()
        raise
    box.close_source = True
    return box


def _agent_lookup(source: Any, probed: Any) -> tuple[bytes, bytes] | None:
    """The ``known_key`` the unlock agent holds for the .lbox that ``source`` reads, or
    None (no agent, no key, an archive without a key commitment). Never fails: an agent
    problem is one warning line (docs/VAULT.md "Using the agent")."""
    if _no_agent_dir():
        return None
    from .vault import unlock_cache

    return unlock_cache.lookup_source(source, probed.head, warn=_agent_warn)


def _no_agent_dir() -> bool:
    """True when no unlock agent can run: its socket's directory does not exist, so the
    agent client would find none without a word (``agent_client._connect``: a missing
    directory is "no agent"; anything that exists there is looked at, and warned about,
    by the client as before). Spares every open importing the client (socket,
    subprocess)."""
    from .vault.paths import agent_socket_path

    return not os.path.lexists(os.path.dirname(agent_socket_path()))


def _agent_warn(message: str) -> None:
    _err(f"warning: {message}")


def _open_from_agent(location: str, source: Any, probed: Any,
                     settings: dict[str, Any]) -> Archive | None:
    """The .lbox opened with the content key the unlock agent holds for it; None when
    it holds none, or the key no longer opens it (then the caller prompts). The open
    checks the key against the key directory's commitment again."""
    from .facade import Archive

    known = _agent_lookup(source, probed)
    if known is None:
        return None
    try:
        return Archive.open(location, source=source, probe=probed,
                            secrets={"known_key": known}, close_source=False, **settings)
    except WrongKeyError:
        return None


def _agent_remember(box: Any) -> None:
    """Give the unlock agent the content key a password or identity just unlocked (a
    no-op, silent, when no agent runs)."""
    if _no_agent_dir():
        return
    from .formats.lbox.archive import Lockbox
    from .vault import unlock_cache

    if isinstance(box, Lockbox):
        unlock_cache.remember(box, warn=_agent_warn)


def _open_prompting(location: str, source: Any, probed: Any,
                    settings: dict[str, Any]) -> Archive:
    from .facade import Archive

    if not _stdin_tty():
        raise UsageError(NO_SECRET)
    attempts = 3
    for attempt in range(1, attempts + 1):
        typed = _prompt(f"Password for {os.path.basename(location) or location}: ")
        try:
            return Archive.open(location, source=source, probe=probed, password=typed,
                                close_source=False, **settings)
        except WrongKeyError:
            if attempt == attempts:
                raise
            _err("wrong password, try again")
    raise AssertionError("unreachable")


def _open(args: argparse.Namespace, *, write: bool = False, use_agent: bool = True
          ) -> Lockbox:
    """Open args.archive, a .lbox archive, with the user's secrets (or the unlock agent's
    key, or a prompt on a terminal), for a command of that format (``write``: one that
    changes it)."""
    from .formats.lbox.archive import Lockbox
    from .sources import is_url

    if write and is_url(args.archive):
        raise UsageError("an archive on a web server is read-only here; "
                         "download it to change it")
    if write and getattr(args, "generation", None) is not None:
        raise UsageError("--generation opens an older commit read-only; "
                         "leave it out to change the archive")
    command = " ".join(c for c in (getattr(args, "command", None),
                                   getattr(args, "env_command", None),
                                   getattr(args, "keys_command", None)) if c)
    box = _open_any(args, only_lbox=command or "this command", use_agent=use_agent)
    assert isinstance(box, Lockbox)
    return box


def _load_recipients(values: Sequence[str]) -> list[Recipient]:
    """Recipient strings, names of trusted recipients (``lockbox vault add-recipient``),
    or files holding one or more recipient lines (# comments ok)."""
    from .formats.lbox.keys import IDENTITY_PREFIX, RECIPIENT_PREFIX, Recipient
    from .vault.names import NAME_PATTERN

    out: list[Recipient] = []
    for value in values:
        if value.strip().startswith(RECIPIENT_PREFIX):
            out.append(Recipient.decode(value))
            continue
        if NAME_PATTERN.fullmatch(value):  # else not a name (a path): no vault lookup
            from .vault.recipients import trusted_recipient

            trusted = trusted_recipient(value)  # a name in the vault's recipients book
            if trusted is not None:
                out.append(trusted)
                continue
        try:
            with open(value, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise UsageError(f"{value!r} is neither a recipient ({RECIPIENT_PREFIX}...) "
                             "nor an existing file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read recipient file {value}: {e}") from e
        found = []
        for line in text.splitlines():
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            if s.startswith(IDENTITY_PREFIX):
                raise UsageError(f"{value} is an identity file (a secret); pass its recipient "
                                 f"instead: lockbox keygen --recipient-of {value}")
            try:
                found.append(Recipient.decode(s))
            except FormatError as e:
                raise UsageError(f"{value}: {e}") from None
        if not found:
            raise UsageError(f"no recipient found in {value}")
        out.extend(found)
    return out


def _argon2(args: argparse.Namespace) -> Argon2Params:
    """Argon2id parameters from the options (validated)."""
    from .formats.lbox.keys import DEFAULT_ARGON2, Argon2Params
    from .formats.lbox.wire.constants import (
        ARGON2_MAX_MEMORY_KIB,
        ARGON2_MAX_TIME_COST,
        ARGON2_MIN_MEMORY_KIB,
    )

    kib = getattr(args, "argon2_memory_kib", None)
    mib = getattr(args, "argon2_memory", None)
    if kib is None:
        kib = mib * 1024 if mib is not None else DEFAULT_ARGON2.memory_kib
    t = getattr(args, "argon2_time", None) or DEFAULT_ARGON2.time_cost
    if not ARGON2_MIN_MEMORY_KIB <= kib <= ARGON2_MAX_MEMORY_KIB:
        raise UsageError(f"Argon2 memory must be between {ARGON2_MIN_MEMORY_KIB} KiB and "
                         f"{ARGON2_MAX_MEMORY_KIB // 1024} MiB")
    if not 1 <= t <= ARGON2_MAX_TIME_COST:
        raise UsageError(f"Argon2 time cost must be between 1 and {ARGON2_MAX_TIME_COST}")
    return Argon2Params(time_cost=t, memory_kib=kib)


def _create(args: argparse.Namespace, *, overwrite: bool, unpublished: bool = False
            ) -> Lockbox:
    """Create args.archive from the creation options; returns it opened. ``unpublished``:
    under a temporary name, to be published after a commit (``newarchive.create_archive``);
    it is removed if this fails."""
    from .formats.lbox.archive import Lockbox

    # Not lockbox.create(): its lazy `from .newarchive import ...` rebinds the package
    # attribute `lockbox.create` to the submodule after the first call.
    from .formats.lbox.write.newarchive import (
        create_archive,
        discard_unpublished,
        unpublished_path,
    )
    from .sources import is_url

    if is_url(args.archive):
        raise UsageError("cannot create an archive on a web server")
    recipients = _load_recipients(args.recipient or [])
    password = None
    if not args.no_password:
        password = _password(args)
        if password is None:
            if not _stdin_tty():
                raise UsageError(
                    "a new archive needs a password: use --password-file FILE or "
                    "LOCKBOX_PASSWORD (or --no-password with --recipient)")
            password = _new_password(args, "password_file", "LOCKBOX_PASSWORD")
    elif not recipients:
        raise UsageError("--no-password needs at least one --recipient")
    key = create_archive(args.archive, password=password, recipients=recipients,
                         argon2=_argon2(args), chunk_size=args.chunk_size, overwrite=overwrite,
                         unpublished=unpublished)
    try:
        box = Lockbox.open(unpublished_path(args.archive) if unpublished else args.archive,
                           known_key=key)
        _agent_remember(box)  # the new archive's key, as after any password open
    except BaseException:
        if unpublished:
            discard_unpublished(args.archive)
        raise
    return box


# -- commands --------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    """lockbox create: a new, empty archive."""
    from .sources import is_url

    if not args.force and not is_url(args.archive) and os.path.lexists(args.archive):
        raise StorageError(f"{args.archive} already exists (use --force to replace it)")
    with _create(args, overwrite=args.force):
        pass
    if not args.quiet:
        _out(f"created {args.archive}")
    return 0


def _scan(host: str) -> Iterator[tuple[str, os.stat_result]]:
    """(path, lstat) of host and everything below it; symlinks are not followed."""
    stack = [host]
    while stack:
        p = stack.pop()
        try:
            st = os.lstat(p)
        except OSError as e:
            raise StorageError(f"cannot read {p}: {e.strerror}") from e
        yield p, st
        if stat_mod.S_ISDIR(st.st_mode):
            try:
                names = sorted(os.listdir(p), reverse=True)
            except OSError as e:
                raise StorageError(f"cannot list {p}: {e.strerror}") from e
            stack.extend(os.path.join(p, n) for n in names)


def _jobs(text: str) -> str:
    if text != "auto" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError("expected 'auto' or a whole number >= 1")
    return text


def _add_one(w: Any, host: str, dest: str, skip: tuple[int, int] | None,
             progress: Progress | None, quiet: bool, jobs: str = "auto") -> int:
    """Add host (recursively) as dest; returns the number of entries added."""

    def on_skip(path: str, why: str) -> None:
        if not quiet:
            _err(f"skipping {path}: {why}")

    return int(w.add_tree(host, dest, progress=progress, on_skip=on_skip, jobs=jobs,
                          exclude=[skip] if skip is not None else []))


def _dest_for(host: str, to: str) -> str:
    """Archive path for a command-line PATH: its own name under --to, or with a
    trailing slash (or '.'), only its contents."""
    to = to.strip("/")
    stripped = host.rstrip("/" + os.sep)
    if host.endswith(("/", os.sep)) or os.path.basename(stripped) in ("", ".", ".."):
        try:
            if stat_mod.S_ISDIR(os.lstat(host).st_mode):
                return to
        except OSError:
            pass
    name = os.path.basename(stripped)
    return f"{to}/{name}" if to else name


def _total_bytes(hosts: Sequence[str]) -> int:
    total = 0
    for h in hosts:
        try:
            for _, st in _scan(h):
                if stat_mod.S_ISREG(st.st_mode):
                    total += st.st_size
        except StorageError:
            pass  # reported when the tree is actually added
    return total


def cmd_add(args: argparse.Namespace) -> int:
    """lockbox add: add paths recursively in one commit."""
    from .sources import is_url

    new = args.create and not is_url(args.archive) and not os.path.lexists(args.archive)
    if new:
        # Written under a temporary name and committed to there: it gets its name once the
        # commit is durable (docs/FORMAT.md §11 "Creating an archive"). One fsync fewer,
        # and an add that fails leaves no archive behind.
        box = _create(args, overwrite=False, unpublished=True)
    else:
        box = _open(args, write=True)
    started = time.monotonic()  # after any password prompt
    try:
        count, meter = _add_all(args, box, started)
        if new:
            from .formats.lbox.write.newarchive import publish_archive

            publish_archive(args.archive, committed=box.view.commit.generation > 1)
    except BaseException:
        if new:
            from .formats.lbox.write.newarchive import discard_unpublished

            discard_unpublished(args.archive)
        raise
    if not args.quiet:
        _out(f"added {count} entries, {meter.bytes:,} bytes ({_human(meter.bytes)}) "
             f"in {time.monotonic() - started:.2f} s")
    return 0


def _add_all(args: argparse.Namespace, box: Lockbox, started: float) -> tuple[int, _Meter]:
    """Add args.paths to ``box`` in one commit; (entries added, the meter)."""
    with box:
        skip = None
        if box.path is not None:
            try:
                st = os.stat(box.path)
                skip = (st.st_dev, st.st_ino)
            except OSError:
                pass
        total = _total_bytes(args.paths) if (_stderr_tty() and not args.quiet) else None
        meter = _Meter(total, "adding", enabled=not args.quiet)
        try:
            count = 0
            with box.writer() as w:
                # -q counts no bytes (no call per file) unless the timings line says them
                progress = meter if not args.quiet or w.timings is not None else None
                for host in args.paths:
                    count += _add_one(w, host, _dest_for(host, args.to), skip, progress,
                                      args.quiet, args.jobs)
                staged_at = time.monotonic()
            if w.timings is not None:
                # One tab-separated line of stage totals (seconds), for diagnostics.
                t = w.timings
                fields = {"wall": time.monotonic() - started,
                          "add": staged_at - started, "commit": t["commit"],
                          "read": t["read"], "prepare": t["prepare"], "write": t["write"],
                          "entries": count, "bytes": meter.bytes, "jobs": args.jobs}
                print("lockbox-timings\t" + "\t".join(
                    f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in fields.items()), file=sys.stderr)
        finally:
            meter.close()
    return count, meter


_TYPE_BITS = {"file": stat_mod.S_IFREG, "dir": stat_mod.S_IFDIR, "symlink": stat_mod.S_IFLNK}
_NO_TIME = "-"  # ls --long for a format without modification times


def _long_lines(entries: Sequence[EntryInfo]) -> list[str]:
    """ls --long lines: mode, [owner group,] size, mtime (UTC), path, symlink target.
    Owner and group appear when the format records them; a format without times shows
    '-' for the time."""
    sizes = [str(e.size) if e.is_file else "-" for e in entries]
    width = max((len(s) for s in sizes), default=1)
    owners = any(e.owner or e.group for e in entries)
    o_width = max((len(e.owner or "-") for e in entries), default=1)
    g_width = max((len(e.group or "-") for e in entries), default=1)
    lines = []
    for e, size in zip(entries, sizes):
        mode = stat_mod.filemode(_TYPE_BITS.get(e.type, 0) | (e.mode & 0o7777))
        when = (e.mtime.isoformat(timespec="seconds").replace("+00:00", "Z")
                if e.mtime_ns else _NO_TIME.ljust(20))
        who = f"{e.owner or '-':<{o_width}} {e.group or '-':<{g_width}} " if owners else ""
        line = f"{mode} {who}{size:>{width}} {when} {e.path}"
        if e.type == "symlink":
            line += f" -> {e.target}"
        lines.append(line)
    return lines


def cmd_ls(args: argparse.Namespace) -> int:
    """lockbox ls: list a directory (or one entry), in any format."""
    with _open_any(args) as box:
        path = (args.path or "").strip("/")
        entries: list[EntryInfo]
        st = box.stat(path) if path else None
        if st is not None and not st.is_dir:
            entries = [st]
        elif args.recursive:
            # A listing builds many objects and no reference cycles: the cyclic
            # collector would only walk them again and again (~10% of a big listing).
            collecting = gc.isenabled()
            gc.disable()
            try:
                entries = _ls_recursive(box, path)
            finally:
                if collecting:
                    gc.enable()
        else:
            entries = box.ls(path)
    if args.json:
        _out_json([e.to_json() for e in entries])
    elif args.long:
        _out_lines(_long_lines(entries))
    else:
        _out_lines([e.path + "/" if e.type == "dir" else e.path for e in entries])
    return 0


def _ls_recursive(box: Archive, path: str) -> list[EntryInfo]:
    """``box.ls(path, recursive=True)``: every entry below ``path`` sorted by path
    components. The sort key is the path with '/' as NUL, the lowest character (a
    name holds no NUL): the same order as comparing component lists, compared in C."""
    from .facade import canonical_path

    root = canonical_path(path)
    out = [e for e in box.iter_entries(path) if e.path != root]
    out.sort(key=lambda e: e.path.replace("/", "\x00"))
    return out


def _out_lines(lines: list[str]) -> None:
    """Lines of human output on stdout in one write, control characters escaped."""
    if not lines:
        return
    text = "\n".join(lines)
    if "\\" in text or not text.replace("\n", "").isprintable():
        text = "\n".join(escape_controls(line) for line in lines)
    sys.stdout.write(text + "\n")


def cmd_cat(args: argparse.Namespace) -> int:
    """lockbox cat: stream a file's content to stdout."""
    with _open_any(args) as box:
        sys.stdout.flush()
        out = sys.stdout.buffer
        for piece in box.iter_bytes(args.path):
            out.write(piece)
        out.flush()
    return 0


def _selected_bytes(box: Archive, paths: Sequence[str]) -> int:
    """File bytes under the given paths (for a progress bar's total)."""
    total = 0
    for p in paths or [""]:
        total += sum(e.size for e in box.iter_entries(p) if e.is_file)
    return total


def cmd_extract(args: argparse.Namespace) -> int:
    """lockbox extract: write entries under a local directory."""
    with _open_any(args) as box:
        started = time.monotonic()
        total = None
        if _stderr_tty() and not args.quiet:
            total = _selected_bytes(box, args.paths)
        meter = _Meter(total, "extracting", enabled=not args.quiet)
        try:
            # strict=False: unsafe entries are skipped and reported here, one line each.
            report = box.extract(args.to, list(args.paths) or None, overwrite=args.overwrite,
                                 progress=meter, strict=False,
                                 preserve_permissions=args.preserve_permissions,
                                 max_size=args.max_size, same_owner=args.same_owner)
        finally:
            meter.close()
    for s in report.skipped:
        _err(f"skipping {s.path}: {s.reason}")
    if not args.quiet:
        for note in report.notes:
            _err(f"note: {note}")
        _out(f"extracted {report.entries} entries, {meter.bytes:,} bytes "
             f"({_human(meter.bytes)}) to {args.to} in {time.monotonic() - started:.2f} s")
    if report.skipped:
        n = len(report.skipped)
        _err(f"{n} unsafe entr{'y was' if n == 1 else 'ies were'} skipped (the rest was "
             "extracted)")
        return UnsafePathError.exit_code
    return 0


def _new_lbox(args: argparse.Namespace, source_encrypted: bool) -> NewLbox:
    """How to protect the .lbox that convert writes: the creation options; its password
    from --new-password-file / LOCKBOX_NEW_PASSWORD, else (when the source needs none)
    --password-file / LOCKBOX_PASSWORD as for create, else asked twice on a terminal."""
    from .convert import NewLbox

    recipients = _load_recipients(args.recipient or [])
    password: str | None = None
    if args.no_password:
        if not recipients:
            raise UsageError("--no-password needs at least one --recipient")
    elif args.new_password_file or os.environ.get("LOCKBOX_NEW_PASSWORD"):
        password = _new_password(args, "new_password_file", "LOCKBOX_NEW_PASSWORD")
    elif not source_encrypted and _password(args) is not None:
        password = _password(args)
    elif _stdin_tty():
        password = _new_password(args, "new_password_file", "LOCKBOX_NEW_PASSWORD")
    else:
        also = "" if source_encrypted else ", --password-file FILE or LOCKBOX_PASSWORD"
        raise UsageError("the new archive needs a password: use --new-password-file FILE or "
                         f"LOCKBOX_NEW_PASSWORD{also} (or --no-password with --recipient)")
    return NewLbox(password, recipients, _argon2(args), args.chunk_size)


def cmd_convert(args: argparse.Namespace) -> int:
    """lockbox convert: from any readable format or a directory to .lbox, .uri or a
    directory. Exit 0 when every entry was converted, 8 when some were left out."""
    from .convert import convert, target_format
    from .sources import is_url

    target = target_format(args.dst, args.to_format)
    if is_url(args.dst):
        raise UsageError("convert writes a local file or directory, not a URL")
    started = time.monotonic()
    box: Archive | None = None
    if is_url(args.src) or not os.path.isdir(args.src):
        args.archive = args.src
        box = _open_any(args)
    try:
        encrypted = box is not None and box.spec is not None and box.spec.encrypted
        new = _new_lbox(args, encrypted) if target == "lbox" else None
        started = time.monotonic()  # after any password prompt
        total = None
        if box is not None and _stderr_tty() and not args.quiet:
            total = box.session.info().file_bytes
        meter = _Meter(total, "converting", enabled=not args.quiet)
        try:
            report = convert(box if box is not None else args.src, args.dst, to_format=target,
                             new_lbox=new, overwrite=args.overwrite, progress=meter,
                             preserve_permissions=args.preserve_permissions,
                             same_owner=args.same_owner, max_size=args.max_size)
        finally:
            meter.close()
    finally:
        if box is not None:
            box.close()
    for s in report.skipped:
        _err(f"skipping {s.path}: {s.reason}")
    for note in report.notes:
        _err(f"note: {note}")
    if not args.quiet:
        _out(f"converted {report.entries} entries ({report.files} files, "
             f"{report.file_bytes:,} bytes, {_human(report.file_bytes)}) from {args.src} "
             f"({report.source_format}) to {args.dst} ({report.target_format}) in "
             f"{time.monotonic() - started:.2f} s")
    if report.skipped:
        n, unsafe = len(report.skipped), report.unsafe
        why = f"{unsafe} unsafe, {n - unsafe} not storable in the target" if unsafe else \
            "not storable in the target"
        _err(f"{n} entr{'y was' if n == 1 else 'ies were'} left out ({why}); the rest was "
             "converted")
        return UnsafePathError.exit_code
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    """lockbox rm: remove entries."""
    from .formats.lbox.wire.entry import normalize_path

    removed = 0
    with _open(args, write=True) as box, box.writer() as w:
        for p in args.paths:
            try:
                removed += w.remove(p, recursive=args.recursive)
            except InvalidPathError:
                # The library's hint names its API; here the hint is the flag.
                norm = normalize_path(p)
                if args.recursive or not norm or not box.stat(norm).is_dir:
                    raise
                raise InvalidPathError(f"directory not empty: {norm} (use -r to remove it "
                                       "with everything in it)") from None
    if not args.quiet:
        _out(f"removed {removed} entries")
    return 0


def cmd_mv(args: argparse.Namespace) -> int:
    """lockbox mv: move or rename an entry."""
    with _open(args, write=True) as box, box.writer() as w:
        w.move(args.src, args.dst)
    return 0


COMPACT_HINT = 0.25  # info suggests compacting past this reclaimable share


def cmd_info(args: argparse.Namespace) -> int:
    """lockbox info: facts about the archive (the .lbox details for a .lbox)."""
    from dataclasses import replace

    from .formats.lbox.archive import Lockbox

    with _open_any(args) as box:
        if isinstance(box, Lockbox):
            info = box.info()
            reclaim = box.reclaimable()
            return _print_lbox_info(args, info, reclaim)
        sinfo = box.info()
        counts: dict[str, int] = {}
        if sinfo.entries is None:  # a format without an index: count with one walk
            for e in box.iter_entries():
                counts[e.type] = counts.get(e.type, 0) + 1
                if e.is_file:
                    counts["bytes"] = counts.get("bytes", 0) + e.size
            sinfo = replace(
                sinfo, entries=sum(v for k, v in counts.items() if k != "bytes"),
                file_bytes=counts.get("bytes", 0),
                details={**sinfo.details, "files": counts.get("file", 0),
                         "dirs": counts.get("dir", 0), "symlinks": counts.get("symlink", 0)})
        title = box.spec.title if box.spec is not None else sinfo.format
    _print_session_info(args, sinfo, title)
    return 0


def _print_session_info(args: argparse.Namespace, info: SessionInfo, title: str) -> None:
    """Any format's SessionInfo: the common facts, then the format's details."""
    from dataclasses import asdict

    if args.json:
        _out_json({**asdict(info), "title": title})
        return
    size = "unknown" if info.archive_size is None else (
        f"{info.archive_size:,} bytes ({_human(info.archive_size)})")
    rows = [("format", f"{title} ({info.format})"),
            ("encrypted", "yes" if info.encrypted else "no"),
            ("size", size)]
    d = info.details
    if info.entries is not None:
        parts = [f"{d[k]} {label}" for k, label in (("files", "files"), ("dirs", "directories"),
                                                    ("symlinks", "symlinks")) if k in d]
        rows.append(("entries", f"{info.entries}" + (f" ({', '.join(parts)})" if parts else "")))
    if info.file_bytes is not None:
        rows.append(("file bytes", f"{info.file_bytes:,} ({_human(info.file_bytes)})"))
    shown = {"files", "dirs", "symlinks"}
    rows.extend((k.replace("_", " "), _detail_text(v)) for k, v in d.items() if k not in shown)
    width = max(12, *(len(k) + 1 for k, _ in rows))
    for k, v in rows:
        _out(f"{k + ':':<{width}} {escape_controls(v)}")


def _detail_text(value: Any) -> str:
    """One format-specific detail on one line: scalars as they read, None as "-", lists
    and tables as compact JSON (the same values ``info --json`` gives)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        import json

        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return str(value)


def _print_lbox_info(args: argparse.Namespace, info: Any, reclaim: tuple[int, int] | None
                     ) -> int:
    if args.json:
        data = info.to_json()
        if reclaim is not None:
            data["reclaimable_bytes"] = reclaim[0]
        _out_json(data)
        return 0
    size = "unknown" if info.archive_size is None else (
        f"{info.archive_size:,} bytes ({_human(info.archive_size)})")
    rows = [
        ("archive id", info.archive_id),
        ("format", f"lockbox v{info.format_version}" + (
            "" if info.key_commitment else
            " (no key commitment: written before it; the next change adds it)")),
        ("generation", f"{info.generation} (committed {info.committed_at})"),
        ("size", size),
        ("entries", f"{info.files} files, {info.dirs} directories, {info.symlinks} symlinks"),
        ("file bytes", f"{info.file_bytes:,} ({_human(info.file_bytes)}), stored as "
                       f"{info.stored_bytes:,} ({_human(info.stored_bytes)})"),
        ("chunk size", _human(info.chunk_size)),
        ("env values", str(info.env_count)),
        ("key slots", str(len(info.slots))),
    ]
    if reclaim is not None:
        free, end = reclaim
        share = free / end if end else 0.0
        hint = "  (run 'lockbox compact' to reclaim it)" if share >= COMPACT_HINT else ""
        rows.append(("reclaimable", f"{free:,} bytes ({share:.0%}){hint}"))
    for k, v in rows:
        _out(f"{k + ':':<12} {v}")
    for s in info.slots:
        mark = "  (unlocked with this)" if s.slot_id == info.unlocked_slot else ""
        _out(f"  {s.slot_id:>10}  {s.kind:<9}  {s.detail}{mark}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """lockbox verify: check everything; exit 5 when damaged."""
    from dataclasses import asdict

    from .formats.lbox.verify import VerifyReport

    with _open_any(args) as box:
        total = box.session.info().file_bytes
        meter = _Meter(total, "verifying", enabled=not args.quiet)
        try:
            report = box.verify(progress=meter)
        finally:
            meter.close()
    if args.json:
        _out_json({**asdict(report), "ok": report.ok})
    elif report.ok and not args.quiet:
        if isinstance(report, VerifyReport):
            _out(f"ok: generation {report.generation}, {report.files_checked} files "
                 f"({_human(report.bytes_checked)}), {report.nodes_checked} tree nodes, "
                 f"{report.pages_checked} pages checked")
        else:
            _out(f"ok: {report.entries_checked} entries ({_human(report.bytes_checked)}) "
                 "checked")
    if report.ok:
        return 0
    for problem in report.problems:
        _err(f"verify: {problem}")
    return IntegrityError.exit_code


def _recover_line(e: Any) -> str:
    """One line of `recover` output for a file that is not complete."""
    size = "unknown size" if e.size is None else f"{e.size:,} bytes"
    if e.status == "lost":
        return f"lost     {e.path}  ({size}): {e.detail}"
    spans = ", ".join(f"{a}-{b - 1}" for a, b in e.ranges[:4])
    if len(e.ranges) > 4:
        spans += f", ... ({len(e.ranges) - 4} more)"
    return (f"partial  {e.path}  ({e.recovered_bytes:,} of {size} recovered: bytes {spans}): "
            f"{e.detail}")


def cmd_recover(args: argparse.Namespace) -> int:
    """lockbox recover: rebuild what a damaged archive holds; with -o, write the complete
    files into a new archive. Exit 0 when every file is complete, 5 otherwise."""
    from .formats.lbox.recovery import RecoveryScanner
    from .sources import open_source

    out = None if args.dry_run else args.output
    if out is not None and os.path.lexists(out):
        raise UsageError(f"{out} already exists (recover writes a new archive)")
    password = _password(args)
    identity = _identity(args)
    ask = password is None and identity is None
    if ask:
        _check_source(args.archive)
        if not _stdin_tty():
            raise UsageError(NO_SECRET)
    attempts = 3 if ask else 1
    report = None
    for attempt in range(1, attempts + 1):
        if ask:
            password = _prompt(f"Password for {os.path.basename(args.archive) or args.archive}: ")
        source = open_source(args.archive)
        try:
            scanner = RecoveryScanner(password=password, identity=identity)
            try:
                report = scanner.scan(source)
            except WrongKeyError:
                if attempt == attempts:
                    raise
                _err("wrong password, try again")
                continue
            if out is not None:
                scanner.salvage(out, source)
        finally:
            source.close()
        break
    assert report is not None
    if args.json:
        _out_json(report.to_json())
        return 0 if report.ok else IntegrityError.exit_code
    for e in report.files:
        if e.status != "complete":
            _out(_recover_line(e))
    if not args.quiet:
        for problem in report.problems:
            _err(f"recover: {problem}")
        tree = {"commit": f"the commit (generation {report.commit_generation})",
                "toc-leaves": "surviving TOC leaves",
                "data-frames": "the data frames alone"}.get(report.toc_source,
                                                            report.toc_source)
        _out(f"{len(report.complete)} of {len(report.files)} files complete, "
             f"{len(report.partial)} partial, {len(report.lost)} lost"
             + (f", {report.unaccounted_files} unaccounted" if report.unaccounted_files else "")
             + "; "
             f"{len(report.dirs)} directories, {len(report.symlinks)} symlinks, "
             f"{len(report.env_names)} env values; tree from {tree}; scanned "
             f"{_human(report.bytes_scanned)}: {report.frames_authenticated} frames "
             f"authenticated, {report.frames_rejected} rejected")
        s = report.salvage
        if s is not None:
            _out(f"salvaged {s.files} files ({_human(s.bytes)}), {s.dirs} directories, "
                 f"{s.symlinks} symlinks, {s.env_values} env values into {s.path}")
        elif args.output:
            _out("dry run: nothing written")
    if report.salvage is not None:
        for skipped in report.salvage.skipped:
            _err(f"recover: not salvaged: {skipped}")
    return 0 if report.ok else IntegrityError.exit_code


# -- env -------------------------------------------------------------------------------


def _env_value(args: argparse.Namespace) -> bytes:
    """The value for env set: argument, --from-file, prompt or stdin."""
    if args.value is not None:
        return str(args.value).encode("utf-8")
    if args.from_file is not None:
        try:
            with open(args.from_file, "rb") as f:
                return f.read()
        except OSError as e:
            raise UsageError(f"cannot read {args.from_file}: {e.strerror or e}") from e
    if _stdin_tty():
        return _prompt(f"Value of {args.name} (not echoed): ").encode("utf-8")
    return sys.stdin.buffer.read()


def cmd_env_set(args: argparse.Namespace) -> int:
    """lockbox env set: store a value."""
    if args.value is not None and args.from_file is not None:
        raise UsageError("give the value either as an argument or with --from-file, not both")
    with _open(args, write=True) as box:
        value = _env_value(args)  # after unlocking: a prompt for the password comes first
        with box.writer() as w:
            w.env_set(args.name, value)
    return 0


def cmd_env_get(args: argparse.Namespace) -> int:
    """lockbox env get: the raw value on stdout."""
    with _open(args) as box:
        value = box.env_get(args.name)
    _write_binary(value)
    sys.stdout.buffer.flush()
    return 0


def cmd_env_ls(args: argparse.Namespace) -> int:
    """lockbox env ls: names (and with --values, values)."""
    with _open(args) as box:
        items = box.env_items()
    for name, value in items:
        if args.values:
            _out(f"{name}={value.decode('utf-8', 'surrogateescape')}")
        else:
            _out(name)
    return 0


def cmd_env_rm(args: argparse.Namespace) -> int:
    """lockbox env rm: remove a value."""
    with _open(args, write=True) as box, box.writer() as w:
        w.env_remove(args.name)
    return 0


# -- keys ------------------------------------------------------------------------------


def cmd_keys_ls(args: argparse.Namespace) -> int:
    """lockbox keys ls: the key slots."""
    from dataclasses import asdict

    with _open(args) as box:
        info = box.info()
    if args.json:
        _out_json([{**asdict(s), "unlocked": s.slot_id == info.unlocked_slot}
                   for s in info.slots])
        return 0
    for s in info.slots:
        mark = "  (unlocked with this)" if s.slot_id == info.unlocked_slot else ""
        _out(f"{s.slot_id:>10}  {s.kind:<9}  {s.detail}{mark}")
    return 0


def cmd_keys_add_password(args: argparse.Namespace) -> int:
    """lockbox keys add-password: a new password slot."""
    params = _argon2(args)
    with _open(args, write=True) as box:
        password = _new_password(args, "new_password_file", "LOCKBOX_NEW_PASSWORD")
        with box.writer() as w:
            slot_id = w.add_password(password, params)
    if not args.quiet:
        _out(f"added password slot {slot_id}")
    return 0


def cmd_keys_add_recipient(args: argparse.Namespace) -> int:
    """lockbox keys add-recipient: a new recipient slot."""
    recipients = _load_recipients([args.recipient])
    with _open(args, write=True) as box, box.writer() as w:
        ids = [w.add_recipient(r) for r in recipients]
    if not args.quiet:
        for slot_id in ids:
            _out(f"added recipient slot {slot_id}")
    return 0


def cmd_keys_rm(args: argparse.Namespace) -> int:
    """lockbox keys rm: remove a key slot from both superblock slots. Not with the unlock
    agent's key: the secret given (or typed) tells which slot it opens, so that the one
    the user unlocks with is not removed by mistake."""
    with _open(args, write=True, use_agent=False) as box:
        if args.slot_id == box.info().unlocked_slot and not args.force:
            raise UsageError(f"slot {args.slot_id} is the one you unlocked with; removing it "
                             "may lock you out (use --force if another password or identity "
                             "still opens the archive)")
        with box.writer() as w:
            # The writer commits twice, so the removed slot is gone from both
            # superblock slots; the old key-directory copy is redacted.
            w.remove_slot(args.slot_id)
        if not args.compact and _stdin_tty() and not args.quiet:
            answer = input("compact the archive now, rewriting it without any freed data? "
                           "[y/N] ")
            args.compact = answer.strip().lower() in ("y", "yes")
        if args.compact:
            report = box.compact()
    if not args.quiet:
        _out(f"removed key slot {args.slot_id}")
        if args.compact:
            _out(f"compacted: {report.size_before:,} -> {report.size_after:,} bytes")
        else:
            _out("note: copies of the archive made before this change still open with the "
                 "removed key; run 'lockbox compact' to rewrite this file without any "
                 "freed data")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    """lockbox compact: rewrite the archive without garbage."""
    with _open(args, write=True) as box:
        report = box.compact()
    if not args.quiet:
        _out(f"compacted {args.archive}: {report.size_before:,} -> {report.size_after:,} "
             f"bytes ({_human(max(0, report.saved_bytes))} saved), generation "
             f"{report.generation}")
    return 0


# -- keygen ----------------------------------------------------------------------------


def _write_identity(path: str, text: str, force: bool) -> None:
    """Write a 0600 file; refuse to replace an existing one unless force."""
    if os.path.lexists(path) and not force:
        raise UsageError(f"{path} already exists (use --force to replace it)")
    # With force: a fresh temporary file renamed over the old one, so the old
    # file's (maybe wider) permissions are not kept.
    target = path
    if force:
        directory = os.path.dirname(os.path.abspath(path))
        target = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(target, path)
    except FileExistsError:
        raise UsageError(f"{path} already exists (use --force to replace it)") from None
    except OSError as e:
        raise StorageError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        if force and os.path.lexists(target):
            os.unlink(target)


def cmd_keygen(args: argparse.Namespace) -> int:
    """lockbox keygen: a new identity file, or the recipient of one."""
    import datetime as _dt

    from .formats.lbox.keys import Identity
    from .platform import default_crypto

    crypto = default_crypto()
    if args.recipient_of is not None:
        ns = argparse.Namespace(identity=args.recipient_of)
        identity = _identity(ns)
        assert identity is not None
        _out(identity.recipient(crypto).encode())
        return 0
    identity = Identity.generate(crypto)
    recipient = identity.recipient(crypto).encode()
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    text = (f"# lockbox identity (secret: keep it private), created {now}\n"
            f"# recipient: {recipient}\n"
            f"{identity.encode()}\n")
    _write_identity(args.output, text, args.force)
    _out(recipient)
    return 0


# -- the parser ------------------------------------------------------------------------

_EPILOG = """\
Run 'lockbox COMMAND --help' for the options of a command.

where secrets come from:
  Passwords are never taken from the command line. lockbox reads them from
  --password-file FILE (its first line), the LOCKBOX_PASSWORD environment
  variable, or asks on the terminal. Identities (for archives shared with
  recipients) come from --identity FILE or LOCKBOX_IDENTITY (a path).

examples:
  lockbox create photos.lbox
  lockbox add photos.lbox ~/Pictures/2024 --to pictures
  lockbox ls -l https://example.org/photos.lbox pictures
  lockbox cat photos.lbox pictures/2024/a.jpg > a.jpg
  lockbox ls -R https://example.org/photos.uri    # other formats too
  lockbox convert photos.uri photos.lbox           # or to .uri, or to a directory
  lockbox keygen -o ~/.lockbox-id          # prints your recipient
  lockbox keys add-recipient photos.lbox lockbox-recipient-1:...

exit codes: 0 ok, 2 usage, 3/4 not a (supported) archive, 5 damaged,
  6 wrong password or identity, 7 not found, 8 unsafe path (convert: entries
  left out), 9 storage error,
  10-12 HTTP source problems, 13 locked by another writer, 14 commit failed,
  15 crypto backend missing, 16 a .sync update hook failed or timed out,
  130 interrupted. Set LOCKBOX_DEBUG=1 to see tracebacks.
"""


_ADD_DESCRIPTION = """\
Add files, directories (recursively) and symlinks (kept as symlinks). Everything
is committed at once at the end; files already in the archive are replaced.

Where things go (as with rsync): a directory is stored under its own name, inside
--to DIR (default: the root of the archive); end it with '/' to add only what is
in it. With ~/Pictures/2026 holding beach.jpg:

  lockbox add photos.lbox ~/Pictures/2026               ->  2026/beach.jpg
  lockbox add photos.lbox ~/Pictures/2026 --to old      ->  old/2026/beach.jpg
  lockbox add photos.lbox ~/Pictures/2026/ --to trips   ->  trips/beach.jpg

Unlike cp -r, where the result depends on whether the destination exists, the
same command always puts things in the same place, so it can be run again to
update them.
"""


_CONVERT_DESCRIPTION = """\
Convert SRC -- an archive of any format lockbox reads, or a directory -- into DST:
a .lbox or .uri archive, or a directory. DST's extension picks the format
(--to-format forces one); an existing directory, a name ending in '/' or a name
without an extension is a directory target, which is an extraction with all its
safety rules. Archives are written to a temporary file next to DST and renamed
over it at the end: a failure leaves nothing at DST. Files are streamed (bounded
memory, whatever their size). Modes, modification times and symlinks are kept
where both formats have them. A new .lbox asks for a password as 'create' does
(see --new-password-file).

Nothing is dropped silently: what DST cannot carry is reported on stderr, one
line each -- 'note: ...' for information (modification times into .uri,
owner/group names into .lbox), 'skipping PATH: reason' for entries left out
(fifos, sockets, devices; names the format cannot hold; and, from an archive,
unsafe entries: paths or symlinks leading outside it, as extract does).

exit status: 0 every entry was converted (notes may have been printed);
  8 some entries were left out (listed on stderr), the rest was converted;
  other codes as for every command (e.g. 5: SRC is damaged; DST is not written).
"""


@cache
def _common_parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Options accepted both before and after the command name. Their defaults
    are SUPPRESS here so that a value given before the command survives. Built once: a
    parent's arguments are shared by its children, never changed."""
    quiet = _Parser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="print nothing but results and errors")
    secrets = _Parser(add_help=False)
    g = secrets.add_argument_group("secrets")
    g.add_argument("--password-file", metavar="FILE", default=argparse.SUPPRESS,
                   help="read the password from the first line of FILE "
                        "(default: LOCKBOX_PASSWORD, else ask on the terminal)")
    g.add_argument("--identity", "-i", metavar="FILE", default=argparse.SUPPRESS,
                   help="open with the identity in FILE (default: LOCKBOX_IDENTITY)")
    g.add_argument("--cache", type=_cache_limit, default=argparse.SUPPRESS, metavar="LIMIT",
                   help="decoded-page cache: auto, a size like 256M, or 0 to disable "
                        "(default: LOCKBOX_CACHE, else auto)")
    g.add_argument("--generation", type=_positive_int, default=argparse.SUPPRESS, metavar="N",
                   help="open the older commit N instead of the newest (read-only)")
    lim = secrets.add_argument_group(
        "unlock limits", "a hostile archive chooses its Argon2id cost; slots over these "
        "local limits are not tried (docs/SECURITY.md)")
    lim.add_argument("--max-argon2-memory", type=_parse_size, default=argparse.SUPPRESS,
                     metavar="SIZE", help="Argon2id memory of one password slot (default: "
                     "512M; the viewer 256M)")
    lim.add_argument("--max-argon2-time", type=_positive_int, default=argparse.SUPPRESS,
                     metavar="N", help="Argon2id passes of one password slot (default: 16)")
    lim.add_argument("--max-unlock-work", type=_parse_size, default=argparse.SUPPRESS,
                     metavar="SIZE", help="total Argon2id work of one unlock, the sum of "
                     "passes x memory over the slots tried (default: 1G)")
    lim.add_argument("--max-tree-amplification", type=_positive_int, default=argparse.SUPPRESS,
                     metavar="N", help="how much a tree's nodes may decompress, as a "
                     "multiple of the bytes read (default: 256; a zstd bomb guard)")
    return quiet, secrets


def _walk_limits(args: argparse.Namespace) -> WalkLimits | None:
    from .formats.lbox.walk import WalkLimits

    factor = getattr(args, "max_tree_amplification", None)
    return None if factor is None else WalkLimits(amplification=factor)


def _unlock_limits(args: argparse.Namespace) -> UnlockLimits | None:
    """The local unlock limits: the platform's defaults, raised or lowered by the flags."""
    from dataclasses import replace

    from .platform import default_unlock_limits

    changes: dict[str, int] = {}
    memory = getattr(args, "max_argon2_memory", None)
    if memory is not None:
        changes["max_argon2_memory_kib"] = max(1, memory // 1024)
    time_cost = getattr(args, "max_argon2_time", None)
    if time_cost is not None:
        changes["max_argon2_time_cost"] = time_cost
    work = getattr(args, "max_unlock_work", None)
    if work is not None:
        changes["max_unlock_work_kib"] = max(1, work // 1024)
    if not changes:
        return None
    return replace(default_unlock_limits(), **changes)


def _cache_limit(text: str) -> str | int:
    text = text.strip().lower()
    if text == "auto":
        return "auto"
    if text in ("0", "off", "none"):
        return 0
    try:
        return _parse_size(text)
    except (argparse.ArgumentTypeError, ValueError):
        raise argparse.ArgumentTypeError("expected 'auto', a size such as 256M, or 0") from None


def _creation_options(p: argparse.ArgumentParser) -> None:
    _when_built(p, _define_creation_options)


def _define_creation_options(p: argparse.ArgumentParser) -> None:
    from .formats.lbox.wire.constants import DEFAULT_CHUNK_SIZE

    g = p.add_argument_group("new archive")
    g.add_argument("--recipient", "-r", action="append", metavar="NAME_FILE_OR_STRING",
                   help="also let this recipient open the archive (a trusted recipient's "
                        "name from 'lockbox vault recipients', a 'lockbox-recipient-1:...' "
                        "string or a file of them; repeatable)")
    g.add_argument("--no-password", action="store_true",
                   help="no password slot (needs at least one --recipient)")
    g.add_argument("--chunk-size", type=_parse_size, default=DEFAULT_CHUNK_SIZE, metavar="N",
                   help="file chunk size, a multiple of 4K up to 4M (default: 1M)")
    _define_argon2_options(g)


def _argon2_options(g: Any) -> None:
    _when_built(g, _define_argon2_options)


def _define_argon2_options(g: Any) -> None:
    from .formats.lbox.wire.constants import DEFAULT_ARGON2_MEMORY_KIB, DEFAULT_ARGON2_TIME_COST

    g.add_argument("--argon2-memory", type=_positive_int, metavar="MiB",
                   help=f"Argon2id memory for the password slot in MiB "
                        f"(default: {DEFAULT_ARGON2_MEMORY_KIB // 1024})")
    g.add_argument("--argon2-time", type=_positive_int, metavar="N",
                   help=f"Argon2id passes (default: {DEFAULT_ARGON2_TIME_COST})")
    g.add_argument("--argon2-memory-kib", type=_positive_int, help=argparse.SUPPRESS)


# -- the parser, built lazily ------------------------------------------------------------
#
# Building every command's parser cost more than the rest of `lockbox --version` (argparse
# makes a help formatter and translates messages for every argument). So the subcommands'
# parsers are only *recorded* when build_parser() defines them, and built when argparse
# dispatches to one (or its help is asked for): a run builds the top-level parser and the
# one command it runs. tests/test_cli_args.py builds every one of them.

_RECORDED_CALLS = frozenset({"add_argument", "add_argument_group",
                             "add_mutually_exclusive_group", "set_defaults",
                             "add_subparsers", "add_parser"})


class _Recipe:
    """The definition calls made on a parser that is not built yet (or on an argument
    group or subparsers action of one), recorded and made on the real object by
    :meth:`replay`. Each call returns the recipe of its result."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: list[tuple[str, tuple[Any, ...], dict[str, Any], _Recipe]] = []

    def __getattr__(self, name: str) -> Callable[..., _Recipe]:
        if name not in _RECORDED_CALLS:
            raise AttributeError(f"{name!r}: a parser that is not built yet records only "
                                 f"{', '.join(sorted(_RECORDED_CALLS))}")

        def record(*args: Any, **kwargs: Any) -> _Recipe:
            result = _Recipe()
            self._calls.append((name, args, kwargs, result))
            return result
        return record

    def when_built(self, define: Callable[[Any], None]) -> None:
        """Call ``define(real object)`` at that point of the replay."""
        self._calls.append(("", (define,), {}, _Recipe()))

    def replay(self, target: Any) -> None:
        for name, args, kwargs, result in self._calls:
            if not name:
                args[0](target)
                continue
            made = getattr(target, name)(*args, **kwargs)
            if result._calls:
                result.replay(made)


def _when_built(target: Any, define: Callable[[Any], None]) -> None:
    """``define(target)`` now for a real parser or group, when it is built for a recorded
    one (definitions that need imports, e.g. defaults shown in the help)."""
    if isinstance(target, _Recipe):
        target.when_built(define)
    else:
        define(target)


class _PendingParser(_Recipe):
    """A subcommand's parser: its constructor arguments and recorded definition."""

    __slots__ = ("_built", "_kwargs", "_make")

    def __init__(self, make: Callable[..., argparse.ArgumentParser], kwargs: dict[str, Any]
                 ) -> None:
        super().__init__()
        self._make = make
        self._kwargs = kwargs
        self._built: argparse.ArgumentParser | None = None

    def build(self) -> argparse.ArgumentParser:
        if self._built is None:
            parser = self._make(**self._kwargs)
            self.replay(parser)
            self._built = parser
        return self._built


class _Deferred:
    """Commands another module defines (``lockbox.cli_sync.add_sync_parser(sub)``...):
    the module is imported, and its commands defined, when one of them is used or the
    command list is shown. Until then its names stand in the parser map."""

    __slots__ = ("define", "names")

    def __init__(self, names: tuple[str, ...], define: Callable[[Any], None]) -> None:
        self.names = names
        self.define = define


class _ParserMap(dict):  # type: ignore[type-arg]
    """A subparsers action's name -> parser map that builds a parser when it is looked up
    (argparse dispatches with ``map[name]``; ``in`` and iteration see the names only;
    ``values``, ``items`` and ``get`` build what they return)."""

    action: _LazySubParsersAction

    def __getitem__(self, name: str) -> Any:
        value = super().__getitem__(name)
        if isinstance(value, _Deferred):
            self.action._define(value)
            value = super().__getitem__(name)
        return value.build() if isinstance(value, _PendingParser) else value

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default

    def values(self) -> list[Any]:  # type: ignore[override]
        return [parser for _, parser in self.items()]

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        self.action._define_all()
        return [(name, self[name]) for name in list(self)]


class _LazySubParsersAction(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Subparsers whose parsers are built when used. ``add_parser`` is argparse's own
    (names, aliases, the help line of the command list) with the parser's construction
    deferred: it returns a :class:`_PendingParser` that records the definition."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._name_parser_map = self.choices = _ParserMap()
        self._name_parser_map.action = self
        self._deferred: list[_Deferred] = []

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        make = self._parser_class
        self._parser_class = lambda **kw: _PendingParser(make, kw)  # type: ignore[assignment]
        try:
            return super().add_parser(name, **kwargs)
        finally:
            self._parser_class = make

    def add_deferred(self, names: tuple[str, ...], define: Callable[[Any], None]) -> None:
        """Commands ``names`` that ``define(self)`` adds (with ``add_parser``), called when
        one of them is looked up or the command list is shown."""
        entry = _Deferred(names, define)
        for name in names:
            if name in self._name_parser_map:
                raise argparse.ArgumentError(self, f"conflicting subparser: {name}")
            dict.__setitem__(self._name_parser_map, name, entry)
        self._deferred.append(entry)

    def _define(self, entry: _Deferred) -> None:
        if entry not in self._deferred:
            return
        self._deferred.remove(entry)
        for name in entry.names:
            del self._name_parser_map[name]
        entry.define(self)
        missing = [n for n in entry.names if n not in self._name_parser_map]
        if missing:
            raise AssertionError(f"commands {missing} were announced but not defined")

    def _define_all(self) -> None:
        for entry in list(self._deferred):
            self._define(entry)

    def _get_subactions(self) -> list[argparse.Action]:
        self._define_all()  # the command list (help) shows every command's line
        return super()._get_subactions()

    def parsers(self) -> dict[str, argparse.ArgumentParser]:
        """Every parser, built (tests, completion)."""
        return dict(self._name_parser_map.items())


def _define_with(module: str, function: str) -> Callable[[Any], None]:
    """``define(sub)`` that imports ``lockbox.<module>`` and calls its ``function(sub)``."""

    def define(sub: Any) -> None:
        import importlib

        getattr(importlib.import_module(f".{module}", __package__), function)(sub)
    return define


def _help_width() -> int:
    """The help text's width as argparse computes it (``shutil.get_terminal_size()``'s
    columns, less 2: ``$COLUMNS``, else stdout's terminal, else 80), without importing
    shutil (and the compression modules it imports) for it."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns - 2


class _Parser(argparse.ArgumentParser):
    """lockbox's parsers: subparsers built lazily (:class:`_LazySubParsersAction`) and a
    help formatter given its width (argparse makes one for every argument it adds, and
    would import shutil to measure the terminal)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        formatter = kwargs.get("formatter_class", argparse.HelpFormatter)
        kwargs["formatter_class"] = partial(formatter, width=_help_width())
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _LazySubParsersAction)


class _CommandParser(_Parser):
    """The parser of one command: options may come anywhere among the positionals
    (``lockbox ls x.lbox -R dir``), and arguments left over are a usage error of THIS
    command, printed with its own usage (not the top level's).

    argparse's intermixed parsing cannot handle subparsers, so it is done one level
    down: the top-level parser finds the command as usual and hands the rest to the
    command's parser, whose ``parse_known_args`` is intermixed here. A parser that
    itself has subcommands (``env``, ``keys``) parses normally and hands on again.
    """

    _in_intermixed = False

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None,
                         ) -> tuple[argparse.Namespace, list[str]]:
        # Python 3.11/3.12's parse_known_intermixed_args calls parse_known_args twice
        # (optionals first, then positionals): those inner calls parse normally.
        if self._in_intermixed or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._in_intermixed = True
        try:
            ns, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._in_intermixed = False
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``lockbox`` command."""
    quiet, secrets = _common_parents()
    parser = _Parser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description="Encrypted archives you can read straight from a web server "
                    "(HTTP Range requests).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", default=False,
                        help="print nothing but results and errors")
    g = parser.add_argument_group("secrets")
    g.add_argument("--password-file", metavar="FILE", default=None,
                   help="read the password from the first line of FILE")
    g.add_argument("--identity", "-i", metavar="FILE", default=None,
                   help="open with the identity in FILE (default: LOCKBOX_IDENTITY)")
    g.add_argument("--cache", type=_cache_limit, default=None, metavar="LIMIT",
                   help="decoded-page cache: auto, a size like 256M, or 0 to disable "
                        "(default: LOCKBOX_CACHE, else auto)")
    sub: Any = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_CommandParser)

    both = [quiet, secrets]
    ro = "ARCHIVE may be a local file or an http(s):// URL."
    anyfmt = ("ARCHIVE may be any format lockbox reads (.lbox, .uri, .sync: recognised by its "
              "first bytes), a local file or an http(s):// URL; a password is asked only for "
              "an encrypted format.")

    def cmd(name: str, func: Callable[[argparse.Namespace], int], help: str,
            parents: list[argparse.ArgumentParser] | None = None, where: Any = sub,
            description: str | None = None, **kw: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = where.add_parser(
            name, help=help, description=description or help, parents=parents or both, **kw)
        p.set_defaults(func=func)
        return p

    p = cmd("create", cmd_create, "create a new, empty archive",
            description="Create a new, empty archive protected by a password (asked on the "
                        "terminal, or --password-file / LOCKBOX_PASSWORD) and/or recipients.")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    _creation_options(p)

    p = cmd("add", cmd_add, "add files and directories (recursively)",
            description=_ADD_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("paths", metavar="PATH", nargs="+", help="file or directory to add")
    p.add_argument("--to", default="", metavar="DIR",
                   help="directory inside the archive to add to (default: the root)")
    p.add_argument("--create", action="store_true",
                   help="create the archive first if it does not exist")
    p.add_argument("--jobs", default="auto", type=_jobs, metavar="auto|N",
                   help="processes preparing small files, this one included (default: "
                        "auto = CPUs, at most 6; 1 = no worker processes)")
    _creation_options(p)

    p = cmd("ls", cmd_ls, "list entries", description=f"List entries. {anyfmt}")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("path", metavar="PATH", nargs="?", default="",
                   help="directory (or file) in the archive (default: the root)")
    p.add_argument("-R", "--recursive", action="store_true", help="list subdirectories too")
    p.add_argument("-l", "--long", action="store_true",
                   help="show mode, size, modification time (UTC) and symlink targets")
    p.add_argument("--json", action="store_true", help="print a JSON list of entries")

    p = cmd("cat", cmd_cat, "write a file's content to stdout",
            description=f"Write a file's content to stdout. {anyfmt}")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("path", metavar="PATH")

    p = cmd("extract", cmd_extract, "extract entries to a directory",
            description="Extract everything (or the given paths with their subtrees) into "
                        "DIR, restoring modes, modification times and symlinks. Files are "
                        f"checked before they are put in place. {anyfmt}")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("paths", metavar="PATH", nargs="*", help="what to extract (default: all)")
    p.add_argument("--to", "-C", required=True, metavar="DIR",
                   help="destination directory (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("-p", "--preserve-permissions", action="store_true",
                   help="keep the archived modes as they are (default: drop setuid, setgid, "
                        "sticky and group/other write, like tar's data filter)")
    p.add_argument("--max-size", type=_parse_size, metavar="SIZE",
                   help="refuse (before writing anything) when the files total more than "
                        "SIZE, e.g. 500M or 2G")
    p.add_argument("--same-owner", action="store_true",
                   help="give entries the owner and group names the archive records (formats "
                        "that have them, e.g. .uri), when running as root, like tar's "
                        "--same-owner; otherwise they are reported, not applied")

    p = cmd("convert", cmd_convert, "convert between formats (and directories)",
            description=_CONVERT_DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="an archive of any format lockbox reads (a "
                   "local file or an http(s):// URL), or a directory")
    p.add_argument("dst", metavar="DST", help="a .lbox or .uri file, or a directory")
    p.add_argument("--to-format", choices=["lbox", "uri", "dir"], default=None,
                   help="the format of DST whatever its name")
    p.add_argument("--force", "--overwrite", dest="overwrite", action="store_true",
                   help="replace an existing DST file (a directory target: existing files)")
    p.add_argument("--new-password-file", metavar="FILE",
                   help="the password of a new .lbox: first line of FILE (default: "
                        "LOCKBOX_NEW_PASSWORD; when SRC needs no password, also "
                        "--password-file / LOCKBOX_PASSWORD; else asked twice)")
    p.add_argument("-p", "--preserve-permissions", action="store_true",
                   help="a directory target: keep the modes as they are (as for extract)")
    p.add_argument("--same-owner", action="store_true",
                   help="a directory target: apply owner/group names, as root (as for "
                        "extract)")
    p.add_argument("--max-size", type=_parse_size, metavar="SIZE",
                   help="a directory target: refuse when the files total more than SIZE")
    _creation_options(p)

    p = cmd("rm", cmd_rm, "remove entries")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("paths", metavar="PATH", nargs="+")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="remove directories with everything in them")

    p = cmd("mv", cmd_mv, "move or rename an entry",
            description="Move or rename SRC to DST; into DST if DST is a directory.")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")

    p = cmd("info", cmd_info, "show facts about the archive",
            description="Show the archive's format, sizes and entry counts; for a .lbox also "
                        f"its id, generation and key slots. {anyfmt}")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = cmd("verify", cmd_verify, "check every byte of the archive",
            description="Check every entry and every byte (a .lbox: authenticate every "
                        "structure and check every file's content hash; a .uri: every CRC). "
                        f"Exit code 0 when intact, 5 (problems on stderr) otherwise. {anyfmt}")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = cmd("recover", cmd_recover, "rebuild what a damaged archive still holds",
            description="Scan a damaged archive without trusting its header or tree: "
                        "authenticate every frame, rebuild the tree (from the newest "
                        "commit, else from surviving TOC pages, else from the data frames "
                        "alone) and report every file as complete, partial (which byte "
                        "ranges survive) or lost. With -o OUT, write the complete files, "
                        "directories, symlinks and env values into a NEW archive OUT, "
                        "protected by the same password (with the same Argon2id "
                        "parameters) or by the identity's recipient; other key slots are "
                        "not carried over. Without -o (or with --dry-run) only report. "
                        "Exit code 0 when every file is complete, 5 when some are partial "
                        "or lost (one line each). The damaged archive is never changed. "
                        f"{ro}")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="write what is complete into this new archive (must not exist)")
    p.add_argument("--dry-run", action="store_true",
                   help="only report, even with -o (the default without -o)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    env = sub.add_parser("env", help="encrypted key/value secrets stored in the archive",
                         description="Encrypted named values (API keys, configuration) "
                                     "stored in the archive.", parents=[quiet])
    esub = env.add_subparsers(dest="env_command", metavar="ACTION", required=True)
    p = cmd("set", cmd_env_set, "set a value", where=esub,
            description="Set NAME. The value comes from --from-file F, or VALUE, or else "
                        "from stdin (read to the end, bytes kept as they are: use printf, "
                        "not echo, to avoid a trailing newline; on a terminal it is asked "
                        "without echo). Warning: a VALUE on the command line is visible to "
                        "other users (ps) and kept in your shell history.")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("name", metavar="NAME")
    p.add_argument("value", metavar="VALUE", nargs="?",
                   help="the value (discouraged: visible to other users; prefer stdin)")
    p.add_argument("--from-file", metavar="F", help="read the value (raw bytes) from F")
    p = cmd("get", cmd_env_get, "print a value (raw bytes)", where=esub,
            description=f"Write the raw value of NAME to stdout. {ro}")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("name", metavar="NAME")
    p = cmd("ls", cmd_env_ls, "list names", where=esub,
            description=f"List the names of the stored values. {ro}")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("--values", action="store_true", help="also reveal the values (NAME=VALUE)")
    p = cmd("rm", cmd_env_rm, "remove a value", where=esub)
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("name", metavar="NAME")

    keys = sub.add_parser("keys", help="manage passwords and recipients (key slots)",
                          description="Manage the key slots: passwords and recipients that "
                                      "can open the archive.", parents=[quiet])
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    p = cmd("ls", cmd_keys_ls, "list key slots", where=ksub,
            description=f"List the key slots. {ro}")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = cmd("add-password", cmd_keys_add_password, "add a password slot", where=ksub,
            description="Add a password slot. The new password is asked twice on the "
                        "terminal, or read from --new-password-file or LOCKBOX_NEW_PASSWORD; "
                        "the archive is opened with the usual secrets.")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("--new-password-file", metavar="FILE",
                   help="read the new password from the first line of FILE")
    _argon2_options(p.add_argument_group("argon2id"))
    p = cmd("add-recipient", cmd_keys_add_recipient, "add a recipient slot", where=ksub,
            description="Let a recipient (see 'lockbox keygen') open the archive.")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("recipient", metavar="RECIPIENT",
                   help="a trusted recipient's name ('lockbox vault add-recipient'), a "
                        "'lockbox-recipient-1:...' string, or a file of them")
    p = cmd("rm", cmd_keys_rm, "remove a key slot", where=ksub,
            description="Remove a key slot (ids from 'lockbox keys ls'). Note: whoever "
                        "kept a copy of the archive can still open that copy with the "
                        "removed secret; the content key is not changed.")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("slot_id", metavar="SLOT_ID", type=int)
    p.add_argument("--force", action="store_true",
                   help="allow removing the slot you unlocked with")
    p.add_argument("--compact", action="store_true",
                   help="also compact the archive afterwards")

    p = cmd("compact", cmd_compact, "rewrite the archive without freed space",
            parents=[quiet],
            description="Rewrite the archive into a new file (next to it) holding only the "
                        "current commit, then atomically replace the old file. Needs free "
                        "disk space for the live data; all passwords and identities keep "
                        "working.")
    p.add_argument("archive", metavar="ARCHIVE")

    p = cmd("keygen", cmd_keygen, "create an identity (for recipient slots)", parents=[quiet],
            description="Write a new identity file (a secret, mode 0600) and print its "
                        "recipient, which you give to archive owners. With --recipient-of, "
                        "print the recipient of an existing identity file.")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("-o", "--output", metavar="FILE", help="where to write the identity")
    g.add_argument("--recipient-of", metavar="IDENTITY_FILE",
                   help="print the recipient of this identity file")
    p.add_argument("--force", action="store_true", help="replace an existing identity file")

    p = cmd("serve", cmd_serve, "serve a directory of archives (and the viewer) by HTTP Range",
            parents=[quiet],
            description="Serve the archives in DIR over HTTP with Range support, and the "
                        "browser viewer if it was built (python build.py). The server never "
                        "decrypts anything: archives are opened in the browser.")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                   "127.0.0.1; use 0.0.0.0 to serve other machines)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any free)")
    p.add_argument("--site", metavar="SITE_DIR", default=None,
                   help="the built viewer (default: $LOCKBOX_SITE, else the viewer packaged with "
                        "lockbox_server, else dist/site of this checkout)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="let pages of ORIGIN fetch the archives (CORS); repeatable; '*' = any")
    p.add_argument("--isolate", action="store_true",
                   help="serve the viewer cross-origin isolated (COOP/COEP headers)")
    p.add_argument("--snap-store", metavar="STORE_DIR", default=None,
                   help="also serve this snapdir store under /snap/ (plain GETs of its layout: "
                        "lockbox snap pull ID --store http://HOST:PORT/snap/)")
    p.add_argument("--push-token-file", metavar="FILE", default=None,
                   help="accept pushes to --snap-store from clients that send this file's "
                        "token (Authorization: Bearer); without it, pushes are refused")
    p.add_argument("--max-push-size", type=_parse_size, default=None, metavar="SIZE",
                   help="largest pack one push may send (default: 16G)")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="server processes sharing the port (default: $LOCKBOX_SERVE_WORKERS, "
                        "else one per core, at most 8)")

    p = cmd("mount", cmd_mount, "serve an archive or a sync store over WebDAV (file managers)",
            parents=[quiet],
            description="Serve TARGET over WebDAV, for file managers and WebDAV clients "
                        "(rclone, cadaver, davfs2, Finder, Explorer): any archive file or URL "
                        "read-only; a .lbox with --writable; a .sync file (its payload); a "
                        "directory of .sync files (a sync store; writable with --writable); a "
                        "snapdir snapshot STORE_URI#id=ID. docs/MOUNT.md.")
    p.add_argument("archive", metavar="TARGET")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                   "127.0.0.1; any other needs --user and --password-file)")
    p.add_argument("--port", type=int, default=4918, help="port (default: 4918; 0: any free)")
    p.add_argument("--writable", action="store_true",
                   help="allow changes (a .lbox archive or a directory of .sync files)")
    p.add_argument("--user", metavar="NAME", help="require HTTP basic auth as NAME")
    p.add_argument("--password-file", metavar="FILE",
                   help="the WebDAV password of --user (first line of FILE)")
    g = p.add_argument_group("archive secrets")
    g.add_argument("--archive-password-file", metavar="FILE",
                   help="read the archive's password from the first line of FILE "
                        "(default: LOCKBOX_PASSWORD, else ask on the terminal)")
    g.add_argument("--identity", "-i", metavar="FILE",
                   help="open with the identity in FILE (default: LOCKBOX_IDENTITY)")

    # Commands defined in their own modules (which build on this module's helpers), each
    # imported only when one of its commands runs or the command list is shown:
    # `lockbox sync ACTION`: .sync containers (sync-rs); `lockbox snap ACTION`: snapdir
    # snapshots, stores and SNAPPACK; `lockbox share`: a link slot and its viewer link;
    # `lockbox vault` / `lockbox agent`: the local identities store, trusted recipients and
    # the unlock agent (docs/VAULT.md).
    sub.add_deferred(("sync",), _define_with("cli_sync", "add_sync_parser"))
    sub.add_deferred(("snap",), _define_with("cli_snap", "add_snap_parser"))
    sub.add_deferred(("share",), _define_with("cli_share", "add_share_parser"))
    sub.add_deferred(("vault",), _define_with("cli_vault", "add_vault_parser"))
    sub.add_deferred(("agent",), _define_with("cli_vault", "add_agent_parser"))
    return parser


def _default_site() -> str | None:
    """$LOCKBOX_SITE, else the viewer packaged with lockbox_server, else this checkout's
    dist/site (``lockbox_server.default_site_dir``)."""
    try:
        import lockbox_server
    except ImportError:
        return None
    return lockbox_server.default_site_dir()


SERVE_LIST_LIMIT = 10  # archive URLs shown when the server starts


def _serve_banner(directory: str, url: str, site: str | None) -> list[str]:
    """What `lockbox serve` prints once it listens: where, the viewer, the archives."""
    import lockbox_server

    lines = [f"serving {directory} at {url} (Ctrl-C to stop)"]
    if site:
        lines.append(f"  viewer:   {url}")
    else:
        lines.append(f"  viewer:   not built (python build.py); {url} lists the archives")
    archive_urls = getattr(lockbox_server, "archive_urls", None)
    if archive_urls is None:  # an older lockbox_server: no listing
        return lines
    try:
        shown, total = archive_urls(directory, url, limit=SERVE_LIST_LIMIT)
    except OSError as e:
        lines.append(f"  archives: cannot list {directory}: {e.strerror or e}")
        return lines
    if not total:
        lines.append(f"  archives: none yet (.lbox files put in {directory} are served "
                     "as they appear)")
        return lines
    lines.append(f"  archives: {total}")
    lines.extend(f"    {u}" for u in shown)
    if total > len(shown):
        lines.append(f"    \u2026 and {total - len(shown)} more")
    return lines


def cmd_serve(args: argparse.Namespace) -> int:
    """lockbox serve: the range server (package lockbox_server)."""
    try:
        from lockbox_server import serve
    except ImportError:
        raise UsageError("the server is not installed (pip install 'lockbox[server]')") from None
    site = args.site if args.site is not None else _default_site()
    snap: dict[str, Any] = {}
    if args.snap_store is None and (args.push_token_file or args.max_push_size):
        raise UsageError("--push-token-file and --max-push-size need --snap-store DIR")
    if args.snap_store is not None:
        from lockbox_server.snapstore import TokenFileError, read_push_token

        if not os.path.isdir(args.snap_store):
            raise UsageError(f"cannot serve --snap-store {args.snap_store}: not a directory")
        snap["snap_store"] = args.snap_store
        if args.max_push_size:
            snap["max_pack_size"] = args.max_push_size
        if args.push_token_file is not None:
            try:
                snap["push_token"], warning = read_push_token(args.push_token_file)
            except TokenFileError as e:
                raise UsageError(str(e)) from None
            if warning:
                _err(f"warning: {warning}")

    if args.workers is None:
        from lockbox_server.runner import default_workers

        try:
            default_workers()  # a bad $LOCKBOX_SERVE_WORKERS: one line, before binding
        except ValueError as e:
            raise UsageError(str(e)) from None

    def ready(url: str) -> None:
        if not args.quiet:
            for line in _serve_banner(args.directory, url, site):
                _out(line)
            if args.snap_store is not None:
                pushes = ("on (bearer token)" if "push_token" in snap
                          else "off (no --push-token-file)")
                _out(f"  snap store: {args.snap_store} at {url}snap/ (pushes {pushes})")
            sys.stdout.flush()

    try:
        serve(args.directory, host=args.host, port=args.port, site_dir=site,
              allowed_origins=args.allow_origin, ready=ready, isolate=args.isolate,
              workers=args.workers, **snap)
    except KeyboardInterrupt:  # Ctrl-C is how the server is stopped: not an error
        return 0
    except (FileNotFoundError, NotADirectoryError) as e:
        raise UsageError(f"cannot serve {args.directory}: {e.strerror or e}") from None
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise StorageError(f"port {args.port} is busy: use --port N (or stop the other "
                               "server)") from None
        if e.strerror:
            raise StorageError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from e
        raise StorageError(str(e) or f"cannot listen on {args.host}:{args.port}") from e
    return 0


def _mount_banner(target: str, url: str, writable: bool) -> list[str]:
    mode = "writable" if writable else "read-only"
    return [f"mounted {target} at {url} ({mode}; Ctrl-C to stop)",
            f"  rclone:   rclone mount ':webdav,url={url}:' ~/mnt   (or rclone copy/sync)",
            f"  cadaver:  cadaver {url}",
            f"  davfs2:   sudo mount -t davfs {url} /mnt/lockbox",
            f"  macOS:    Finder > Go > Connect to Server > {url}",
            f"  Windows:  net use * {url}"]


def cmd_mount(args: argparse.Namespace) -> int:
    """lockbox mount: WebDAV over an archive or a sync store (lockbox_server.mount)."""
    from .facade import Archive, probe
    from .registry import is_special_location
    from .sources import is_url, open_source

    if args.password_file and not args.user:
        raise UsageError("--password-file is the WebDAV password of --user NAME; the "
                         "archive's password: --archive-password-file FILE or LOCKBOX_PASSWORD")
    auth = None
    if args.user:
        if not args.password_file:
            raise UsageError("--user needs --password-file FILE (the WebDAV password)")
        auth = (args.user, _read_secret_line(args.password_file, "password"))
    try:
        from lockbox_server.mount import check_binding, make_mount_app, run_mount
    except ImportError:
        raise UsageError("the server is not installed (pip install 'lockbox[server]')") from None
    warning = check_binding(args.host, auth)
    if args.writable and is_url(args.archive):
        raise UsageError("an archive on a web server mounts read-only; download it to "
                         "change it")
    ns = argparse.Namespace(**vars(args))
    ns.password_file = args.archive_password_file
    location: str = args.archive
    target: Any = location
    secrets: dict[str, Any] = {}
    local_dir = not is_url(location) and not is_special_location(location) and \
        os.path.isdir(location)
    fmt = None
    known = None
    if not local_dir and not is_special_location(location):
        source = open_source(location)  # a missing file is reported before any prompt
        try:
            probed = probe(source)
            fmt = probed.spec.name
            if fmt == "lbox" and args.writable and _password(ns) is None and \
                    _identity(ns) is None:
                known = _agent_lookup(source, probed)  # before prompting
        finally:
            source.close()

    def mount_app() -> Any:
        return make_mount_app(target, writable=args.writable, auth=auth, verbose=0,
                              **secrets)

    if fmt == "lbox" and args.writable:
        secrets = {"password": _password(ns), "identity": _identity(ns)}
        app = None
        if known is not None:
            secrets = {"known_key": known}
            try:
                app = mount_app()
            except WrongKeyError:  # the archive's key changed since: ask
                secrets = {"password": None, "identity": None}
        if app is None:
            if secrets["password"] is None and secrets["identity"] is None:
                if not _stdin_tty():
                    raise UsageError(NO_SECRET)
                secrets["password"] = _prompt(f"Password for {os.path.basename(location)}: ")
            app = mount_app()
            for provider in app.provider_map.values():
                _agent_remember(getattr(provider, "box", None))
    else:
        if fmt == "sync":
            secrets = {"password": _password(ns)}
        elif not local_dir and not args.writable:
            target = _open_any(ns)  # asks for a password (or the agent) like the other verbs
        try:
            app = mount_app()
        except BaseException:
            if isinstance(target, Archive):
                target.close()
            raise
    if warning:
        _err(warning)

    def ready(url: str) -> None:
        if not args.quiet:
            for line in _mount_banner(location, url, args.writable):
                _out(line)
        sys.stdout.flush()

    try:
        run_mount(app, host=args.host, port=args.port, ready=ready)
    except KeyboardInterrupt:  # Ctrl-C is how the mount is stopped: not an error
        return 0
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise StorageError(f"port {args.port} is busy: use --port N (or stop the other "
                               "server)") from None
        raise StorageError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}"
                           ) from e
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    debug = os.environ.get("LOCKBOX_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except LockboxError as e:
        if debug:
            _print_traceback()
        _err(str(e) or type(e).__name__)
        return e.exit_code
    except KeyboardInterrupt:
        if debug:
            _print_traceback()
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as e:
        if debug:
            _print_traceback()
        where = f"{e.filename}: " if e.filename else ""
        _err(f"{where}{e.strerror or e}")
        return EXIT_OS_ERROR


def _print_traceback() -> None:
    import traceback

    traceback.print_exc()


_GC_THRESHOLD = 100_000  # see run()


def run() -> NoReturn:
    """The ``lockbox`` program (``python -m lockbox``): :func:`main` on ``sys.argv``, then
    the process ends with its exit code.

    Without the interpreter's teardown when that is safe: freeing every module of an
    archive command costs ~10 ms, nothing of which is observable. What the teardown
    would do that matters is done first: the atexit handlers run (a worker pool's
    children joined, temporary files removed, logs flushed) and stdout/stderr are
    flushed. A thread left running (not a daemon) is waited for as usual: the ordinary
    exit is taken then, and when a flush fails (its error reported as Python does).
    Everything a command writes that must survive is closed, and fsynced when it has to
    be, before :func:`main` returns; this changes none of it.

    The cyclic collector runs its youngest generation every 100,000 allocations instead
    of 700: importing an archive command's modules (~230) made it run some 50 times
    for nothing (~5 ms of a small ``add``); cyclic garbage is still collected.
    """
    _, *older = gc.get_threshold()
    gc.set_threshold(_GC_THRESHOLD, *older)
    code = main()
    _exit_now(code)


def _exit_now(code: int) -> NoReturn:
    import atexit
    import threading

    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    main_thread = threading.main_thread()
    if run_exitfuncs is None or any(t is not main_thread and not t.daemon and t.is_alive()
                                    for t in threading.enumerate()):
        sys.exit(code)
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            sys.exit(code)  # the ordinary exit reports it (and its code)
    os._exit(code)


if __name__ == "__main__":
    run()
