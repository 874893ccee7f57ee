"""guest.v1: serve_guest in-process (every action, denials, bad lines) and GuestSession
spawning a real host app subprocess."""

from __future__ import annotations

import base64
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lockbox.drivers import run_sync
from lockbox.formats.sync.container import open_layout_flow, read_entry_flow
from lockbox.formats.sync.guest import (
    GUEST_PROTOCOL_VERSION,
    GuestAction,
    GuestError,
    GuestErrorCode,
    GuestSession,
    WidgetBounds,
    handle_request,
    serve_guest,
)
from lockbox.formats.sync.manifest import Manifest
from lockbox.formats.sync.writer import write_sync_file
from lockbox.sources import FileSource

from .hook.guests import Reply, guest, loopback, outputs

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PAYLOAD = b"rows\x00\xff\x01"
CONTEXT = b'{"city":"Lyon","n":[1,2]}'
SERVE = ("import sys; from lockbox.formats.sync.guest import serve_guest; "
         "sys.exit(serve_guest(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer))")
HOST_APP = [sys.executable, "-c", SERVE]


def fetch_hook(url: str) -> bytes:
    """Fetch ``url``; write the body as the payload on 200, else the result code."""
    return guest(f"""
      (local $r i32) (local $n i32)
      (local.set $r (call $http (i32.const 4096) (i32.const {len(url)}) (i32.const 3072)
                               (i32.const 3)))
      (if (i32.eq (local.get $r) (i32.const 200))
        (then
          (local.set $n (call $rread (i32.const 65536) (i32.const 65536)))
          (drop (call $pwrite (i32.const 0) (local.get $n) (i32.const 65536))))
        (else (call $out (local.get $r))))""", data={4096: url.encode(), 3072: b"GET"})


def make_sync(path: Path, *, wasm: bytes | None = None, allow_hosts: tuple[str, ...] = (),
              allow_env: tuple[str, ...] = ("FOO",)) -> Path:
    manifest = Manifest.new(content_type="text/csv", display_ext="csv", created_by="test",
                            created_at=CREATED, allow_hosts=allow_hosts, allow_env=allow_env)
    write_sync_file(path, manifest_toml=manifest.to_toml(), payload=PAYLOAD, wasm=wasm,
                    context=CONTEXT)
    return path


def entries(path: Path) -> dict[str, bytes]:
    with FileSource(path) as source:
        layout = run_sync(open_layout_flow(source.size), source)
        return {name: run_sync(read_entry_flow(layout, name, max_size=1 << 20), source)
                for name in layout.entries}


_ids = iter(range(1, 10**6))


def request(path: Path, action: str, input: Any = None, *, role: str = "Owner",
            hosts: list[str] | None = None, **flags: bool) -> dict[str, Any]:
    permissions: dict[str, Any] = {f"can_{k}": v for k, v in flags.items()}
    if hosts is not None:
        permissions["allowed_hosts"] = hosts
    return {"version": GUEST_PROTOCOL_VERSION, "request_id": f"guest-{next(_ids)}",
            "action": action, "input": input,
            "context": {"mode": "Headless", "role": role, "permissions": permissions,
                        "sync_path": str(path), "host_app": "test"}}


def serve(path: Path, *requests: dict[str, Any] | str) -> list[dict[str, Any]]:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in requests]
    stdout = io.BytesIO()
    assert serve_guest(path, io.BytesIO("\n".join(lines).encode() + b"\n"), stdout) == 0
    replies = [json.loads(line) for line in stdout.getvalue().splitlines()]
    for reply in replies:
        assert set(reply) == {"version", "request_id", "ok", "result", "error"}
        assert reply["version"] == GUEST_PROTOCOL_VERSION
    return replies


def test_reads(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "a.sync")
    r = [request(path, "ReadPayload", role="Consumer", read_payload=True),
         request(path, "ReadContext", role="Consumer", read_context=True)]
    payload, context = serve(path, *r)
    assert (payload["ok"], payload["request_id"], payload["error"]) == (True,
                                                                       r[0]["request_id"], None)
    assert base64.b64decode(payload["result"]) == PAYLOAD
    assert context["result"] == {"city": "Lyon", "n": [1, 2]}


