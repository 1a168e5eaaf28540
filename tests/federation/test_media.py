"""Remote media between two Parley servers over real TLS on loopback: a client of B downloads
and thumbnails media uploaded on A (through /_matrix/federation/v1/media/download), B keeps it
in its cache, and the federation media endpoints themselves (multipart answers, X-Matrix); and,
against a stand-in remote server, the answers Parley never gives (Location, the deprecated
endpoint, too large, malformed, cut off)."""

from __future__ import annotations

import asyncio
import io
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image

from federation.client import FederationClient
from federation.tls import client_context
from homeserver.outbound import OutboundPolicy, parse_ranges
from tests.conftest import free_port
from tests.federation.conftest import LOOPBACK, Factory, FedServer, fed_config
from tests.federation.pki import Cert, LocalCA
from tests.helpers import User

V1 = "/_matrix/client/v1/media"


def png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


async def _upload(s: FedServer, user: User, data: bytes, ctype: str, name: str) -> str:
    async with s.http.post(s.client_url + "/_matrix/media/v3/upload", data=data,
                           params={"filename": name},
                           headers={"Authorization": f"Bearer {user.access_token}",
                                    "Content-Type": ctype}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    uri: str = body["content_uri"]
    assert uri.startswith(f"mxc://{s.name}/")
    return uri.rsplit("/", 1)[1]


async def _get(s: FedServer, user: User, path: str, **params: str
               ) -> tuple[int, dict[str, str], bytes]:
    async with s.http.get(s.client_url + V1 + path, params=params,
                          headers={"Authorization": f"Bearer {user.access_token}"}) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def _json(raw: bytes) -> Any:
    import orjson
    return orjson.loads(raw)


async def test_client_of_b_gets_media_uploaded_on_a(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob = await a.client.register("alice"), await b.client.register("bob")
    image = png(640, 480)
    media_id = await _upload(a, alice, image, "image/png", "sunset.png")
    text_id = await _upload(a, alice, b"hello over federation", "text/plain", "notes.txt")

    status, headers, body = await _get(b, bob, f"/download/{a.name}/{media_id}")
    assert status == 200, body
    assert body == image
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == 'inline; filename="sunset.png"'
    status, headers, body = await _get(b, bob, f"/download/{a.name}/{text_id}/other.txt")
    assert (status, body) == (200, b"hello over federation")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Disposition"] == 'inline; filename="other.txt"'

    # a thumbnail of A's image, made by B from its cached copy
    status, headers, body = await _get(b, bob, f"/thumbnail/{a.name}/{media_id}",
                                       width="64", height="64", method="scale")
    assert status == 200, body
    with Image.open(io.BytesIO(body)) as thumb:
        assert thumb.size[0] < 640 and thumb.size[0] * 3 == thumb.size[1] * 4

    # B keeps it: after A stops serving it (quarantine there), B still has it...
    rows = await b.hs.db.pool.fetch(
        "SELECT media_id, size FROM remote_media WHERE origin = $1 ORDER BY media_id", a.name)
    assert sorted((r["media_id"], r["size"]) for r in rows) == sorted(
        [(media_id, len(image)), (text_id, len(b"hello over federation"))])
    assert await a.hs.media.service.set_quarantined(a.name, media_id)
    status, _, _ = await _get(a, alice, f"/download/{a.name}/{media_id}")
    assert status == 404
    status, _, body = await _get(b, bob, f"/download/{a.name}/{media_id}")
    assert (status, body) == (200, image)

    # ...and what it has not cached yet is fetched no longer (allow_remote=false) or not found.
    other_id = await _upload(a, alice, b"second", "text/plain", "second.txt")
    status, _, body = await _get(b, bob, f"/download/{a.name}/{other_id}",
                                 allow_remote="false")
    assert status == 404 and _json(body)["errcode"] == "M_NOT_FOUND"
    for path in (f"/download/{a.name}/doesnotexist", f"/download/{a.name}/{media_id}x"):
        status, _, body = await _get(b, bob, path)
        assert status == 404 and _json(body)["errcode"] == "M_NOT_FOUND", body
    status, _, body = await _get(b, bob, f"/thumbnail/{a.name}/nosuchmedia",
                                 width="32", height="32")
    assert status == 404 and _json(body)["errcode"] == "M_NOT_FOUND", body
    # a server that cannot be reached is 502, never a 500
    status, _, body = await _get(b, bob, "/download/127.0.0.1:1/abcdef")
    assert status == 502 and _json(body)["errcode"] == "M_UNKNOWN", body
    # the server name in the URI decides: B's own media id under A's name is not B's
    bob_id = await _upload(b, bob, b"bob's", "text/plain", "b.txt")
    status, _, body = await _get(b, bob, f"/download/{a.name}/{bob_id}")
    assert status == 404, body


async def test_federation_media_endpoints(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice = await a.client.register("alice")
    image = png(300, 200)
    media_id = await _upload(a, alice, image, "image/png", "wide.png")
    client = FederationClient(b.key, OutboundPolicy(parse_ranges(LOOPBACK)),
                              client_context(b.config.federation_ca_file))
    try:
        async def fetch(path: str) -> tuple[int, str, list[tuple[dict[str, str], bytes]]]:
            async with client.stream(a.name, path) as resp:
                if resp.status != 200:
                    return resp.status, resp.content_type, [({}, await resp.read())]
                reader = aiohttp.MultipartReader(resp.headers, resp.content)
                parts = []
                while (part := await reader.next()) is not None:
                    assert isinstance(part, aiohttp.BodyPartReader)
                    parts.append((dict(part.headers), bytes(await part.read())))
                return resp.status, resp.content_type, parts

        status, ctype, parts = await fetch(f"/_matrix/federation/v1/media/download/{media_id}")
        assert (status, ctype, len(parts)) == (200, "multipart/mixed", 2)
        assert parts[0] == ({"Content-Type": "application/json"}, b"{}")
        assert parts[1][0]["Content-Type"] == "image/png"
        assert parts[1][0]["Content-Disposition"] == 'inline; filename="wide.png"'
        assert parts[1][1] == image

        status, ctype, parts = await fetch(
            f"/_matrix/federation/v1/media/thumbnail/{media_id}?width=32&height=32&method=crop")
        assert (status, ctype, len(parts)) == (200, "multipart/mixed", 2)
        assert parts[1][0]["Content-Type"] in ("image/png", "image/jpeg")
        with Image.open(io.BytesIO(parts[1][1])) as thumb:
            assert thumb.size == (32, 32)

        status, _, parts = await fetch("/_matrix/federation/v1/media/download/unknown")
        assert status == 404 and _json(parts[0][1])["errcode"] == "M_NOT_FOUND"
        status, _, parts = await fetch(f"/_matrix/federation/v1/media/thumbnail/{media_id}")
        assert status == 400 and _json(parts[0][1])["errcode"] == "M_MISSING_PARAM"
        status, _, parts = await fetch(
            f"/_matrix/federation/v1/media/thumbnail/{media_id}?width=x&height=32")
        assert status == 400 and _json(parts[0][1])["errcode"] == "M_INVALID_PARAM"
        text_id = await _upload(a, alice, b"plain", "text/plain", "t.txt")
        status, _, parts = await fetch(
            f"/_matrix/federation/v1/media/thumbnail/{text_id}?width=32&height=32")
        assert status == 400 and _json(parts[0][1])["errcode"] == "M_UNKNOWN"
    finally:
        await client.close()

    # without an X-Matrix signature: 401, whatever the media
    ssl_ctx = client_context(a.config.federation_ca_file)
    for path in (f"/download/{media_id}", f"/thumbnail/{media_id}?width=32&height=32"):
        async with a.http.get(a.fed_url + "/_matrix/federation/v1/media" + path,
                              ssl=ssl_ctx) as resp:
            assert resp.status == 401
            assert (await resp.json())["errcode"] == "M_UNAUTHORIZED"


# ---------------------------------------------------------------- answers Parley never gives

def _multipart(second_part_headers: str, payload: bytes = b"") -> web.Response:
    body = (b"--XyZ\r\nContent-Type: application/json\r\n\r\n{}\r\n--XyZ\r\n"
            + second_part_headers.encode() + b"\r\n\r\n" + payload + b"\r\n--XyZ--\r\n")
    return web.Response(body=body, headers={"Content-Type": "multipart/mixed; boundary=XyZ"})


@asynccontextmanager
async def other_server(cert: Cert, hits: dict[str, int]) -> AsyncIterator[str]:
    """A remote homeserver (TLS on loopback, name `127.0.0.1:PORT`) whose media answers are
    ones Parley itself never gives: a Location redirect, a deprecated-endpoints-only server,
    oversized, malformed and cut-off answers."""
    port = free_port()
    name = f"127.0.0.1:{port}"

    async def media(request: web.Request) -> web.StreamResponse:
        assert request.headers["Authorization"].startswith("X-Matrix ")
        what = request.match_info["media_id"]
        hits[what] = hits.get(what, 0) + 1
        if what == "slow":
            await asyncio.sleep(0.3)
            return _multipart("Content-Type: text/plain", b"worth the wait")
        if what == "redirected":
            return _multipart(f"Location: https://{name}/files/cat.txt")
        if what == "redirected_inside":
            return _multipart("Location: http://10.0.0.1/files/cat.txt")
        if what == "oldstyle":
            return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "?"}, status=404)
        if what == "huge":
            return _multipart("Content-Type: application/octet-stream", b"x" * 5000)
        if what == "notmultipart":
            return web.Response(body=b"surprise", content_type="text/plain")
        if what == "cutoff":
            resp = web.StreamResponse(
                headers={"Content-Type": "multipart/mixed; boundary=XyZ"})
            resp.content_length = 100_000
            await resp.prepare(request)
            await resp.write(b"--XyZ\r\nContent-Type: application/json\r\n\r\n{}\r\n--XyZ\r\n"
                             b"Content-Type: text/plain\r\n\r\npartial")
            assert request.transport is not None
            request.transport.close()
            return resp
        if what == "toolarge":
            return web.json_response({"errcode": "M_TOO_LARGE", "error": "no"}, status=502)
        return web.json_response({"errcode": "M_NOT_FOUND", "error": "no"}, status=404)

    async def file(request: web.Request) -> web.Response:
        return web.Response(body=b"meow", headers={
            "Content-Type": "text/plain", "Content-Disposition": 'inline; filename="cat.txt"'})

    async def legacy(request: web.Request) -> web.Response:
        assert request.query["allow_remote"] == "false"
        assert request.match_info["server_name"] == name
        return web.Response(body=b"from the old endpoint", headers={
            "Content-Type": "text/plain", "Content-Disposition": "inline; filename=old.txt"})

    app = web.Application()
    app.router.add_get("/_matrix/federation/v1/media/download/{media_id}", media)
    app.router.add_get("/files/cat.txt", file)
    app.router.add_get("/_matrix/media/v3/download/{server_name}/{media_id}", legacy)
    ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ssl_ctx.load_cert_chain(cert.cert, cert.key)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_ctx).start()
    try:
        yield name
    finally:
        await runner.cleanup()


