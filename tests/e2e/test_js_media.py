"""matrix-js-sdk's media calls against this test run's server: clients/matrix-js-sdk/media.mjs
uploads an avatar and a file with `uploadContent`, sets the avatar, and another user downloads
the file and a thumbnail through authenticated media (`mxcUrlToHttp(..., useAuthentication)`).

Like test_js_crypto.py it needs Node 20+ and npm (it runs `npm ci` when the SDK is not installed
yet) and fails, rather than skips, without them."""

from __future__ import annotations

import shutil

from tests.conftest import Server
from tests.e2e.test_js_crypto import CLIENT_DIR, NPM_TIMEOUT, run

STEPS = ("uploadContent + setAvatarUrl", "download via mxcUrlToHttp(useAuthentication)",
         "thumbnail via mxcUrlToHttp", "getMediaConfig")


async def test_matrix_js_sdk_media(server: Server) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node is not None and npm is not None, "Node.js 20+ and npm are needed"
    if not (CLIENT_DIR / "node_modules" / "matrix-js-sdk").is_dir():
        rc, out = await run(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error",
                            timeout=NPM_TIMEOUT)
        assert rc == 0, f"npm ci failed:\n{out[-4000:]}"
    rc, out = await run(node, "media.mjs", server.url, timeout=60)
    assert rc == 0, f"media.mjs exited {rc}:\n{out[-4000:]}"
    lines = out.strip().splitlines()
    assert lines and lines[-1] == "OK", out[-4000:]
    for step in STEPS:
        assert any(line.startswith("ok: " + step) for line in lines), (step, out[-4000:])
