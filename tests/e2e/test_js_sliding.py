"""matrix-js-sdk's SlidingSync client against this test run's server (Simplified Sliding Sync on
the unstable path the SDK calls): clients/matrix-js-sdk/sliding.mjs runs two clients with the Rust
crypto that sync only through sliding sync — a list window over two rooms, a new message moving a
room to the top, an encrypted message decrypting through the to_device and e2ee extensions, and a
to-device message — and prints OK. Same Node and npm needs as test_js_crypto.py."""

from __future__ import annotations

import os

from tests.conftest import Server
from tests.e2e.test_js_crypto import js_sdk_installed, run  # noqa: F401 (the fixture)

SCRIPT_TIMEOUT_MS = 60_000


async def test_matrix_js_sdk_sliding_sync(server: Server, js_sdk_installed: str) -> None:  # noqa: F811
    env = {**os.environ, "PARLEY_JS_TIMEOUT_MS": str(SCRIPT_TIMEOUT_MS)}
    rc, out = await run(js_sdk_installed, "sliding.mjs", server.url,
                        timeout=SCRIPT_TIMEOUT_MS / 1000 + 10, env=env)
    assert rc == 0, f"sliding.mjs exited {rc}:\n{out[-6000:]}"
    lines = out.strip().splitlines()
    assert lines and lines[-1].endswith(" OK"), out[-6000:]
    for step in ("window [0, 0] holds the most recent room",
                 "moves it to the top of alice's window",
                 "decrypts on alice's device", "reaches alice's client"):
        assert any("ok:" in line and step in line for line in lines), (step, out[-6000:])
