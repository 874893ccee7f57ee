"""The unlock agent, as real processes on real Unix sockets: put/get/expiry/lock/stop,
bounded and malformed messages, concurrent clients, other users, planted paths."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lockbox.errors import VaultError
from lockbox.vault import agent_client as client
from lockbox.vault.agent import KeyCache
from lockbox.vault.protocol import MAX_MESSAGE_SIZE, lock_file_path

from .conftest import AGENT_TTL, key_triple, private_dir, stop_quietly

ROOT = os.geteuid() == 0
NOBODY = 65534
HANG_GUARD = 20.0  # seconds: generous, only there to turn a hang into a failure
needs_root = pytest.mark.skipif(not ROOT, reason="needs root to run a process as another user")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def _raw(path: str, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection; what comes back up to a newline or EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(HANG_GUARD)
        s.connect(path)
        s.sendall(data)
        got = b""
        while b"\n" not in got:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
        return got


def _wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard: {what}")
        time.sleep(0.02)


# -- the cache itself (no process: a clock of our own) ---------------------------------------


def test_key_cache_expires_on_get_and_zeroes() -> None:
    now = [100.0]
    cache = KeyCache(clock=lambda: now[0])
    key = bytearray(b"k" * 32)
    cache.put(b"a" * 16, b"c" * 32, key, 10)
    now[0] = 109.9
    assert cache.get(b"a" * 16, b"c" * 32) is key
    assert cache.get(b"a" * 16, b"d" * 32) is None  # another commitment: not offered
    now[0] = 110.0
    assert cache.get(b"a" * 16, b"c" * 32) is None
    assert key == bytearray(32) and len(cache) == 0  # zeroed in place


def test_key_cache_lock_zeroes_everything() -> None:
    cache = KeyCache()
    keys = [bytearray(os.urandom(32)) for _ in range(3)]
    for i, k in enumerate(keys):
        cache.put(bytes([i]) * 16, b"c" * 32, k, 60)
    replaced = keys[0]
    cache.put(bytes([0]) * 16, b"c" * 32, bytearray(os.urandom(32)), 60)
    assert replaced == bytearray(32)  # a replaced key is zeroed too
    assert cache.lock() == 3 and len(cache) == 0
    assert all(k == bytearray(32) for k in keys)


# -- put, get, status --------------------------------------------------------------------------


def test_put_then_get(shared_agent: str) -> None:
    archive_id, commitment, key = key_triple()
    assert client.agent_get(archive_id, commitment, socket_path=shared_agent) is None
    assert client.agent_put(archive_id, commitment, key, socket_path=shared_agent)
    assert client.agent_get(archive_id, commitment, socket_path=shared_agent) == key
    other_id, other_commitment, _ = key_triple()
    assert client.agent_get(archive_id, other_commitment, socket_path=shared_agent) is None
    assert client.agent_get(other_id, commitment, socket_path=shared_agent) is None


def test_a_key_that_does_not_give_the_commitment_is_refused(shared_agent: str) -> None:
    archive_id, commitment, key = key_triple()
    with pytest.raises(VaultError, match="does not give this key commitment"):
        client.agent_put(archive_id, commitment, os.urandom(32), socket_path=shared_agent)
    other_id = os.urandom(16)  # the right key, filed for another archive: refused too
    with pytest.raises(VaultError, match="does not give this key commitment"):
        client.agent_put(other_id, commitment, key, socket_path=shared_agent)
    assert client.agent_get(archive_id, commitment, socket_path=shared_agent) is None


def test_status_shows_no_key(shared_agent: str) -> None:
    archive_id, commitment, key = key_triple()
    client.agent_put(archive_id, commitment, key, socket_path=shared_agent)
    raw = _raw(shared_agent, b'{"op": "status"}\n')
    reply = json.loads(raw)
    assert reply["ok"] and reply["keys"] >= 1 and reply["ttl"] == AGENT_TTL
    assert key.hex().encode() not in raw
    status = client.agent_status(socket_path=shared_agent)
    assert status is not None and status.pid == reply["pid"]
    if sys.platform.startswith("linux"):
        assert set(status.hardening) == {"core-size-0", "not-dumpable"}


@pytest.mark.parametrize("request_line, error", [
    (b"not json\n", "one line of JSON"),
    (b"[1, 2]\n", "JSON object with an 'op'"),
    (b'{"op": "fly"}\n', "unknown op"),
    (b'{"op": "get", "archive_id": "00", "key_commitment": "00"}\n', "16 bytes in hex"),
    (b'{"op": "put", "archive_id": "' + b"zz" * 16 + b'"}\n', "16 bytes in hex"),
    (b'{"op": "put", "archive_id": "' + b"00" * 16 + b'", "key_commitment": "' + b"00" * 32
     + b'", "content_key": "' + b"00" * 32 + b'", "ttl": -5}\n', "positive number"),
], ids=["not-json", "not-object", "unknown-op", "short-id", "bad-hex", "bad-ttl"])
def test_malformed_requests_get_an_error(shared_agent: str, request_line: bytes,
                                         error: str) -> None:
    reply = json.loads(_raw(shared_agent, request_line))
    assert reply["ok"] is False and error in reply["error"]
    assert client.agent_status(socket_path=shared_agent) is not None  # still serving


def test_an_oversized_message_is_refused(shared_agent: str) -> None:
    reply = _raw(shared_agent, b'{"op": "status", "pad": "' + b"x" * MAX_MESSAGE_SIZE)
    assert json.loads(reply) == {"ok": False, "error": f"a message is at most "
                                                       f"{MAX_MESSAGE_SIZE} bytes"}
    assert client.agent_status(socket_path=shared_agent) is not None


def test_concurrent_clients_and_an_idle_one(shared_agent: str) -> None:
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.connect(shared_agent)  # connected, says nothing: must not hold anyone up
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(shared_agent)
    half.sendall(b'{"op": "sta')  # half a request, never finished

    def one_client(n: int) -> bool:
        for _ in range(15):
            archive_id, commitment, key = key_triple()
            client.agent_put(archive_id, commitment, key, socket_path=shared_agent,
                             timeout=HANG_GUARD)
            if client.agent_get(archive_id, commitment, socket_path=shared_agent,
                                timeout=HANG_GUARD) != key:
                return False
        return True

    try:
        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(one_client, range(8)))
    finally:
        idle.close()
        half.close()


# -- expiry, lock, stop, start ----------------------------------------------------------------


def test_expiry_by_the_timer(agent: str) -> None:
    short, long_ = key_triple(), key_triple()
    client.agent_put(*short, ttl=1, socket_path=agent)
    client.agent_put(*long_, socket_path=agent)
    assert client.agent_status(socket_path=agent).keys in (1, 2)  # type: ignore[union-attr]
    # status forgets nothing itself: only the timer can bring the count down
    _wait_for(lambda: client.agent_status(socket_path=agent).keys == 1,  # type: ignore[union-attr]
              "the short key was not forgotten")
    assert client.agent_get(*short[:2], socket_path=agent) is None
    assert client.agent_get(*long_[:2], socket_path=agent) == long_[2]


def test_a_put_cannot_outlive_the_agents_ttl(agent_dir: str) -> None:
    path = os.path.join(agent_dir, "short.sock")
    status = client.start_agent(1, socket_path=path)
    try:
        assert status.ttl == 1
        reply = client.request({"op": "put", "archive_id": (k := key_triple())[0].hex(),
                                "key_commitment": k[1].hex(), "content_key": k[2].hex(),
                                "ttl": 3600}, socket_path=path)
        assert reply is not None and reply["ttl"] == 1
    finally:
        stop_quietly(path)


def test_lock_forgets_everything(agent: str) -> None:
    triples = [key_triple() for _ in range(3)]
    for t in triples:
        client.agent_put(*t, socket_path=agent)
    assert client.agent_lock(socket_path=agent) == 3
    assert all(client.agent_get(*t[:2], socket_path=agent) is None for t in triples)
    assert client.agent_status(socket_path=agent).keys == 0  # type: ignore[union-attr]


def test_stop_then_start_again(agent: str) -> None:
    client.agent_put(*key_triple(), socket_path=agent)
    assert client.agent_stop(socket_path=agent)
    assert not os.path.lexists(agent)  # the agent removed its socket
    assert client.agent_status(socket_path=agent) is None
    assert client.agent_stop(socket_path=agent) is False
    assert client.agent_get(*key_triple()[:2], socket_path=agent) is None
    status = client.start_agent(60, socket_path=agent)
    assert status.keys == 0  # nothing survived on disk


def test_a_second_agent_is_refused(agent: str) -> None:
    pid = client.agent_status(socket_path=agent).pid  # type: ignore[union-attr]
    with pytest.raises(VaultError, match=f"already running .*pid {pid}"):
        client.start_agent(60, socket_path=agent)
    # the agent's own check (its lock), when started directly
    done = subprocess.run([sys.executable, "-m", "lockbox.vault.agent", "--socket", agent],
                          capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == VaultError.exit_code
    assert "already running" in done.stderr and f"pid {pid}" in done.stderr
    assert client.agent_status(socket_path=agent).pid == pid  # type: ignore[union-attr]


def test_a_stale_socket_is_replaced(agent: str) -> None:
    pid = client.agent_status(socket_path=agent).pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGKILL)  # no chance to clean up
    _wait_for(lambda: client._lock_free(agent), "the killed agent still holds its lock")
    assert stat.S_ISSOCK(os.lstat(agent).st_mode)  # left behind
    assert client.agent_get(*key_triple()[:2], socket_path=agent) is None  # no agent: None
    status = client.start_agent(60, socket_path=agent)
    assert status.pid != pid


def test_a_client_never_hangs_on_a_stuck_agent(agent_dir: str) -> None:
    path = os.path.join(agent_dir, "stuck.sock")
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.bind(path)
    stuck.listen(4)  # accepts connections (the backlog), never answers
    try:
        with pytest.raises(VaultError, match="does not answer"):
            client.agent_get(*key_triple()[:2], socket_path=path, timeout=0.3)
    finally:
        stuck.close()


def test_nothing_there_is_no_agent(agent_dir: str) -> None:
    assert client.agent_get(*key_triple()[:2],
                            socket_path=os.path.join(agent_dir, "none", "a.sock")) is None
    assert client.agent_get(*key_triple()[:2],
                            socket_path=os.path.join(agent_dir, "a.sock")) is None
    assert client.agent_put(*key_triple(), socket_path=os.path.join(agent_dir, "a.sock")) \
        is False
    assert client.agent_status(socket_path=os.path.join(agent_dir, "a.sock")) is None
    assert client.agent_lock(socket_path=os.path.join(agent_dir, "a.sock")) is None


# -- permissions, other users, planted paths ----------------------------------------------------


def test_socket_and_directory_are_private(agent: str) -> None:
    assert stat.S_IMODE(os.lstat(agent).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(agent)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(lock_file_path(agent)).st_mode) == 0o600


def test_the_agent_directory_is_made_private(agent_dir: str) -> None:
    path = os.path.join(agent_dir, "sub", "agent.sock")
    client.start_agent(60, socket_path=path)
    try:
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    finally:
        stop_quietly(path)


def test_an_agent_will_not_start_in_a_shared_directory(agent_dir: str) -> None:
    os.chmod(agent_dir, 0o755)
    path = os.path.join(agent_dir, "agent.sock")
    with pytest.raises(VaultError, match="accessible to other users"):
        client.start_agent(60, socket_path=path)
    done = subprocess.run([sys.executable, "-m", "lockbox.vault.agent", "--socket", path],
                          capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == VaultError.exit_code and "accessible to other users" in done.stderr
    assert not os.path.lexists(path)


def test_a_planted_symlink_at_the_socket_path_is_refused(agent_dir: str) -> None:
    elsewhere = private_dir()
    try:
        target = os.path.join(elsewhere, "target.sock")
        path = os.path.join(agent_dir, "agent.sock")
        os.symlink(target, path)
        with pytest.raises(VaultError, match="symlink"):
            client.start_agent(60, socket_path=path)
        done = subprocess.run([sys.executable, "-m", "lockbox.vault.agent", "--socket", path],
                              capture_output=True, text=True, timeout=HANG_GUARD)
        assert done.returncode == VaultError.exit_code and "symlink" in done.stderr
        with pytest.raises(VaultError, match="symlink"):
            client.agent_put(*key_triple(), socket_path=path)
        assert os.path.islink(path) and not os.path.lexists(target)  # nothing followed
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_a_symlinked_agent_directory_is_refused(agent_dir: str) -> None:
    real = os.path.join(agent_dir, "real")
    os.mkdir(real, 0o700)
    os.symlink(real, os.path.join(agent_dir, "link"))
    path = os.path.join(agent_dir, "link", "agent.sock")
    with pytest.raises(VaultError, match="symlink"):
        client.start_agent(60, socket_path=path)
    with pytest.raises(VaultError, match="symlink"):
        client.agent_get(*key_triple()[:2], socket_path=path)


_CONNECT_AS_OTHER = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(15)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    sys.exit(0)
try:
    s.sendall(b'{"op": "status"}\n')
    data = s.recv(65536)
except (BrokenPipeError, ConnectionResetError):  # disconnected while sending or reading
    data = b""
print("EOF" if not data else "ANSWER " + data.decode(errors="replace"))
"""