def test_consumer_may_only_read(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "a.sync", wasm=guest("(nop)"))
    before = path.read_bytes()
    all_flags = dict(read_payload=True, read_context=True, write_payload=True,
                     write_context=True, execute_wasm=True)
    replies = serve(path, *[
        request(path, action, "QUJD" if "Payload" in action else {}, role="Consumer",
                **all_flags)
        for action in ("WritePayload", "UpdatePayload", "WriteContext", "ExecuteWasm")])
    for reply in replies:
        assert not reply["ok"]
        assert reply["error"] == {"code": "PermissionDenied", "message": "Owner context required"}
    assert path.read_bytes() == before


def test_owner_needs_each_grant(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "a.sync", wasm=guest("(nop)"))
    before = path.read_bytes()
    replies = serve(path, request(path, "ReadPayload"), request(path, "ReadContext"),
                    request(path, "WritePayload", "QUJD", write_context=True),
                    request(path, "UpdatePayload", "QUJD"),
                    request(path, "WriteContext", {}, write_payload=True),
                    request(path, "ExecuteWasm", None, write_payload=True))
    assert [r["error"]["message"] for r in replies] == [
        "read payload not allowed", "read context not allowed", "write payload not allowed",
        "write payload not allowed", "write context not allowed", "execute wasm not allowed"]
    assert {r["error"]["code"] for r in replies} == {"PermissionDenied"}
    assert path.read_bytes() == before


def test_owner_writes(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "a.sync")
    manifest_before = entries(path)["manifest.toml"]
    new = b"\x00new\xff payload"
    (write,) = serve(path, request(path, "WritePayload", base64.b64encode(new).decode(),
                                   write_payload=True))
    assert write == {**write, "ok": True, "result": {"payload_size": len(new)}}
    after = entries(path)
    assert after["payload"] == new and after["manifest.toml"] == manifest_before

    (update,) = serve(path, request(path, "UpdatePayload", base64.b64encode(b"v2").decode(),
                                    write_payload=True))
    assert update["ok"]
    manifest = Manifest.parse(entries(path)["manifest.toml"])
    assert manifest.created_at > CREATED
    assert update["result"]["fresh_at"] == manifest.created_at_text
    assert entries(path)["payload"] == b"v2"

    context = {"token": "é\u2028", "list": [None, True, 1.5]}
    write_ctx, read_ctx = serve(path, request(path, "WriteContext", context,
                                              write_context=True),
                                request(path, "ReadContext", read_context=True))
    assert write_ctx["ok"] and read_ctx["result"] == context
    after = entries(path)
    assert json.loads(after["context.json"]) == context
    assert after["payload"] == b"v2" and list(after) == [
        "manifest.toml", "payload", "sync.wasm", "context.json"]


def test_write_context_adds_one_and_keeps_the_other_entries(tmp_path: Path) -> None:
    path = tmp_path / "p.sync"
    manifest = Manifest.new(content_type="text/csv", display_ext="csv", created_by="test",
                            created_at=CREATED)
    write_sync_file(path, manifest_toml=manifest.to_toml(), payload=PAYLOAD, wasm=None,
                    proof=b"proof bytes")
    (reply,) = serve(path, request(path, "WriteContext", [1, "two"], write_context=True))
    assert reply["ok"]
    after = entries(path)
    assert list(after) == ["manifest.toml", "payload", "sync.wasm", "context.json",
                           "sync.proof"]
    assert after["context.json"] == b'[1,"two"]' and after["sync.proof"] == b"proof bytes"
    assert after["payload"] == PAYLOAD and after["manifest.toml"] == manifest.to_toml()


