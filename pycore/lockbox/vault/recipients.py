"""The trusted-recipients address book: a name for each ``lockbox-recipient-1:`` string.

Recipients are public keys, so the book is not encrypted; it is a TOML file,
``recipients.toml`` in the vault directory, 0600 like everything there, because what it
must keep is its *integrity*: a swapped entry would make ``keys add-recipient NAME``
give the archive's key to someone else. It is read only when it is a regular file owned
by this user and private (never through a symlink), and every value is decoded strictly
(:meth:`lockbox.formats.lbox.keys.Recipient.decode`)::

    # lockbox trusted recipients: name = "lockbox-recipient-1:..."
    [recipients]
    "alice" = "lockbox-recipient-1:..."

Changes are written atomically under the vault's lock.
"""

from __future__ import annotations

import json
import os
import tomllib

from ..errors import FormatError, NotFoundError, UsageError
from ..fileio import write_atomically
from ..formats.lbox.keys import Recipient
from .names import NAME_PATTERN, check_name
from .paths import dir_lock, read_private_file, vault_dir

__all__ = ["RecipientBook", "RECIPIENTS_FILE", "MAX_RECIPIENTS_FILE_SIZE", "trusted_recipient"]

RECIPIENTS_FILE = "recipients.toml"
MAX_RECIPIENTS_FILE_SIZE = 4 * 1024 * 1024  # a recipient is 2,111 characters: ~1,900 of them
_HEADER = "# lockbox trusted recipients: name = \"lockbox-recipient-1:...\"\n"


def _decode(data: bytes, path: str) -> dict[str, Recipient]:
    where = f"the recipients file {path}"
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise FormatError(f"{where} is not valid TOML: {e}") from None
    table = doc.get("recipients", {})
    extra = sorted(set(doc) - {"recipients"})
    if extra or not isinstance(table, dict):
        raise FormatError(f"{where}: expected only a [recipients] table of name = "
                          "\"lockbox-recipient-1:...\"")
    out: dict[str, Recipient] = {}
    for name, text in table.items():
        try:
            check_name(name, "recipient name")
        except UsageError as e:
            raise FormatError(f"{where}: {e}") from None
        if not isinstance(text, str):
            raise FormatError(f"{where}: the value of {name!r} is not a recipient string")
        try:
            out[name] = Recipient.decode(text)
        except FormatError as e:
            raise FormatError(f"{where}: {name!r}: {e}") from None
    return out


def _encode(book: dict[str, Recipient]) -> bytes:
    # Names are checked (letters, digits, . _ @ -), so a JSON string is a TOML basic string.
    lines = [_HEADER, "[recipients]\n"]
    lines += [f"{json.dumps(name)} = {json.dumps(r.encode())}\n" for name, r in book.items()]
    return "".join(lines).encode("utf-8")


class RecipientBook:
    """The address book of the vault directory ``directory`` (default: the user's)."""

    def __init__(self, directory: str | None = None) -> None:
        self.path = os.path.join(vault_dir(directory=directory), RECIPIENTS_FILE)

    def _load(self) -> dict[str, Recipient]:
        data = read_private_file(self.path, "the recipients file", MAX_RECIPIENTS_FILE_SIZE)
        return {} if data is None else _decode(data, self.path)

    def get(self, name: str) -> Recipient:
        """The recipient named ``name``; NotFoundError when there is none."""
        check_name(name, "recipient name")
        book = self._load()
        if name not in book:
            raise NotFoundError(f"no trusted recipient named {name!r} (lockbox vault "
                                "recipients lists them)")
        return book[name]

    def list(self) -> list[tuple[str, Recipient]]:
        """Every (name, recipient), sorted by name."""
        return sorted(self._load().items())

    def add(self, name: str, recipient: Recipient | str, *, replace: bool = False) -> Recipient:
        """Trust ``recipient`` (a Recipient or its text, decoded strictly) as ``name``.
        UsageError when the name is taken (unless ``replace``)."""
        check_name(name, "recipient name")
        if isinstance(recipient, str):
            recipient = Recipient.decode(recipient)
        elif not isinstance(recipient, Recipient):
            raise UsageError("a recipient is a lockbox Recipient or its text")
        with dir_lock(os.path.dirname(self.path)):
            book = self._load()
            if name in book and not replace:
                raise UsageError(f"there is already a trusted recipient named {name!r} "
                                 "(remove it first, or replace it)")
            book[name] = recipient
            self._save(book)
        return recipient

    def remove(self, name: str) -> None:
        """Forget ``name``; NotFoundError when there is no such recipient."""
        check_name(name, "recipient name")
        with dir_lock(os.path.dirname(self.path)):
            book = self._load()
            if name not in book:
                raise NotFoundError(f"no trusted recipient named {name!r}")
            del book[name]
            self._save(book)

    def _save(self, book: dict[str, Recipient]) -> None:
        write_atomically(self.path, _encode(dict(sorted(book.items()))), overwrite=True,
                         tag="new", mode=0o600,
                         what=f"cannot write the recipients file {self.path}")


def trusted_recipient(value: str, directory: str | None = None) -> Recipient | None:
    """For ``keys add-recipient VALUE`` / ``create --recipient VALUE``: the trusted recipient
    named ``value``, or None when ``value`` is not a name in the book (then it is a
    recipient string or a file, as before). A name that is also a file in the current
    directory is ambiguous: UsageError (``./NAME`` names the file). No vault directory:
    None (nothing is created)."""
    if not NAME_PATTERN.fullmatch(value):
        return None
    try:
        path = os.path.join(vault_dir(directory=directory, create=False), RECIPIENTS_FILE)
    except FileNotFoundError:
        return None
    data = read_private_file(path, "the recipients file", MAX_RECIPIENTS_FILE_SIZE)
    book = {} if data is None else _decode(data, path)
    if value not in book:
        return None
    if os.path.lexists(value):
        raise UsageError(f"{value!r} is both a trusted recipient and a file here: write "
                         f"./{value} for the file, or rename it")
    return book[value]