def _as_nobody(script: str, *args: str) -> str:
    done = subprocess.run([PYTHON, "-c", script, *args], user=NOBODY, group=NOBODY,
                          extra_groups=[], capture_output=True, text=True, timeout=HANG_GUARD,
                          cwd="/")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@needs_root
def test_another_user_cannot_connect(agent: str) -> None:
    directory = os.path.dirname(agent)
    archive_id, commitment, key = key_triple()
    client.agent_put(archive_id, commitment, key, socket_path=agent)
    # as made: the 0700 directory keeps the other user out
    assert _as_nobody(_CONNECT_AS_OTHER, agent) == "EACCES"
    # a directory opened up: the 0600 socket still does
    os.chmod(directory, 0o755)
    try:
        assert _as_nobody(_CONNECT_AS_OTHER, agent) == "EACCES"
        # both opened up: the peer check disconnects the other user without an answer
        os.chmod(agent, 0o666)
        with pytest.raises(VaultError, match="accessible to other users"):
            client.agent_status(socket_path=agent)  # (our client won't use it like this)
        assert _as_nobody(_CONNECT_AS_OTHER, agent) == "EOF"
        get = json.dumps({"op": "get", "archive_id": archive_id.hex(),
                          "key_commitment": commitment.hex()})
        script = _CONNECT_AS_OTHER.replace('{"op": "status"}', get.replace('"', '\\"'))
        assert _as_nobody(script, agent) == "EOF"
    finally:
        os.chmod(agent, 0o600)
        os.chmod(directory, 0o700)
    status = client.agent_status(socket_path=agent)
    assert status is not None and status.keys == 1  # and it serves its own user still


