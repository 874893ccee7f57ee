"""The distribution: one wheel ``lockbox`` holding lockbox and lockbox_server (the
``[server]`` extra), ``py.typed`` in both, the version written once; the viewer packaged in a
wheel is what ``lockbox_server.default_site_dir`` finds; one server command line.

The wheels are built with build.py's ``build_dist_wheel`` (``pip wheel --no-deps`` on a clean
copy of the sources: a few seconds each).
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import lockbox
from build_helpers import load_build
from cli_helpers import lockbox_command
from lockbox_server import sitedir

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD = 120  # seconds: a pip wheel that never ends fails instead of hanging


@pytest.fixture(scope="module")
def build() -> ModuleType:
    return load_build()


@pytest.fixture(scope="module")
def plain_wheel(build: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``pip wheel .`` makes: no viewer."""
    return Path(build.build_dist_wheel(tmp_path_factory.mktemp("plain"), quiet=True))


@pytest.fixture(scope="module")
def viewer_wheel(build: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``python build.py --wheel`` makes, with a two-file stand-in for the site."""
    site = tmp_path_factory.mktemp("site")
    (site / "index.html").write_text("<!doctype html><title>viewer</title>\n")
    (site / "vendor").mkdir()
    (site / "vendor" / "crypto.0123456789ab.mjs").write_text("export {};\n")
    return Path(build.build_dist_wheel(tmp_path_factory.mktemp("viewer"), site_dir=site,
                                       quiet=True))


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        (meta,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(z.read(meta).decode())


def _sources(package: Path) -> set[str]:
    return {f"{package.name}/{p.relative_to(package).as_posix()}"
            for p in package.rglob("*.py") if "__pycache__" not in p.parts}


def test_one_wheel_holds_both_packages(plain_wheel: Path) -> None:
    assert plain_wheel.name == f"lockbox-{lockbox.__version__}-py3-none-any.whl"
    names = _names(plain_wheel)
    assert _sources(ROOT / "pycore" / "lockbox") <= names
    assert _sources(ROOT / "server" / "lockbox_server") <= names
    assert {"lockbox/py.typed", "lockbox_server/py.typed"} <= names
    tops = {n.split("/")[0] for n in names}
    assert tops == {"lockbox", "lockbox_server", f"lockbox-{lockbox.__version__}.dist-info"}
    assert not [n for n in names if n.startswith("lockbox_server/viewer/")]  # no viewer


def test_metadata_version_and_server_extra(plain_wheel: Path) -> None:
    meta = _metadata(plain_wheel)
    assert meta["Name"] == "lockbox" and meta["Version"] == lockbox.__version__
    assert "server" in meta.get_all("Provides-Extra")
    requires = meta.get_all("Requires-Dist")
    server = [r for r in requires if 'extra == "server"' in r]
    assert {r.split(";")[0].split("=")[0].split("<")[0].split(">")[0] for r in server} == {
        "starlette", "uvicorn", "h11", "anyio", "wsgidav", "cheroot",  # wsgidav: lockbox mount
        "httptools", "uvloop"}  # the range server's fast parser and loop (CPython only)
    server_only = ("starlette", "uvicorn", "wsgidav", "cheroot")
    assert not [r for r in requires if r.startswith(server_only) and "extra" not in r]
    with zipfile.ZipFile(plain_wheel) as z:
        entry_points = z.read(f"lockbox-{lockbox.__version__}.dist-info/entry_points.txt")
    assert b"lockbox = lockbox.cli:run" in entry_points
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]  # written once


def test_site_wheel_is_the_core_only(build: ModuleType) -> None:
    """The wheel in the site (Pyodide) has lockbox and its py.typed, not the server."""
    names = _names(Path(build.build_wheel(quiet=True)))
    assert "lockbox/py.typed" in names and "lockbox/__init__.py" in names
    assert not [n for n in names if n.startswith("lockbox_server/")]


def _site_dir_seen_from(wheel: Path, tmp_path: Path) -> str:
    """default_site_dir() of the lockbox_server unpacked from ``wheel`` (as a wheel install
    lays it out, with no checkout around), without $LOCKBOX_SITE."""
    unpacked = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(unpacked)
    env = {k: v for k, v in os.environ.items() if k != sitedir.SITE_ENV}
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
         "import lockbox_server; assert lockbox_server.__file__.startswith(sys.argv[1]); "
         "print(lockbox_server.default_site_dir())", str(unpacked)],
        capture_output=True, text=True, env=env, timeout=HANG_GUARD, check=True)
    return done.stdout.strip().replace(str(unpacked), "SITE-PACKAGES")


def test_the_viewer_packaged_in_the_wheel_is_found(viewer_wheel: Path, plain_wheel: Path,
                                                   tmp_path: Path) -> None:
    names = _names(viewer_wheel)
    assert {"lockbox_server/viewer/index.html",
            "lockbox_server/viewer/vendor/crypto.0123456789ab.mjs"} <= names
    assert _names(plain_wheel) <= names
    assert _site_dir_seen_from(viewer_wheel, tmp_path / "a") == (
        "SITE-PACKAGES/lockbox_server/viewer")
    assert _site_dir_seen_from(plain_wheel, tmp_path / "b") == "None"


def test_default_site_dir_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = tmp_path / "checkout"
    package = checkout / "server" / "lockbox_server"
    package.mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    (checkout / "dist" / "site").mkdir(parents=True)
    packaged = package / "viewer"
    packaged.mkdir()
    monkeypatch.setattr(sitedir, "_PACKAGE_DIR", package)
    monkeypatch.setattr(sitedir, "PACKAGED_SITE", packaged)
    monkeypatch.delenv(sitedir.SITE_ENV, raising=False)
    assert sitedir.default_site_dir() is None  # folders without index.html do not count
    (checkout / "dist" / "site" / "index.html").write_text("")
    assert sitedir.default_site_dir() == str(checkout / "dist" / "site")
    (packaged / "index.html").write_text("")
    assert sitedir.default_site_dir() == str(packaged)
    monkeypatch.setenv(sitedir.SITE_ENV, "/somewhere/else")
    assert sitedir.default_site_dir() == "/somewhere/else"
    monkeypatch.setenv(sitedir.SITE_ENV, "")  # empty: unset
    assert sitedir.default_site_dir() == str(packaged)
    (checkout / "pyproject.toml").unlink()  # not a checkout: its dist/site is not looked at
    (packaged / "index.html").unlink()
    assert sitedir.default_site_dir() is None


def test_one_server_command_line() -> None:
    """``python -m lockbox_server ARGS`` is ``lockbox serve ARGS``: the same help."""
    module = subprocess.run([sys.executable, "-m", "lockbox_server", "--help"],
                            capture_output=True, text=True, timeout=HANG_GUARD, check=False)
    serve = subprocess.run([*lockbox_command(), "serve", "--help"],
                           capture_output=True, text=True, timeout=HANG_GUARD, check=False)
    assert module.returncode == serve.returncode == 0, (module.stderr, serve.stderr)
    assert module.stdout == serve.stdout
    for option in ("--host", "--port", "--site", "--allow-origin"):
        assert option in module.stdout


def test_a_core_only_install_names_the_extra() -> None:
    """Without the [server] extra's packages, importing lockbox_server says what to install."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['starlette'] = None\n"
         "try:\n    import lockbox_server\n"
         "except ModuleNotFoundError as e:\n    print(e.name, e)"],
        capture_output=True, text=True, timeout=HANG_GUARD, check=True)
    assert done.stdout == (
        "starlette lockbox_server needs starlette: pip install 'lockbox[server]'\n")
