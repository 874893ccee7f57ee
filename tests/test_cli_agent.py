"""The CLI with the unlock agent and the trusted-recipients book (issue 13, docs/VAULT.md
"Using the agent"): real ``lockbox`` processes and a real agent, started with
``lockbox agent start`` on a socket of the test's own (``LOCKBOX_AGENT_SOCK``).

Must show: the agent spares the second password prompt. The first ``lockbox ls`` asks
for the password on a pseudo-terminal; the second, with no password and no terminal,
lists at once; after ``lockbox agent lock`` it cannot. A cached key opens nothing but
its own archive; ``lockbox mount --writable`` of an unlocked archive starts without a
password; ``keys add-recipient ARCHIVE NAME`` takes NAME from the book; and without an
agent (or with an unusable one) nothing changes but, at most, one warning line."""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import subprocess
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import lockbox_server
from cli_helpers import WEAK, Runner, lockbox_command

PASSWORD = "correct horse"
NO_SECRET_START = "lockbox: no password or identity given and no terminal to ask on"
HANG_GUARD_S = 60.0

Run = Callable[..., subprocess.CompletedProcess[str]]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKBOX_")}
    env.update(extra)
    return env


@pytest.fixture
def agent_sock() -> Iterator[str]:
    """A running agent (``lockbox agent start``) on a socket in a fresh private directory
    under /tmp (a socket path must be short); stopped afterwards."""
    directory = tempfile.mkdtemp(prefix="lbx-cli-", dir="/tmp")
    sock = os.path.join(directory, "agent.sock")
    env = _clean_env(LOCKBOX_AGENT_SOCK=sock)
    done = subprocess.run([*lockbox_command(), "agent", "start", "--ttl", "10m"], env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=HANG_GUARD_S, check=False)
    assert done.returncode == 0, done.stderr
    try:
        yield sock
    finally:
        subprocess.run([*lockbox_command(), "agent", "stop"], env=env, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=HANG_GUARD_S, check=False)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def lbx(agent_sock: str, tmp_path: Path) -> Run:
    """``lockbox ARGS`` as a real process talking to the test's agent: no terminal, no
    LOCKBOX_* variable but the agent's socket, the vault directory and ``env``."""
    vault = tmp_path / "vault"

    def run(*argv: str | os.PathLike[str], env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        full = _clean_env(LOCKBOX_AGENT_SOCK=agent_sock, LOCKBOX_VAULT_DIR=str(vault),
                          **(env or {}))
        return subprocess.run([*lockbox_command(), *(os.fspath(a) for a in argv)], env=full,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=HANG_GUARD_S, check=False, cwd=tmp_path)

    return run


def _ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return done


def _make_archive(lbx: Run, path: Path, password: str = PASSWORD, content: str = "hi\n"
                  ) -> None:
    """An archive with one file, made while the agent holds nothing of it afterwards
    (creating and adding remember the key: the agent is locked again)."""
    src = path.parent / f"{path.stem}.txt"
    src.write_text(content)
    pw = {"LOCKBOX_PASSWORD": password}
    _ok(lbx("create", path, *WEAK, env=pw))
    _ok(lbx("add", path, src, env=pw))


def _lock(lbx: Run) -> None:
    _ok(lbx("agent", "lock"))


def _run_on_pty(argv: list[str], env: dict[str, str], answer: str, cwd: Path
                ) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as its controlling terminal (getpass asks on
    it); type ``answer`` once a ``Password`` prompt shows. Returns (exit status, all
    the terminal showed)."""
    master, slave = os.openpty()

    def take_terminal() -> None:  # after setsid: the pty becomes the controlling tty
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, preexec_fn=take_terminal, cwd=cwd)
    os.close(slave)
    shown, answered = b"", False
    deadline = time.monotonic() + HANG_GUARD_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
                if not answered and b"Password" in shown:
                    os.write(master, answer.encode() + b"\n")
                    answered = True
            elif proc.poll() is not None:
                break
        rc = proc.wait(HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return rc, shown.decode("utf-8", "replace")


# -- must show: the agent spares the second password prompt -------------------------------


def test_second_ls_needs_no_password(lbx: Run, agent_sock: str, tmp_path: Path) -> None:
    archive = tmp_path / "a.lbox"
    _make_archive(lbx, archive)
    _lock(lbx)
    # No key in the agent: no terminal, no password -> refused, as without an agent.
    done = lbx("ls", archive)
    assert done.returncode == 2 and done.stderr.startswith(NO_SECRET_START)

    # First: the password typed at the prompt, on a terminal.
    env = _clean_env(LOCKBOX_AGENT_SOCK=agent_sock)
    rc, shown = _run_on_pty([*lockbox_command(), "ls", str(archive)], env, PASSWORD,
                            tmp_path)
    assert rc == 0, shown
    assert "Password for a.lbox" in shown and "a.txt" in shown

    # Second: no password, no terminal: the agent's key, no prompt.
    done = _ok(lbx("ls", archive))
    assert done.stdout == "a.txt\n"
    # ... and the same on a terminal: it lists without asking (nothing typed).
    rc, shown = _run_on_pty([*lockbox_command(), "ls", str(archive)], env, "", tmp_path)
    assert rc == 0 and "Password" not in shown and "a.txt" in shown, shown

    # After `agent lock` the key is gone: asked (refused without a terminal) again.
    _lock(lbx)
    done = lbx("ls", archive)
    assert done.returncode == 2 and done.stderr.startswith(NO_SECRET_START)


def test_password_from_the_environment_is_remembered_too(lbx: Run, tmp_path: Path) -> None:
    archive = tmp_path / "a.lbox"
    _make_archive(lbx, archive)
    _lock(lbx)
    assert _ok(lbx("ls", archive, env={"LOCKBOX_PASSWORD": PASSWORD})).stdout == "a.txt\n"
    assert _ok(lbx("cat", archive, "a.txt")).stdout == "hi\n"
    status = _ok(lbx("agent", "status", "--json")).stdout
    assert '"keys": 1' in status


def test_writes_use_the_agent(lbx: Run, tmp_path: Path) -> None:
    archive = tmp_path / "a.lbox"
    _make_archive(lbx, archive)  # create + add remembered the key
    more = tmp_path / "b.txt"
    more.write_text("more\n")
    _ok(lbx("add", archive, more))
    _ok(lbx("rm", archive, "a.txt"))
    assert _ok(lbx("ls", archive)).stdout == "b.txt\n"
    _lock(lbx)
    done = lbx("add", archive, more)
    assert done.returncode == 2 and done.stderr.startswith(NO_SECRET_START)


def test_a_cached_key_opens_only_its_own_archive(lbx: Run, tmp_path: Path) -> None:
    a, b = tmp_path / "a.lbox", tmp_path / "b.lbox"
    _make_archive(lbx, a)
    _make_archive(lbx, b, content="other\n")  # same password, another archive id and key
    _lock(lbx)
    _ok(lbx("ls", a, env={"LOCKBOX_PASSWORD": PASSWORD}))
    assert _ok(lbx("ls", a)).stdout == "a.txt\n"
    done = lbx("ls", b)  # the agent holds a's key only: b is not opened with it
    assert done.returncode == 2 and done.stderr.startswith(NO_SECRET_START)
    # A copy of a is the same archive (same id, same key): it opens.
    copy = tmp_path / "copy.lbox"
    shutil.copyfile(a, copy)
    assert _ok(lbx("ls", copy)).stdout == "a.txt\n"


def test_a_wrong_password_is_not_remembered(lbx: Run, tmp_path: Path) -> None:
    archive = tmp_path / "a.lbox"
    _make_archive(lbx, archive)
    _lock(lbx)
    done = lbx("ls", archive, env={"LOCKBOX_PASSWORD": "wrong"})
    assert done.returncode != 0
    assert '"keys": 0' in _ok(lbx("agent", "status", "--json")).stdout


def test_no_agent_no_noise(tmp_path: Path) -> None:
    """No agent at the socket path: exactly as before, nothing on stderr."""
    directory = tempfile.mkdtemp(prefix="lbx-none-", dir="/tmp")
    try:
        env = _clean_env(LOCKBOX_AGENT_SOCK=os.path.join(directory, "agent.sock"),
                         LOCKBOX_PASSWORD=PASSWORD)
        (tmp_path / "a.txt").write_text("hi\n")

        def run(*argv: str | os.PathLike[str], **kw: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*lockbox_command(), *(os.fspath(a) for a in argv)],
                                  env={**env, **kw}, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=HANG_GUARD_S,
                                  check=False)

        archive = tmp_path / "a.lbox"
        _ok(run("create", archive, *WEAK))
        _ok(run("add", archive, tmp_path / "a.txt"))
        assert _ok(run("ls", archive)).stdout == "a.txt\n"
        env.pop("LOCKBOX_PASSWORD")
        done = run("ls", archive)
        assert done.returncode == 2 and done.stderr.startswith(NO_SECRET_START)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_an_unsafe_agent_directory_is_one_warning_not_a_failure(tmp_path: Path) -> None:
    directory = tempfile.mkdtemp(prefix="lbx-open-", dir="/tmp")
    try:
        os.chmod(directory, 0o777)  # not private: the client refuses to use it
        env = _clean_env(LOCKBOX_AGENT_SOCK=os.path.join(directory, "agent.sock"),
                         LOCKBOX_PASSWORD=PASSWORD)
        (tmp_path / "a.txt").write_text("hi\n")
        archive = tmp_path / "a.lbox"
        for argv in (["create", str(archive), *WEAK],
                     ["add", str(archive), str(tmp_path / "a.txt")], ["ls", str(archive)]):
            done = subprocess.run([*lockbox_command(), *argv], env=env,
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  timeout=HANG_GUARD_S, check=False)
            assert done.returncode == 0, done.stderr
            lines = done.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith(
                "lockbox: warning: unlock agent not used: "), done.stderr
        assert done.stdout == "a.txt\n"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- the trusted-recipients book ---------------------------------------------------------


def test_add_recipient_by_name_from_the_book(lbx: Run, tmp_path: Path) -> None:
    archive = tmp_path / "a.lbox"
    _make_archive(lbx, archive)  # the agent holds the key: no password for the change
    key = tmp_path / "alice.key"
    recipient = _ok(lbx("keygen", "-o", key)).stdout.strip()
    _ok(lbx("vault", "add-recipient", "alice", recipient))
    _ok(lbx("keys", "add-recipient", archive, "alice"))
    _lock(lbx)
    # alice's identity opens it now (the slot is hers), with no password.
    assert _ok(lbx("ls", archive, "-i", key)).stdout == "a.txt\n"
    # An unknown name is neither a recipient nor a file: one line, no change.
    done = lbx("keys", "add-recipient", archive, "bob", env={"LOCKBOX_PASSWORD": PASSWORD})
    assert done.returncode != 0 and "'bob' is neither a recipient" in done.stderr
    # create -r NAME too.
    _ok(lbx("create", tmp_path / "new.lbox", *WEAK, "--no-password", "-r", "alice"))
    _lock(lbx)
    assert _ok(lbx("ls", tmp_path / "new.lbox", "-i", key)).stdout == ""


# -- lockbox mount --writable ------------------------------------------------------------


def _start_mount(lbx_env: dict[str, str], archive: Path, cwd: Path, *extra: str
                 ) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*lockbox_command(), "mount", str(archive), *extra,
                             "--port", "0"], env={**lbx_env, "PYTHONFAULTHANDLER": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, cwd=cwd)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    if not first.startswith("mounted "):
        proc.wait(HANG_GUARD_S)
        raise AssertionError(f"mount did not start: {first!r} {proc.stderr.read()!r}")
    return proc, first.split(" at ")[1].split()[0]


def _stop_mount(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C; a mount that does not stop is dumped (faulthandler) and the dump shown."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait(HANG_GUARD_S)
            assert proc.stderr is not None
            raise AssertionError("the mount did not stop on SIGINT:\n"
                                 + proc.stderr.read()[-8000:]) from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert rc == 0


def test_writable_mount_of_an_unlocked_archive_needs_no_password(
        lbx: Run, agent_sock: str, tmp_path: Path) -> None:
    archive = tmp_path / "a.lbox"
    _make_archive(lbx, archive)
    _lock(lbx)
    env = _clean_env(LOCKBOX_AGENT_SOCK=agent_sock)
    # Locked agent, no password, no terminal: the mount is refused before it starts.
    done = subprocess.run([*lockbox_command(), "mount", str(archive), "--writable",
                           "--port", "0"], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=HANG_GUARD_S, check=False)
    assert done.returncode == 2 and done.stderr.startswith(NO_SECRET_START)

    # A mount with the password remembers the key ...
    proc, _ = _start_mount({**env, "LOCKBOX_PASSWORD": PASSWORD}, archive, tmp_path,
                           "--writable")
    _stop_mount(proc)
    # ... so the next one starts with none, and writes.
    proc, url = _start_mount(env, archive, tmp_path, "--writable")
    try:
        r = httpx.put(f"{url}put.txt", content=b"via webdav\n", timeout=30)
        assert r.status_code in (201, 204), r.text
    finally:
        _stop_mount(proc)
    assert _ok(lbx("cat", archive, "put.txt")).stdout == "via webdav\n"
    # A read-only mount too (it opens like `lockbox ls`).
    proc, url = _start_mount(env, archive, tmp_path)
    try:
        r = httpx.get(f"{url}put.txt", timeout=30)
        assert r.status_code == 200 and r.content == b"via webdav\n"
    finally:
        _stop_mount(proc)


# -- lockbox serve --workers -------------------------------------------------------------


def test_serve_workers_reaches_the_server(capsysbinary: pytest.CaptureFixture[bytes],
                                          tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def serve(directory: str, *, ready: Callable[[str], None], **kw: object) -> None:
        seen.update(kw)

    monkeypatch.setattr(lockbox_server, "serve", serve)
    run = Runner(capsysbinary)
    run.ok("serve", tmp_path, "--workers", "3", "-q")
    assert seen["workers"] == 3
    monkeypatch.delenv("LOCKBOX_SERVE_WORKERS", raising=False)
    run.ok("serve", tmp_path, "-q")
    assert seen["workers"] is None  # the server's default (cores, or the variable)
    assert run("serve", tmp_path, "--workers", "0").rc == 2
    monkeypatch.setenv("LOCKBOX_SERVE_WORKERS", "many")
    r = run("serve", tmp_path, "-q")
    assert r.rc == 2 and r.err.startswith("lockbox: LOCKBOX_SERVE_WORKERS must be a positive")


def test_no_agent_reads_nothing_more(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing at the socket path, asking the agent costs no read of the archive
    (a remote archive's key directory page would be an extra round trip)."""
    from lockbox import cli
    from lockbox.registry import Probe

    class NoReads:
        def read(self, ranges: object) -> list[bytes]:
            raise AssertionError("the archive was read")

    monkeypatch.setenv("LOCKBOX_AGENT_SOCK", str(tmp_path / "none" / "agent.sock"))
    probed = Probe(spec=None, head=b"")  # type: ignore[arg-type]
    assert cli._agent_lookup(NoReads(), probed) is None


def test_keys_rm_asks_for_the_secret_even_with_the_agent(lbx: Run, tmp_path: Path) -> None:
    """``keys rm`` does not take the agent's key: the secret given tells which slot the
    user unlocks with, so that slot is not removed by mistake."""
    archive = tmp_path / "a.lbox"
    _make_archive(lbx, archive)  # the agent holds the key
    slot_id = _ok(lbx("keys", "ls", archive)).stdout.split()[0]
    done = lbx("keys", "rm", archive, slot_id)
    assert done.returncode == 2 and done.stderr.startswith(NO_SECRET_START)
    done = lbx("keys", "rm", archive, slot_id, env={"LOCKBOX_PASSWORD": PASSWORD})
    assert done.returncode == 2 and "is the one you unlocked with" in done.stderr
    assert _ok(lbx("keys", "ls", archive)).stdout.split()[0] == slot_id  # still there