_LISTEN_AS_OTHER = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(4)
s.settimeout(15)
print("ready", flush=True)
try:
    c, _ = s.accept()
    c.settimeout(5)
    data = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError:
    data = b"(nothing)"
print(repr(data), flush=True)
"""


@needs_root
def test_a_socket_of_another_user_is_never_told_a_key(agent_dir: str) -> None:
    """A process of another user listens on a socket that ends up at our agent's path
    (moved there and given to us, as only root could): the client's peer check refuses
    it before sending the key."""
    theirs = tempfile.mkdtemp(prefix="lbx-other-", dir="/tmp")
    os.chown(theirs, NOBODY, NOBODY)
    their_path = os.path.join(theirs, "s.sock")
    listener = subprocess.Popen([PYTHON, "-c", _LISTEN_AS_OTHER, their_path], user=NOBODY,
                                group=NOBODY, extra_groups=[], stdout=subprocess.PIPE,
                                text=True, cwd="/")
    try:
        assert listener.stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(listener.stdout.readline()))
        reader.start()
        reader.join(HANG_GUARD)
        assert ready == ["ready\n"]
        path = os.path.join(agent_dir, "agent.sock")
        os.rename(their_path, path)
        os.chown(path, os.geteuid(), os.getegid(), follow_symlinks=False)
        archive_id, commitment, key = key_triple()
        with pytest.raises(VaultError, match=f"belongs to uid {NOBODY}"):
            client.agent_put(archive_id, commitment, key, socket_path=path)
        out, _ = listener.communicate(timeout=HANG_GUARD)
        assert out.strip() == "b''"  # connected, then left without a word
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait(HANG_GUARD)
        shutil.rmtree(theirs, ignore_errors=True)


@needs_root
def test_a_socket_file_of_another_user_is_refused(agent: str) -> None:
    os.chown(agent, NOBODY, NOBODY, follow_symlinks=False)
    try:
        with pytest.raises(VaultError, match=f"belongs to uid {NOBODY}"):
            client.agent_get(*key_triple()[:2], socket_path=agent)
    finally:
        os.chown(agent, os.geteuid(), os.getegid(), follow_symlinks=False)


@needs_root
def test_the_agent_gets_none_of_lockboxs_secrets(agent_dir: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKBOX_PASSWORD", "hunter2")
    monkeypatch.setenv("LOCKBOX_VAULT_PASSPHRASE", "vault secret")
    path = os.path.join(agent_dir, "agent.sock")
    status = client.start_agent(60, socket_path=path)
    try:
        with open(f"/proc/{status.pid}/environ", "rb") as f:  # readable: we are root
            environ = f.read()
        assert b"hunter2" not in environ and b"vault secret" not in environ
        assert b"LOCKBOX_" not in environ
    finally:
        stop_quietly(path)


def test_sigterm_forgets_and_cleans_up(agent: str) -> None:
    client.agent_put(*key_triple(), socket_path=agent)
    os.kill(client.agent_status(socket_path=agent).pid, signal.SIGTERM)  # type: ignore[union-attr]
    _wait_for(lambda: client._lock_free(agent), "the agent did not exit on SIGTERM")
    assert not os.path.lexists(agent)
    assert client.agent_status(socket_path=agent) is None
