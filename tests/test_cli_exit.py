"""``lockbox.cli.run`` (``python -m lockbox``): the process ends without the interpreter's
teardown, but with everything the teardown would have done that can be seen: the exit
code, every byte of the output (also through a pipe), atexit handlers, a thread still at
work, a broken pipe reported as before."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lockbox import cli

PW = "pw"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKBOX_")}
    env.update(LOCKBOX_PASSWORD=PW, **extra)
    return env


def _lockbox(*args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "lockbox", *args], capture_output=True,
                          env=_env(), timeout=120, **kw)


@pytest.fixture
def many(make_archive: Any) -> Path:
    """An archive whose listing (~300 KiB) is larger than a pipe's buffer."""
    path: Path = make_archive({f"d{i // 100:02d}/{'n' * 40}{i:05d}.txt": b"x"
                               for i in range(6000)})
    return path


def test_the_output_is_complete_and_the_code_kept(many: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LOCKBOX_PASSWORD", PW)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert cli.main(["ls", "-R", str(many)]) == 0
    expected = capsys.readouterr().out.encode()
    done = _lockbox("ls", "-R", str(many))
    assert done.returncode == 0 and done.stdout == expected and len(expected) > 300_000
    assert done.stderr == b""
    done = _lockbox("ls", str(many), "no/such/dir")
    assert done.returncode == 7 and done.stdout == b"" and done.stderr.startswith(b"lockbox: ")
    done = _lockbox("ls", "--no-such-flag", str(many))
    assert done.returncode == 2 and b"usage: lockbox ls" in done.stderr
    done = _lockbox("--version")
    assert done.returncode == 0 and done.stdout.startswith(b"lockbox ")


def test_atexit_handlers_run_and_running_threads_are_waited_for(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    code = (
        "import atexit, sys, threading, time\n"
        "from lockbox import cli\n"
        f"marks = {str(marks)!r}\n"
        "def mark(text):\n"
        "    with open(marks, 'a') as f:\n"
        "        f.write(text + '\\n')\n"
        "atexit.register(mark, 'atexit')\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), mark('thread'))).start()\n"
        "sys.argv = ['lockbox', '--version']\n"
        "cli.run()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=_env(),
                          timeout=120)
    assert done.returncode == 0 and done.stdout.startswith(b"lockbox ")
    assert sorted(marks.read_text().split()) == ["atexit", "thread"]
    code = code.replace("threading.Thread", "(lambda **kw: None) or threading.Thread")
    marks.unlink()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=_env(),
                          timeout=120)
    assert done.returncode == 0 and marks.read_text() == "atexit\n"


def _closed_early(command: list[str]) -> tuple[bytes, int, bytes]:
    """``COMMAND | head -1``: the first line, the exit code, stderr."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=_env()) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        rc = proc.wait(timeout=120)
    return first, rc, err


def test_a_closed_pipe_is_reported_as_before(many: Path) -> None:
    """``lockbox ls -R | head -1``: the reader goes away; the same exit code and stderr as
    with the ordinary exit (``sys.exit(main())``), no traceback."""
    argv = ["ls", "-R", str(many)]
    first, rc, err = _closed_early([sys.executable, "-m", "lockbox", *argv])
    ordinary = _closed_early([sys.executable, "-c", "import sys; from lockbox.cli import main; "
                              f"sys.exit(main({argv!r}))"])
    assert first.startswith(b"d00/") and (first, rc, err) == ordinary
    assert rc in (0, 141) and b"Traceback" not in err