async def test_redirects_fallback_and_bad_answers(make_server: Factory, server_cert: Cert,
                                                  tmp_path: Path, local_ca: LocalCA) -> None:
    cfg = fed_config(tmp_path, server_cert, local_ca.ca_file)
    b: FedServer = await make_server(config=replace(
        cfg, media=replace(cfg.media, max_upload_bytes=4000)))
    bob = await b.client.register("bob")
    hits: dict[str, int] = {}
    async with other_server(server_cert, hits) as name:
        # many asking at once: one fetch, and everyone gets the bytes
        got = await asyncio.gather(*(_get(b, bob, f"/download/{name}/slow") for _ in range(5)))
        assert [(s, body) for s, _, body in got] == [(200, b"worth the wait")] * 5
        assert hits["slow"] == 1
        status, headers, body = await _get(b, bob, f"/download/{name}/redirected")
        assert (status, body) == (200, b"meow")
        assert headers["Content-Disposition"] == 'inline; filename="cat.txt"'
        status, headers, body = await _get(b, bob, f"/download/{name}/oldstyle")
        assert (status, body) == (200, b"from the old endpoint")
        assert headers["Content-Disposition"] == 'inline; filename="old.txt"'
        # a Location into a denied range is not followed; beyond the size limit, cut-off,
        # not multipart, or the remote's own errors: 502 (M_TOO_LARGE where it is that)
        for media_id, errcode in (("redirected_inside", "M_UNKNOWN"), ("huge", "M_TOO_LARGE"),
                                  ("toolarge", "M_TOO_LARGE"), ("notmultipart", "M_UNKNOWN"),
                                  ("cutoff", "M_UNKNOWN")):
            status, _, body = await _get(b, bob, f"/download/{name}/{media_id}")
            assert (status, _json(body)["errcode"]) == (502, errcode), (media_id, body)
        status, _, body = await _get(b, bob, f"/download/{name}/absent")
        assert (status, _json(body)["errcode"]) == (404, "M_NOT_FOUND")
        rows = await b.hs.db.pool.fetch(
            "SELECT media_id FROM remote_media WHERE origin = $1 ORDER BY media_id", name)
        assert [r["media_id"] for r in rows] == ["oldstyle", "redirected", "slow"]
    # what was cached is served with the other server gone
    status, _, body = await _get(b, bob, f"/download/{name}/redirected")
    assert (status, body) == (200, b"meow")
