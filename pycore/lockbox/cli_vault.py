"""``lockbox vault ...`` and ``lockbox agent ...``: the local vault and the unlock agent on
the command line (docs/VAULT.md).

``add_vault_parser(sub)`` and ``add_agent_parser(sub)`` add the two command groups to the
top-level subparsers of :func:`lockbox.cli.build_parser`; each ``cmd_*`` function runs
one action. Errors are raised as ``lockbox.errors`` classes and reported by
:func:`lockbox.cli.main` (one line, the class's exit code).

Secrets never come from argv: the vault's passphrase is read from ``--passphrase-file``
(its first line), the ``LOCKBOX_VAULT_PASSPHRASE`` environment variable, or asked on the
terminal (twice for a new vault).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from . import cli as _cli
from .cli import _common_parents, _err, _file_or_env_secret, _out, _out_json
from .errors import FormatError, UsageError, WrongKeyError

__all__ = ["add_vault_parser", "add_agent_parser", "PASSPHRASE_ENV", "parse_ttl",
           "cmd_vault_init", "cmd_vault_add_identity", "cmd_vault_list", "cmd_vault_export",
           "cmd_vault_rm", "cmd_vault_add_recipient", "cmd_vault_recipients",
           "cmd_vault_rm_recipient", "cmd_agent_start", "cmd_agent_stop", "cmd_agent_lock",
           "cmd_agent_status", "cmd_vault_backup_keys", "cmd_vault_restore_keys"]

PASSPHRASE_ENV = "LOCKBOX_VAULT_PASSPHRASE"
PROMPT_ATTEMPTS = 3


# -- secrets -------------------------------------------------------------------------------


def _given_passphrase(args: argparse.Namespace) -> str | None:
    """The passphrase from --passphrase-file or LOCKBOX_VAULT_PASSPHRASE (never argv)."""
    return _file_or_env_secret(getattr(args, "passphrase_file", None), PASSPHRASE_ENV,
                               "passphrase")


def _no_terminal() -> UsageError:
    return UsageError("the vault needs its passphrase and there is no terminal to ask on: "
                      f"use --passphrase-file FILE or the {PASSPHRASE_ENV} environment "
                      "variable")


def _new_passphrase(args: argparse.Namespace) -> str:
    given = _given_passphrase(args)
    if given is not None:
        return given
    if not _cli._stdin_tty():
        raise _no_terminal()
    first = _cli._prompt("Passphrase for the new vault: ")
    if not first:
        raise UsageError("the passphrase is empty")
    if _cli._prompt("Repeat the passphrase: ") != first:
        raise UsageError("the passphrases do not match")
    return first


def _scrypt_work(args: argparse.Namespace) -> int:
    """``--scrypt-log-n``, else the default work factor of a new vault."""
    from .formats.sync.vault import DEFAULT_SCRYPT_LOG_N

    return int(args.scrypt_log_n) if args.scrypt_log_n is not None else DEFAULT_SCRYPT_LOG_N


def _open_vault(args: argparse.Namespace) -> Any:
    """The vault, opened with the given passphrase or up to three typed ones."""
    from .formats.sync.vault import DEFAULT_MAX_SCRYPT_LOG_N
    from .vault.store import Vault

    directory = getattr(args, "vault_dir", None)
    limit = getattr(args, "max_scrypt_log_n", None) or DEFAULT_MAX_SCRYPT_LOG_N

    def attempt(passphrase: str) -> Any:
        return Vault.open(passphrase, directory=directory, max_scrypt_log_n=limit)

    given = _given_passphrase(args)
    if given is not None:
        return attempt(given)
    if not Vault.exists(directory):
        return attempt("")  # the "no vault: lockbox vault init" error, before any prompt
    if not _cli._stdin_tty():
        raise _no_terminal()
    for n in range(1, PROMPT_ATTEMPTS + 1):
        try:
            return attempt(_cli._prompt("Vault passphrase: "))
        except WrongKeyError:
            if n == PROMPT_ATTEMPTS:
                raise
            _err("wrong passphrase, try again")
    raise AssertionError("unreachable")


def _quiet(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "quiet", False))


# -- lockbox vault ---------------------------------------------------------------------------


def cmd_vault_init(args: argparse.Namespace) -> int:
    """lockbox vault init: a new, empty identities store."""
    from .vault.store import Vault

    if Vault.exists(args.vault_dir):  # before asking for a passphrase
        raise UsageError(f"a vault exists already at {Vault.file_path(args.vault_dir)}: it "
                         "is kept as it is")
    vault = Vault.create(_new_passphrase(args), directory=args.vault_dir,
                         scrypt_log_n=_scrypt_work(args))
    if not _quiet(args):
        _out(f"created the vault {vault.path}")
    return 0


def cmd_vault_add_identity(args: argparse.Namespace) -> int:
    """lockbox vault add-identity NAME [--from FILE]: store a new (or an existing)
    identity; prints its recipient (public)."""
    from .formats.lbox.keys import Identity
    from .platform import default_crypto
    from .vault.names import check_name

    check_name(args.name, "identity name")
    identity = None
    if args.from_file:
        try:
            with open(args.from_file, encoding="utf-8") as f:
                identity = Identity.decode(f.read(64 * 1024))
        except OSError as e:
            raise UsageError(f"cannot read identity file {args.from_file}: "
                             f"{e.strerror or e}") from e
        except (UnicodeDecodeError, FormatError) as e:
            raise UsageError(f"{args.from_file}: not a lockbox identity file ({e})") from None
    vault = _open_vault(args)
    identity = vault.add_identity(args.name, identity)
    if not _quiet(args):
        _err(f"added identity {args.name!r}; its recipient:")
    _out(identity.recipient(default_crypto()).encode())
    return 0


def cmd_vault_list(args: argparse.Namespace) -> int:
    """lockbox vault list: names, recipient fingerprints (display only), creation times."""
    infos = _open_vault(args).list()
    if args.json:
        _out_json([{"name": i.name, "fingerprint": i.fingerprint, "created": i.created}
                   for i in infos])
        return 0
    for i in infos:
        _out(f"{i.name}  {i.fingerprint}  {i.created}")
    if not infos and not _quiet(args):
        _err("the vault holds no identity (lockbox vault add-identity NAME)")
    return 0


def cmd_vault_export(args: argparse.Namespace) -> int:
    """lockbox vault export NAME [--recipient]: the identity's text (a secret), or its
    recipient (public)."""
    vault = _open_vault(args)
    _out(vault.recipient(args.name) if args.recipient else vault.export(args.name))
    return 0


def cmd_vault_rm(args: argparse.Namespace) -> int:
    """lockbox vault rm NAME: forget an identity."""
    _open_vault(args).remove(args.name)
    if not _quiet(args):
        _out(f"removed identity {args.name!r}")
    return 0


def _recipient_text(value: str) -> str:
    """A recipient string, or the first recipient line of the file ``value``."""
    from .formats.lbox.keys import RECIPIENT_PREFIX

    if value.strip().startswith(RECIPIENT_PREFIX):
        return value
    try:
        with open(value, encoding="utf-8") as f:
            text = f.read(64 * 1024)
    except OSError as e:
        raise UsageError(f"{value!r} is neither a recipient (lockbox-recipient-1:...) nor a "
                         f"readable file: {e.strerror or e}") from e
    except UnicodeDecodeError:
        raise UsageError(f"{value} is not a recipient file") from None
    for line in text.splitlines():
        if line.strip().startswith(RECIPIENT_PREFIX):
            return line
    raise UsageError(f"{value} holds no recipient line (lockbox-recipient-1:...)")


def cmd_vault_add_recipient(args: argparse.Namespace) -> int:
    """lockbox vault add-recipient NAME RECIPIENT|FILE [--replace]."""
    from .vault.recipients import RecipientBook

    text = _recipient_text(args.recipient)
    recipient = RecipientBook(args.vault_dir).add(args.name, text, replace=args.replace)
    if not _quiet(args):
        _out(f"trusted recipient {args.name!r} ({recipient.fingerprint.hex()})")
    return 0


def cmd_vault_recipients(args: argparse.Namespace) -> int:
    """lockbox vault recipients: the trusted recipients (names and fingerprints)."""
    from .vault.recipients import RecipientBook

    book = RecipientBook(args.vault_dir).list()
    if args.json:
        _out_json([{"name": n, "fingerprint": r.fingerprint.hex(), "recipient": r.encode()}
                   for n, r in book])
        return 0
    for name, recipient in book:
        _out(f"{name}  {recipient.fingerprint.hex()}")
    return 0


def cmd_vault_rm_recipient(args: argparse.Namespace) -> int:
    """lockbox vault rm-recipient NAME."""
    from .vault.recipients import RecipientBook

    RecipientBook(args.vault_dir).remove(args.name)
    if not _quiet(args):
        _out(f"removed trusted recipient {args.name!r}")
    return 0


# -- lockbox agent ---------------------------------------------------------------------------


_TTL = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd]?)")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    """``900``, ``90s``, ``15m``, ``2h``, ``1d`` -> seconds (argparse type)."""
    from .vault.protocol import MAX_TTL

    match = _TTL.fullmatch(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 900, 15m, 2h)")
    seconds = float(match.group(1)) * _TTL_UNITS[match.group(2)]
    if not 1 <= seconds <= MAX_TTL:
        raise argparse.ArgumentTypeError(f"a TTL is between 1 second and {MAX_TTL // 86400} "
                                         "days")
    return seconds


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s % 3600 == 0:
        return f"{s // 3600} h"
    if s % 60 == 0:
        return f"{s // 60} min"
    return f"{s} s"


def cmd_agent_start(args: argparse.Namespace) -> int:
    """lockbox agent start [--ttl T]: a detached agent."""
    from .vault.agent_client import start_agent
    from .vault.protocol import DEFAULT_TTL

    ttl = args.ttl if args.ttl is not None else float(DEFAULT_TTL)
    status = start_agent(ttl, socket_path=args.socket)
    if not _quiet(args):
        _out(f"unlock agent started (pid {status.pid}) on {status.socket_path}; keys are "
             f"kept {_duration(status.ttl)}")
    return 0


def cmd_agent_stop(args: argparse.Namespace) -> int:
    """lockbox agent stop: the agent forgets every key and exits."""
    from .vault.agent_client import agent_stop

    stopped = agent_stop(socket_path=args.socket)
    if not _quiet(args):
        _out("unlock agent stopped" if stopped else "no unlock agent is running")
    return 0


def cmd_agent_lock(args: argparse.Namespace) -> int:
    """lockbox agent lock: the agent forgets every key (and keeps running)."""
    from .vault.agent_client import agent_lock

    count = agent_lock(socket_path=args.socket)
    if not _quiet(args):
        _out("no unlock agent is running" if count is None else
             f"the unlock agent forgot {count} key{'s' if count != 1 else ''}")
    return 0


def cmd_agent_status(args: argparse.Namespace) -> int:
    """lockbox agent status: running or not, how many keys, the TTL (never a key).
    Exit status 1 when no agent runs."""
    from .vault.agent_client import agent_status
    from .vault.paths import agent_socket_path

    status = agent_status(socket_path=args.socket)
    if args.json:
        _out_json(None if status is None else {
            "socket": status.socket_path, "pid": status.pid, "keys": status.keys,
            "ttl": status.ttl, "hardening": list(status.hardening)})
    elif status is None:
        _out(f"no unlock agent is running ({args.socket or agent_socket_path()})")
    else:
        _out(f"unlock agent running (pid {status.pid}) on {status.socket_path}: "
             f"{status.keys} key{'s' if status.keys != 1 else ''}, kept "
             f"{_duration(status.ttl)} each")
    return 0 if status is not None else 1


# -- parsers ---------------------------------------------------------------------------------


_VAULT_DESCRIPTION = """\
The local vault: private identities encrypted under a passphrase (an age file,
identities.age), and an address book of trusted recipients (recipients.toml), in
$LOCKBOX_VAULT_DIR, else $XDG_DATA_HOME/lockbox/vault, else ~/.local/share/lockbox/vault
(a 0700 directory). The passphrase: --passphrase-file FILE, LOCKBOX_VAULT_PASSPHRASE,
else asked on the terminal. docs/VAULT.md."""

_AGENT_DESCRIPTION = """\
The unlock agent keeps the content keys of archives you opened in memory for a while
(--ttl, default 15 min), so that the password is typed once per session. It listens on
$LOCKBOX_AGENT_SOCK, else $XDG_RUNTIME_DIR/lockbox/agent.sock, else
/tmp/lockbox-UID/agent.sock (0600, in a 0700 directory); other users cannot connect.
'lock' forgets every key, 'stop' forgets them and exits. docs/VAULT.md."""


def _subcommands(group: argparse.ArgumentParser, dest: str, parents: list[Any]) -> Callable[
        ..., argparse.ArgumentParser]:
    actions = group.add_subparsers(dest=dest, metavar="ACTION", required=True)

    def cmd(name: str, func: Callable[[argparse.Namespace], int], help: str,
            description: str | None = None,
            more: tuple[argparse.ArgumentParser, ...] = ()) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(
            name, help=help, description=description or help, parents=[*parents, *more])
        p.set_defaults(func=func)
        return p
    return cmd


def add_vault_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``lockbox vault ACTION ...`` to the top-level subparsers ``sub``. Nothing of
    the vault is imported here: the parser is built for every command."""
    quiet, _ = _common_parents()
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--vault-dir", metavar="DIR", default=None,
                       help="the vault directory (default: LOCKBOX_VAULT_DIR, else "
                            "$XDG_DATA_HOME/lockbox/vault, else ~/.local/share/lockbox/vault)")
    secret = argparse.ArgumentParser(add_help=False)
    secret.add_argument("--passphrase-file", metavar="FILE",
                        help=f"the vault's passphrase: the first line of FILE (default: "
                             f"{PASSPHRASE_ENV}, else asked on the terminal)")
    secret.add_argument("--max-scrypt-log-n", type=_scrypt_log_n, default=None, metavar="N",
                        help="open a vault whose passphrase costs up to 2^N scrypt work "
                             "(default: 20, 1 GiB of memory)")
    group: argparse.ArgumentParser = sub.add_parser(
        "vault", help="the local vault: identities and trusted recipients",
        description=_VAULT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[quiet])
    cmd = _subcommands(group, "vault_command", [quiet, where])

    p = cmd("init", cmd_vault_init, "create the vault (asks for a new passphrase)")
    p.add_argument("--passphrase-file", metavar="FILE",
                   help=f"the new passphrase: the first line of FILE (default: "
                        f"{PASSPHRASE_ENV}, else asked twice on the terminal)")
    p.add_argument("--scrypt-log-n", type=_scrypt_log_n, default=None,
                   metavar="N", help="the passphrase's scrypt work, 2^N (default: 18, "
                                     "as age; at most 20)")

    p = cmd("add-identity", cmd_vault_add_identity,
            "store a new identity (or --from FILE) under NAME; prints its recipient",
            more=(secret,))
    p.add_argument("name", metavar="NAME")
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="store the identity in FILE instead of making a new one")

    p = cmd("list", cmd_vault_list, "list the identities (names and fingerprints)",
            more=(secret,))
    p.add_argument("--json", action="store_true", help="print JSON")

    p = cmd("export", cmd_vault_export,
            "print an identity (a secret: LOCKBOX-IDENTITY-1:...) or, with --recipient, "
            "its recipient", more=(secret,))
    p.add_argument("name", metavar="NAME")
    p.add_argument("--recipient", action="store_true",
                   help="print the identity's recipient (public) instead")

    p = cmd("rm", cmd_vault_rm, "forget an identity", more=(secret,))
    p.add_argument("name", metavar="NAME")

    p = cmd("add-recipient", cmd_vault_add_recipient,
            "trust a recipient under NAME (for keys add-recipient NAME)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("recipient", metavar="RECIPIENT",
                   help="a lockbox-recipient-1:... string, or a file holding one")
    p.add_argument("--replace", action="store_true", help="replace a recipient of that name")

    p = cmd("recipients", cmd_vault_recipients, "list the trusted recipients")
    p.add_argument("--json", action="store_true", help="print JSON (with the recipients)")

    p = cmd("rm-recipient", cmd_vault_rm_recipient, "forget a trusted recipient")
    p.add_argument("name", metavar="NAME")

    p = cmd("backup-keys", cmd_vault_backup_keys,
            "save ARCHIVE's key directory in the vault (cleartext; no secret needed)")
    p.add_argument("archive", metavar="ARCHIVE")

    _, archive_secrets = _common_parents()
    p = cmd("restore-keys", cmd_vault_restore_keys,
            "write a backed-up key directory into ARCHIVE, whose own is damaged (needs a "
            "secret the backup's key slots take)", more=(archive_secrets,))
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("--backup", metavar="FILE", default=None,
                   help="this backup file (default: the vault's newest for the archive)")
    p.add_argument("--dry-run", action="store_true",
                   help="check that the backup opens the archive; write nothing")
    return group