def test_write_context_refuses_to_drop_unknown_entries(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "x.sync"
    manifest = Manifest.new(content_type="text/csv", display_ext="csv", created_by="test",
                            created_at=CREATED)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("manifest.toml", manifest.to_toml())
        z.writestr("payload", PAYLOAD)
        z.writestr("sync.wasm", b"\0asm\x01\0\0\0")
        z.writestr("extra.txt", b"someone else's")
    before = path.read_bytes()
    (reply,) = serve(path, request(path, "WriteContext", {}, write_context=True))
    assert reply["error"]["code"] == "IoError" and "extra.txt" in reply["error"]["message"]
    assert path.read_bytes() == before


def test_execute_wasm_with_the_effective_allow_list(tmp_path: Path) -> None:
    with loopback() as server:
        server.routes["/"] = Reply(200, b"fetched\x00")
        wasm = fetch_hook(server.url("/"))
        allowed = make_sync(tmp_path / "ok.sync", wasm=wasm, allow_hosts=("127.0.0.1",))
        (reply,) = serve(allowed, request(allowed, "ExecuteWasm", hosts=["127.0.0.1"],
                                          execute_wasm=True))
        assert reply["ok"], reply
        result = reply["result"]
        assert (result["payload_updated"], result["allow_hosts"]) == (True, ["127.0.0.1"])
        assert result["requests"] == [{"url": server.url("/"), "result": 200}]
        assert entries(allowed)["payload"] == b"fetched\x00"
        # the request claims a host the manifest does not allow: the hook sees -2
        denied = make_sync(tmp_path / "no.sync", wasm=wasm, allow_hosts=("example.com",))
        (reply,) = serve(denied, request(denied, "ExecuteWasm", hosts=["127.0.0.1"],
                                         execute_wasm=True))
        assert reply["ok"] and reply["result"]["allow_hosts"] == []
        assert outputs(entries(denied)["payload"]) == [-2]
        assert server.seen == [("GET", "/")]


def test_execute_wasm_failure_is_an_error_reply(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "a.sync", wasm=guest("(loop $l (br $l))"))
    before = path.read_bytes()
    replies = []
    stdout = io.BytesIO()
    line = json.dumps(request(path, "ExecuteWasm", execute_wasm=True)) + "\n"
    serve_guest(path, io.BytesIO(line.encode()), stdout, env={"GUEST_CPU_LIMIT_MS": "300"})
    replies = [json.loads(x) for x in stdout.getvalue().splitlines()]
    assert replies[0]["error"]["code"] == "ExecutionFailed"
    assert "timeout" in replies[0]["error"]["message"]
    assert path.read_bytes() == before
    (stub,) = serve(make_sync(tmp_path / "stub.sync"),
                    request(tmp_path / "stub.sync", "ExecuteWasm", execute_wasm=True))
    assert stub["error"]["code"] == "InvalidRequest" and "stub" in stub["error"]["message"]


def test_bad_lines_get_error_replies(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "a.sync")
    other = make_sync(tmp_path / "b.sync")
    good = request(path, "ReadPayload", read_payload=True)
    wrong_version = {**good, "version": "guest.v2", "request_id": "v2"}
    no_context = {k: v for k, v in good.items() if k != "context"}
    bad_action = {**good, "action": "DeleteEverything"}
    bad_role = {**good, "context": {**good["context"], "role": "Admin"}}
    bad_flag = {**good, "context": {**good["context"], "permissions": {"can_read_payload": 1}}}
    replies = serve(path, "not json", "", "[1, 2]", json.dumps(wrong_version),
                    json.dumps(no_context), json.dumps(bad_action), json.dumps(bad_role),
                    json.dumps(bad_flag),
                    json.dumps(request(other, "ReadPayload", read_payload=True)),
                    json.dumps(request(path, "WritePayload", "not base64!", write_payload=True)),
                    json.dumps(request(path, "WritePayload", 42, write_payload=True)),
                    json.dumps(good))
    codes = [(r["request_id"], r["error"] and r["error"]["code"]) for r in replies]
    assert len(replies) == 11  # the blank line gets no reply
    assert codes[0] == ("", "InvalidRequest") and codes[1] == ("", "InvalidRequest")
    assert codes[2] == ("v2", "ProtocolError")
    assert [c[1] for c in codes[3:10]] == ["InvalidRequest"] * 7
    assert "b.sync" in replies[7]["error"]["message"]
    assert replies[10]["ok"] and base64.b64decode(replies[10]["result"]) == PAYLOAD
    assert entries(path)["payload"] == PAYLOAD


def test_oversized_lines_are_refused_and_skipped(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "a.sync")
    good = json.dumps(request(path, "ReadContext", read_context=True)).encode()
    stdin = io.BytesIO(b"x" * 5000 + b"\n" + good + b"\n")
    stdout = io.BytesIO()
    serve_guest(path, stdin, stdout, max_line_size=len(good) + 10)
    first, second = (json.loads(x) for x in stdout.getvalue().splitlines())
    assert first["error"]["code"] == "InvalidRequest" and "over" in first["error"]["message"]
    assert second["ok"] and second["result"]["city"] == "Lyon"


def test_text_streams_work_too(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "a.sync")
    stdout = io.StringIO()
    serve_guest(path, io.StringIO(json.dumps(request(path, "ReadContext", read_context=True))),
                stdout)
    assert json.loads(stdout.getvalue())["result"]["city"] == "Lyon"


def test_handle_request_never_raises(tmp_path: Path) -> None:
    reply = handle_request(tmp_path / "missing.sync", json.dumps(
        request(tmp_path / "missing.sync", "ReadPayload", read_payload=True)))
    assert not reply.ok and reply.error is not None


# --- GuestSession, with a real host app subprocess --------------------------------------


def test_session_round_trips(tmp_path: Path) -> None:
    with loopback() as server:
        server.routes["/"] = Reply(200, b"from the hook")
        path = make_sync(tmp_path / "s.sync", wasm=fetch_hook(server.url("/")),
                         allow_hosts=("127.0.0.1",))
        session = GuestSession(path, host_app=HOST_APP)
        assert session.execute_read_payload_bytes() == PAYLOAD
        assert session.execute_read_context().result == {"city": "Lyon", "n": [1, 2]}
        session.as_owner()
        session.grant_write_payload()
        session.grant_context_write()
        session.grant_wasm_execution()
        session.allow_host("127.0.0.1")
        assert session.execute_write_payload_bytes(b"\xffwritten").ok
        assert session.execute_read_payload_bytes() == b"\xffwritten"
        assert session.execute_update_payload("updated").ok
        assert session.execute_write_context({"k": "v"}).ok
        assert session.execute_read_context().result == {"k": "v"}
        response = session.execute_wasm()
        assert response.ok, response
        assert response.result["payload_updated"] is True
        assert session.execute_read_payload_bytes() == b"from the hook"
        assert server.seen == [("GET", "/")]


def test_session_checks_permissions_locally(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "s.sync", allow_hosts=("example.com", "api.local"),
                     allow_env=("FOO", "BAR"))
    session = GuestSession(path, host_app=["/nonexistent/host-app"])
    session.grant_write_payload()
    with pytest.raises(GuestError) as info:  # denied before anything is spawned
        session.execute_write_payload("x")
    assert info.value.code == GuestErrorCode.PERMISSION_DENIED
    session.as_owner()
    session.verify_permissions(GuestAction.WRITE_PAYLOAD)
    with pytest.raises(GuestError) as info:
        session.verify_permissions(GuestAction.EXECUTE_WASM)
    assert info.value.code == GuestErrorCode.PERMISSION_DENIED
    for name in ("FOO", "BAZ"):
        session.allow_env_var(name)
    for host in ("example.com", "evil.com", "evilexample.com"):
        session.allow_host(host)
    context = session.get_context()
    assert context.permissions.allowed_env == ["FOO"]
    assert context.permissions.allowed_hosts == ["example.com"]
    with pytest.raises(GuestError) as info:  # spawning a missing program
        session.execute_read_payload()
    assert info.value.code == GuestErrorCode.EXECUTION_FAILED
    with pytest.raises(GuestError) as info:
        session.set_widget_bounds(WidgetBounds(0, 0, 0, 10))
    assert info.value.code == GuestErrorCode.INVALID_REQUEST
    session.as_widget()
    with pytest.raises(GuestError, match="widget bounds are required"):
        session.execute_read_payload()


def _fake_host_app(script: str) -> list[str]:
    """A host app that reads the request and runs ``script`` with ``req`` bound."""
    return [sys.executable, "-c",
            "import sys, json, os; req = json.loads(sys.stdin.readline()); " + script]


def test_session_env_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_sync(tmp_path / "s.sync", allow_hosts=("example.com",))
    monkeypatch.setenv("FOO", "foo-value")
    monkeypatch.setenv("BAR", "not allowed")
    monkeypatch.setenv("SECRET_TOKEN", "must not leak")
    monkeypatch.setenv("CAPSULE_X", "kept")
    reply_env = ('print(json.dumps({"version": req["version"], "request_id": '
                 'req["request_id"], "ok": True, "result": dict(os.environ), "error": None}))')
    session = GuestSession(path, host_app=_fake_host_app(reply_env))
    session.allow_env_var("FOO")
    session.allow_env_var("BAR")
    session.allow_host("example.com")
    session.set_cpu_limit_ms(1500)
    env = session.execute_read_payload().result
    assert env["FOO"] == "foo-value" and env["CAPSULE_X"] == "kept"
    assert "BAR" not in env and "SECRET_TOKEN" not in env
    assert (env["ALLOW_HOSTS"], env["ALLOW_ENV"]) == ("example.com", "FOO")
    assert (env["GUEST_ROLE"], env["GUEST_MODE"]) == ("consumer", "headless")
    assert env["CAPSULE_GUEST_PROTOCOL"] == GUEST_PROTOCOL_VERSION
    assert env["SYNC_PATH"] == str(path) and env["GUEST_CPU_LIMIT_MS"] == "1500"


@pytest.mark.parametrize(
    ("script", "code"),
    [
        ('print("garbage")', "ProtocolError"),
        ('print(json.dumps({"version": "guest.v1", "request_id": "guest-0", "ok": True, '
         '"result": None, "error": None}))', "ProtocolError"),
        ('print(json.dumps({"version": "guest.v9", "request_id": req["request_id"], '
         '"ok": True, "result": None, "error": None}))', "ProtocolError"),
        ('print(json.dumps({"version": "guest.v1", "request_id": req["request_id"], '
         '"ok": True, "result": None, "error": None})); sys.exit(3)', "ExecutionFailed"),
        ('print(json.dumps({"version": "guest.v1", "request_id": req["request_id"], '
         '"ok": False, "result": None, "error": None}))', "ExecutionFailed"),
    ],
)
def test_session_checks_replies(tmp_path: Path, script: str, code: str) -> None:
    path = make_sync(tmp_path / "s.sync")
    response = GuestSession(path, host_app=_fake_host_app(script)).execute_read_payload()
    assert not response.ok and response.error is not None
    assert response.error.code.value == code
    if code == "ProtocolError":
        assert set(response.result) == {"stdout", "stderr"}


def test_session_default_host_app(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("lockbox.__main__") is None:
        pytest.skip("python -m lockbox needs pycore/lockbox/__main__.py (not landed yet)")
    path = make_sync(tmp_path / "s.sync")
    assert GuestSession(path).execute_read_payload_bytes() == PAYLOAD


def test_module_entry_point(tmp_path: Path) -> None:
    path = make_sync(tmp_path / "s.sync")
    session = GuestSession(path, host_app=[sys.executable, "-m", "lockbox.formats.sync.guest"])
    assert session.execute_read_payload_bytes() == PAYLOAD
