"""`pip install .` (a wheel, not an editable install) gives a `parley` that serves.

Everything the server reads at run time (migrations, request schemas, the example config) has to
be inside the wheel; an editable install or a checkout hides a missing file, so this builds the
wheel from a clean copy of the sources, installs it into a new virtualenv and runs its `parley`
from an empty working directory, where nothing can be found by accident. Dependencies come from
the package index pip is configured with, as for a user; the whole test takes about 20 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

from homeserver.config import generate_config_yaml
from tests.helpers import Client
from tests.system.proc import ServerProcess, open_server_env

REPO = Path(__file__).resolve().parent.parent.parent
# Not sources: build output and caches would leak stale files into the wheel.
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ".mypy_cache", ".ruff_cache", "node_modules", "parley-data")


def _pip_env() -> dict[str, str]:
    """The caller's environment (pip's index settings included) without anything that would let
    the new interpreter see this checkout or the test virtualenv."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PARLEY_")}


def _run(*cmd: str | Path, cwd: Path, timeout: float = 240.0) -> str:
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_pip_env(), capture_output=True,
                         text=True, timeout=timeout, check=False)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _build_wheel(work: Path) -> Path:
    src = work / "src"
    shutil.copytree(REPO, src, ignore=_NOT_SOURCES, symlinks=True)
    dist = work / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, src, cwd=work)
    wheels = list(dist.glob("parley-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


async def test_installed_wheel_runs_a_server(fresh_database: str, tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="parley-wheel-") as d:
        work = Path(d)
        wheel = _build_wheel(work)
        venv = work / "venv"
        _run(sys.executable, "-m", "venv", venv, cwd=work)
        _run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=work)

        # An empty working directory: no checkout, no migrations/ folder, no config.
        cwd = tmp_path / "cwd"
        cwd.mkdir()
        where = _run(venv / "bin" / "python", "-c",
                     "import client_api, homeserver, migrations\n"
                     "for m in (client_api, homeserver, migrations): print(m.__file__)", cwd=cwd)
        site = (venv / "lib").resolve()
        for path in where.split():
            assert Path(path).resolve().is_relative_to(site), where

        # generate-config starts from the example config the wheel ships, not a bare fallback.
        generated = _run(venv / "bin" / "parley", "generate-config", "--server-name",
                         "wheel.test", cwd=cwd)
        assert generated == generate_config_yaml("wheel.test")

        env = open_server_env(fresh_database, cwd / "data", PARLEY_SERVER_NAME="wheel.test")
        env.pop("PYTHONPATH", None)
        hs = ServerProcess(env, cwd, tmp_path / "server.log",
                           command=[str(venv / "bin" / "parley"), "run"])
        try:
            hs.start()
            await hs.wait_ready()
            async with aiohttp.ClientSession() as s:
                c = Client(hs.url, s)
                alice = await c.register("alice")
                assert alice.user_id == "@alice:wheel.test"
                room = await c.create_room(alice, name="from a wheel")
                event_id = await c.send(alice, room, "hello from an installed parley")
                status, body = await c.request("GET", f"/rooms/{room}/event/{event_id}",
                                               token=alice.access_token)
                assert status == 200, body
                assert body["content"]["body"] == "hello from an installed parley"
            assert hs.terminate() == 0, hs.log()
        finally:
            hs.stop()
        # The first start wrote its config from the shipped example too.
        written = (cwd / "data" / "homeserver.yaml").read_text()
        assert written == generate_config_yaml("wheel.test", ".")
