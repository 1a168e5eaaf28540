"""matrix-js-sdk with its Rust crypto (the stack Element Web runs) against this test run's server:
clients/matrix-js-sdk/crypto.mjs does an encrypted DM both ways, cross-signing, secret storage, a
key backup restored on a new device and an emoji verification over to-device, and prints OK;
when /versions advertises org.matrix.msc3814, also dehydrated devices (--dehydration).

It needs Node 20+ and npm with registry access (npm ci installs the locked versions into
clients/matrix-js-sdk/node_modules, which git ignores). Without them the test fails and says so:
a missing tool must not read as a pass."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.helpers import Client

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "matrix-js-sdk"
NPM_TIMEOUT = 240
SCRIPT_TIMEOUT_MS = 80_000
MSC3814 = "org.matrix.msc3814"


async def run(*cmd: str, timeout: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=CLIENT_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=env)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s:\n{out.decode()[-4000:]}")
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.fixture(scope="session")
async def js_sdk_installed() -> str:
    """Runs npm ci once per test run; returns the node binary."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js 20+ and npm are needed for the matrix-js-sdk crypto check "
                    f"(node: {node}, npm: {npm}); install them, they are part of the test setup")
    rc, version = await run(node, "--version", timeout=30)
    m = re.match(r"v(\d+)\.", version.strip())
    assert rc == 0 and m and int(m.group(1)) >= 20, f"need Node 20 or newer, have {version!r}"
    rc, out = await run(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error",
                        timeout=NPM_TIMEOUT)
    assert rc == 0, f"npm ci in {CLIENT_DIR} failed (needs the npm registry):\n{out[-4000:]}"
    return node


async def test_matrix_js_sdk_rust_crypto(server: Server, js_sdk_installed: str,
                                         raw: Client) -> None:
    # Dehydrated devices are checked as soon as /versions advertises them: advertising MSC3814
    # is the server's promise that matrix-js-sdk's dehydration works against it.
    status, versions = await raw.request("GET", "/_matrix/client/versions")
    assert status == 200, versions
    dehydration = versions["unstable_features"].get(MSC3814) is True
    env = {**os.environ, "PARLEY_JS_TIMEOUT_MS": str(SCRIPT_TIMEOUT_MS)}
    args = ["crypto.mjs", server.url] + (["--dehydration"] if dehydration else [])
    rc, out = await run(js_sdk_installed, *args, timeout=SCRIPT_TIMEOUT_MS / 1000 + 10, env=env)
    assert rc == 0, f"crypto.mjs exited {rc}:\n{out[-6000:]}"
    lines = out.strip().splitlines()
    assert lines and lines[-1].endswith(" OK"), out[-6000:]
    for step in ("bob decrypts", "alice decrypts", "bootstrapCrossSigning",
                 "bootstrapSecretStorage", "restoreKeyBackup",
                 "new device decrypts the messages sent before it existed",
                 "bob verifies alice's new device by emoji"):
        assert any("ok:" in line and step in line for line in lines), (step, out[-6000:])
    if dehydration:
        assert any("ok:" in line and "rehydrates and decrypts" in line for line in lines), out