# -- key-directory backups -------------------------------------------------------------


def cmd_vault_backup_keys(args: argparse.Namespace) -> int:
    """Save ARCHIVE's key directory (cleartext, no secret needed) in the vault."""
    from .formats.lbox.keybackup import backup_keydir

    backup, path, created = backup_keydir(args.archive, args.vault_dir)
    what = "saved" if created else "already saved"
    _out(f"{what}: the key directory of generation {backup.generation} of {args.archive} "
         f"(archive {backup.archive_id.hex()}, sha256 {backup.sha256.hex()[:16]}) in {path}")
    return 0


def _archive_secret(args: argparse.Namespace) -> tuple[str | None, Any]:
    """The archive's password or identity: the usual files and variables, else the
    password asked on the terminal."""
    password, identity = _cli._password(args), _cli._identity(args)
    if password is None and identity is None:
        import getpass
        import sys

        if not sys.stdin.isatty():
            raise UsageError("no secret for the archive: give --password-file FILE or "
                             "--identity FILE (or LOCKBOX_PASSWORD / LOCKBOX_IDENTITY)")
        password = getpass.getpass("Archive password: ")
    return password, identity


def cmd_vault_restore_keys(args: argparse.Namespace) -> int:
    """Write a backed-up key directory into ARCHIVE in place of its damaged one."""
    from .formats.lbox.keybackup import (
        archive_ids,
        keydir_backups,
        read_keydir_backup,
        restore_keydir,
    )

    if args.backup is not None:
        backup = read_keydir_backup(args.backup)
    else:
        ids = archive_ids(args.archive)
        if len(ids) != 1:
            raise UsageError(f"cannot tell which archive {args.archive} is (its superblock "
                             "names no single archive id): give --backup FILE")
        (archive_id,) = ids
        found = keydir_backups(archive_id, args.vault_dir)
        if not found:
            raise UsageError(f"no key-directory backup of archive {archive_id.hex()} in the "
                             "vault (lockbox vault backup-keys makes one): give --backup FILE")
        path, backup = found[0]
        if not _quiet(args):
            _out(f"using {path}")
    password, identity = _archive_secret(args)
    report = restore_keydir(args.archive, backup, password=password, identity=identity,
                            limits=_cli._unlock_limits(args), dry_run=args.dry_run,
                            warn=lambda m: _err(f"warning: {m}"))
    if report.generation is None:
        _out(f"dry run: the backup of generation {report.backup_generation} opens generation "
             f"{report.based_on} of {args.archive} ({report.key_slots} key slots); nothing "
             "written")
    else:
        _out(f"restored the key directory of generation {report.backup_generation} "
             f"({report.key_slots} key slots) into {args.archive}: now generation "
             f"{report.generation}")
    return 0


