"""The trusted-recipients address book."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lockbox.errors import FormatError, NotFoundError, UsageError, VaultError
from lockbox.formats.lbox.keys import Identity, Recipient
from lockbox.platform import default_crypto
from lockbox.vault.recipients import RecipientBook


def _recipient(seed: int) -> Recipient:
    return Identity(bytes([seed]) * 64).recipient(default_crypto())


@pytest.fixture
def book(tmp_path: Path) -> RecipientBook:
    return RecipientBook(str(tmp_path / "vault"))


def test_add_get_list_remove(book: RecipientBook) -> None:
    alice, bob = _recipient(1), _recipient(2)
    assert book.list() == []
    book.add("bob", bob.encode())  # as text
    book.add("alice@home", alice)
    assert book.get("alice@home") == alice
    assert book.list() == [("alice@home", alice), ("bob", bob)]
    assert stat.S_IMODE(os.stat(book.path).st_mode) == 0o600
    book.remove("bob")
    assert book.list() == [("alice@home", alice)]
    with pytest.raises(NotFoundError):
        book.get("bob")
    with pytest.raises(NotFoundError):
        book.remove("bob")


def test_names_are_unique_unless_replaced(book: RecipientBook) -> None:
    book.add("alice", _recipient(1))
    with pytest.raises(UsageError, match="already"):
        book.add("alice", _recipient(2))
    book.add("alice", _recipient(2), replace=True)
    assert book.get("alice") == _recipient(2)


@pytest.mark.parametrize("name", ["", "a b", "a\"b", "a]b", "-a", "a=b", "ä"])
def test_bad_names(book: RecipientBook, name: str) -> None:
    with pytest.raises(UsageError):
        book.add(name, _recipient(1))


@pytest.mark.parametrize("text", [
    "lockbox-recipient-1:AAAA",                             # too short
    _recipient(1).encode() + "==",                          # padding
    _recipient(1).encode().replace("-", "+").replace("_", "/"),  # standard alphabet
    "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
], ids=["short", "padded", "std-alphabet", "age"])
def test_recipients_are_decoded_strictly(book: RecipientBook, text: str) -> None:
    assert text != _recipient(1).encode()
    with pytest.raises(FormatError):
        book.add("alice", text)
    assert book.list() == []


def test_the_file_is_toml_and_hand_edits_are_checked(book: RecipientBook) -> None:
    book.add("alice", _recipient(1))
    text = Path(book.path).read_text()
    assert text.startswith("#") and '[recipients]\n"alice" = "lockbox-recipient-1:' in text
    Path(book.path).write_text(text.replace("lockbox-recipient-1:", "lockbox-recipient-1:x"))
    with pytest.raises(FormatError, match="'alice'"):
        book.list()
    Path(book.path).write_text('[recipients]\n"a b" = "x"\n')
    with pytest.raises(FormatError, match="bad recipient name"):
        book.list()
    Path(book.path).write_text("[recipients\n")
    with pytest.raises(FormatError, match="not valid TOML"):
        book.list()
    Path(book.path).write_text('other = 1\n')
    with pytest.raises(FormatError, match="only a"):
        book.list()


def test_a_book_others_can_write_is_refused(book: RecipientBook) -> None:
    book.add("alice", _recipient(1))
    os.chmod(book.path, 0o666)
    with pytest.raises(VaultError, match="accessible to other users"):
        book.get("alice")


def test_trusted_recipient_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lockbox.vault.recipients import trusted_recipient

    vault = str(tmp_path / "vault")
    assert trusted_recipient("alice", vault) is None  # no vault yet: nothing made
    assert not os.path.exists(vault)
    RecipientBook(vault).add("alice", _recipient(1))
    assert trusted_recipient("alice", vault) == _recipient(1)
    assert trusted_recipient("bob", vault) is None
    assert trusted_recipient("./alice", vault) is None  # not a name: a path
    assert trusted_recipient(_recipient(1).encode(), vault) is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alice").write_text("x")
    with pytest.raises(UsageError, match="both a trusted recipient and a file"):
        trusted_recipient("alice", vault)