def _scrypt_log_n(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 40:
        raise argparse.ArgumentTypeError("N is between 1 and 40")
    return value


def add_agent_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``lockbox agent ACTION ...`` to the top-level subparsers ``sub`` (imports
    nothing of the agent: the parser is built for every command)."""
    quiet, _ = _common_parents()
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--socket", metavar="PATH", default=None,
                       help="the agent's socket (default: LOCKBOX_AGENT_SOCK, else "
                            "$XDG_RUNTIME_DIR/lockbox/agent.sock, else "
                            "/tmp/lockbox-UID/agent.sock)")
    group: argparse.ArgumentParser = sub.add_parser(
        "agent", help="the unlock agent: type a password once per session",
        description=_AGENT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[quiet])
    cmd = _subcommands(group, "agent_command", [quiet, where])
    p = cmd("start", cmd_agent_start, "start the agent (detached)")
    p.add_argument("--ttl", type=parse_ttl, default=None, metavar="T",
                   help="how long a key is kept: seconds, or 90s, 15m, 2h, 1d (default: 15m)")
    cmd("stop", cmd_agent_stop, "forget every key and stop the agent")
    cmd("lock", cmd_agent_lock, "forget every key (the agent keeps running)")
    p = cmd("status", cmd_agent_status,
            "is an agent running, how many keys it holds (exit status 1: none)")
    p.add_argument("--json", action="store_true", help="print JSON (null: no agent)")
    return group
