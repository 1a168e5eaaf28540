"""The media repository over HTTP: upload, authenticated and legacy downloads, safe headers,
asynchronous uploads, limits, thumbnails, quarantine and retention, against a real server."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import struct
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from homeserver.config import MediaConfig, RateLimit, RateLimits
from tests.conftest import Server, start_server
from tests.conftest import test_config as make_config
from tests.helpers import Client, User

V1 = "/_matrix/client/v1/media"
LEGACY = "/_matrix/media/v3"


def png(w: int, h: int, color: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "PNG")
    return buf.getvalue()


def jpeg(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


def gif_animation(w: int, h: int, frames: int = 4) -> bytes:
    buf = io.BytesIO()
    shots = [Image.new("RGB", (w, h), (i * 60, 0, 0)) for i in range(frames)]
    shots[0].save(buf, "GIF", save_all=True, append_images=shots[1:], duration=80, loop=0)
    return buf.getvalue()


def png_bomb(w: int, h: int) -> bytes:
    """A valid PNG declaring w x h pixels, all zero: a few kB that decode to w*h bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)  # 1-bit greyscale
    raw = zlib.compressobj(9)
    row = b"\x00" * (1 + (w + 7) // 8)
    data = b"".join(raw.compress(row) for _ in range(min(h, 2000))) + raw.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(
        b"IEND", b"")


class Media:
    """Raw HTTP calls to the media endpoints."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url, self.s = url, session

    async def upload(self, user: User, data: Any, content_type: str | None = "text/plain",
                     filename: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {user.access_token}"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        params = {"filename": filename} if filename else None
        async with self.s.post(self.url + LEGACY + "/upload", data=data, headers=headers,
                               params=params) as r:
            return r.status, await r.json(content_type=None)

    async def get(self, path: str, user: User | None = None, **params: str
                  ) -> tuple[int, bytes, Any]:
        headers = {"Authorization": f"Bearer {user.access_token}"} if user else {}
        async with self.s.get(self.url + path, headers=headers, params=params) as r:
            return r.status, await r.read(), r.headers

    async def mxc(self, user: User, data: bytes, content_type: str = "text/plain",
                  filename: str | None = None) -> tuple[str, str]:
        status, body = await self.upload(user, data, content_type, filename)
        assert status == 200, body
        server, media_id = body["content_uri"].removeprefix("mxc://").split("/")
        return server, media_id


@pytest.fixture
async def m(server: Server) -> AsyncIterator[Media]:
    async with aiohttp.ClientSession() as s:
        yield Media(server.url, s)


async def test_upload_then_download_by_another_user(c: Client, m: Media) -> None:
    alice, bob = await c.register(), await c.register()
    data = os.urandom(300_000)
    server, media_id = await m.mxc(alice, data, "application/octet-stream", "blob.bin")
    assert server == "parley.test" and media_id.replace("-", "").replace("_", "").isalnum()
    status, body, headers = await m.get(f"{V1}/download/{server}/{media_id}", bob)
    assert status == 200 and body == data
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == 'attachment; filename="blob.bin"'
    # a file name in the path replaces the uploaded one; a trailing slash (nio) is the same
    status, body, headers = await m.get(f"{V1}/download/{server}/{media_id}/other.dat", bob)
    assert status == 200 and body == data
    assert headers["Content-Disposition"] == 'attachment; filename="other.dat"'
    status, body, _ = await m.get(f"{V1}/download/{server}/{media_id}/", bob)
    assert status == 200 and body == data
    # authenticated media needs a token
    status, body, _ = await m.get(f"{V1}/download/{server}/{media_id}")
    assert status == 401 and b"M_MISSING_TOKEN" in body
    # unknown and malformed ids: 404
    for bad in (f"{server}/nosuchmedia", f"{server}/bad.id", "bad server/abc"):
        status, body, _ = await m.get(f"{V1}/download/{bad}", bob)
        assert status == 404 and b"M_NOT_FOUND" in body, (bad, body)


async def test_large_upload_is_streamed_not_buffered(c: Client, m: Media) -> None:
    """20 MB through the server in 64 kB chunks: the Python heap never holds more than a few
    MB of it at once (client and server share this process, so this bounds both)."""
    alice = await c.register()
    chunk = os.urandom(64 * 1024)
    count = 20 * 1024 * 1024 // len(chunk)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield chunk

    tracemalloc.start()
    try:
        status, resp = await m.upload(alice, body(), "application/octet-stream")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 200, resp
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes"
    server, media_id = resp["content_uri"].removeprefix("mxc://").split("/")
    async with m.s.get(f"{m.url}{V1}/download/{server}/{media_id}",
                       headers={"Authorization": f"Bearer {alice.access_token}"}) as r:
        assert r.status == 200 and r.content_length == count * len(chunk)
        digest = hashlib.sha256()
        async for part in r.content.iter_any():
            digest.update(part)
    assert digest.hexdigest() == hashlib.sha256(chunk * count).hexdigest()


async def test_odd_upload_input_gets_4xx_and_stores_nothing(c: Client, m: Media,
                                                            server: Server) -> None:
    alice = await c.register()
    rows = await server.hs.db.fetchval("SELECT count(*) FROM local_media")
    headers = {"Authorization": f"Bearer {alice.access_token}"}
    url = m.url + LEGACY + "/upload"
    for query in ("filename=a%00b", "filename=" + "x" * 9000):
        async with m.s.post(f"{url}?{query}", data=b"x", headers=headers) as r:
            assert 400 <= r.status < 500, (query, r.status)
            assert (await r.json())["errcode"].startswith("M_")
    for path in ("/upload/parley.test/bad.id", "/upload/parley.test/" + "a" * 300,
                 "/upload/not%20a%20server/abc"):
        async with m.s.put(m.url + LEGACY + path, data=b"x", headers=headers) as r:
            assert r.status == 404, (path, r.status)
    async with m.s.post(url, data=b"x") as r:  # no token
        assert r.status == 401 and (await r.json())["errcode"] == "M_MISSING_TOKEN"
    assert await server.hs.db.fetchval("SELECT count(*) FROM local_media") == rows
    # a Content-Type that is not printable ASCII is dropped (served as octet-stream)
    async with m.s.post(url, data=b"y", headers={**headers, "Content-Type": "text/\u00e9"}) as r:
        assert r.status == 200
        mxc = (await r.json())["content_uri"].removeprefix("mxc://")
    status, _, h = await m.get(f"{V1}/download/{mxc}", alice)
    assert status == 200 and h["Content-Type"] == "application/octet-stream"


async def test_head_and_range_downloads(c: Client, m: Media) -> None:
    alice = await c.register()
    server, media_id = await m.mxc(alice, bytes(range(256)) * 4, "application/octet-stream")
    path = f"{m.url}{V1}/download/{server}/{media_id}"
    auth = {"Authorization": f"Bearer {alice.access_token}"}
    async with m.s.head(path, headers=auth) as r:
        assert r.status == 200 and r.headers["Content-Length"] == "1024"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    async with m.s.get(path, headers={**auth, "Range": "bytes=10-19"}) as r:
        assert r.status == 206 and await r.read() == bytes(range(10, 20))


async def test_unicode_filename_and_config(c: Client, m: Media) -> None:
    alice = await c.register()
    server, media_id = await m.mxc(alice, b"hello", "text/plain", "h\u00e9llo w\u00f6rld.txt")
    status, body, headers = await m.get(f"{V1}/download/{server}/{media_id}", alice)
    assert status == 200 and body == b"hello"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Disposition"] == (
        "inline; filename*=utf-8''h%C3%A9llo%20w%C3%B6rld.txt")
    status, body, _ = await m.get(f"{V1}/config", alice)
    assert status == 200 and b'"m.upload.size":52428800' in body


@pytest.mark.parametrize(("ctype", "disposition"), [
    ("text/html", "attachment"), ("image/svg+xml", "attachment"),
    ("application/javascript", "attachment"), ("text/html; charset=utf-8", "attachment"),
    ("application/xhtml+xml", "attachment"), ("image/png", "inline"),
    ("IMAGE/PNG", "inline"), ("video/mp4", "inline"), ("application/pdf", "attachment"),
])
async def test_download_headers_keep_script_from_running(c: Client, m: Media, ctype: str,
                                                         disposition: str) -> None:
    alice = await c.register()
    page = b"<html><script>alert(document.cookie)</script></html>"
    server, media_id = await m.mxc(alice, page, ctype)
    for path in (f"{V1}/download/{server}/{media_id}", f"{V1}/download/{server}/{media_id}/x"):
        status, body, headers = await m.get(path, alice)
        assert status == 200 and body == page
        assert headers["Content-Disposition"].split(";")[0] == disposition
        assert headers["Content-Security-Policy"].startswith("sandbox;")
        assert "script-src 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Content-Type"].split(";")[0].lower() == ctype.split(";")[0].lower()


async def test_no_content_type_is_served_as_octet_stream(c: Client, m: Media) -> None:
    alice = await c.register()
    status, body = await m.upload(alice, b"<svg onload=alert(1)>", content_type=None)
    assert status == 200, body
    server, media_id = body["content_uri"].removeprefix("mxc://").split("/")
    status, _, headers = await m.get(f"{V1}/download/{server}/{media_id}", alice)
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == "attachment"


async def test_async_upload(c: Client, m: Media) -> None:
    alice, bob = await c.register(), await c.register()
    status, body = await c.request("POST", "/_matrix/media/v1/create", {},
                                   alice.access_token)
    assert status == 200, body
    assert body["unused_expires_at"] > 0
    server, media_id = body["content_uri"].removeprefix("mxc://").split("/")
    # not there yet: 504 M_NOT_YET_UPLOADED once the client's timeout passes
    status, raw, _ = await m.get(f"{V1}/download/{server}/{media_id}", bob, timeout_ms="100")
    assert status == 504 and b"M_NOT_YET_UPLOADED" in raw
    put = f"{LEGACY}/upload/{server}/{media_id}"
    # only its creator may fill it
    status, body = await c.request("PUT", put, token=bob.access_token, raw=b"x")
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    # a download waiting for the upload gets it as soon as it lands
    waiting = asyncio.ensure_future(
        m.get(f"{V1}/download/{server}/{media_id}", bob, timeout_ms="10000"))
    await asyncio.sleep(0.2)
    status, body = await c.request("PUT", put + "?filename=late.txt", token=alice.access_token,
                                   raw=b"finally here")
    assert status == 200 and body == {}
    status, raw, headers = await asyncio.wait_for(waiting, 5)
    assert status == 200 and raw == b"finally here"
    assert 'filename="late.txt"' in headers["Content-Disposition"]
    # no second upload to the same id
    status, body = await c.request("PUT", put, token=alice.access_token, raw=b"again")
    assert status == 409 and body["errcode"] == "M_CANNOT_OVERWRITE_MEDIA"
    # an id that was never created, or of another server
    for path in (f"{LEGACY}/upload/{server}/neverCreated", f"{LEGACY}/upload/other.test/x"):
        status, body = await c.request("PUT", path, token=alice.access_token, raw=b"x")
        assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_thumbnails(c: Client, m: Media, server: Server) -> None:
    alice = await c.register()
    srv, media_id = await m.mxc(alice, jpeg(1200, 900), "image/jpeg")
    sizes = [("32", "32", "crop", (32, 32)), ("96", "96", "crop", (96, 96)),
             ("300", "200", "scale", (320, 240)), ("640", "480", "scale", (640, 480)),
             ("800", "600", "scale", (800, 600))]
    for w, h, method, expected in sizes:
        status, body, headers = await m.get(f"{V1}/thumbnail/{srv}/{media_id}", alice,
                                            width=w, height=h, method=method)
        assert status == 200, body
        assert headers["Content-Type"] == "image/jpeg"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert Image.open(io.BytesIO(body)).size == expected
    # made once: a second request is served from the stored thumbnail
    rows = await server.hs.db.fetchval(
        "SELECT count(*) FROM media_thumbnails t JOIN local_media m ON m.sha256 ="
        " t.source_sha256 WHERE m.media_id = $1", media_id)
    assert rows == 5
    await m.get(f"{V1}/thumbnail/{srv}/{media_id}", alice, width="32", height="32",
                method="crop")
    assert await server.hs.db.fetchval(
        "SELECT count(*) FROM media_thumbnails t JOIN local_media m ON m.sha256 ="
        " t.source_sha256 WHERE m.media_id = $1", media_id) == 5
    # never upscaled: a small image is served as it is
    small = png(20, 10)
    srv, small_id = await m.mxc(alice, small, "image/png")
    status, body, _ = await m.get(f"{V1}/thumbnail/{srv}/{small_id}", alice, width="96",
                                  height="96", method="crop")
    assert status == 200 and body == small
    # bad parameters, and media that is not an image
    for params in ({"width": "0", "height": "10"}, {"width": "x", "height": "10"},
                   {"width": "10", "height": "10", "method": "stretch"},
                   {"width": "10", "height": "10", "animated": "yes"}):
        status, body, _ = await m.get(f"{V1}/thumbnail/{srv}/{small_id}", alice, **params)
        assert status == 400, (params, body)
    status, body, _ = await m.get(f"{V1}/thumbnail/{srv}/{media_id}", alice, height="10")
    assert status == 400 and b"M_MISSING_PARAM" in body
    srv, text_id = await m.mxc(alice, b"not an image", "text/plain")
    status, body, _ = await m.get(f"{V1}/thumbnail/{srv}/{text_id}", alice, width="32",
                                  height="32")
    assert status == 400
    srv, fake_id = await m.mxc(alice, b"not really a png", "image/png")
    status, body, _ = await m.get(f"{V1}/thumbnail/{srv}/{fake_id}", alice, width="32",
                                  height="32")
    assert status == 400 and b"errcode" in body


async def test_concurrent_requests_make_a_thumbnail_once(c: Client, m: Media,
                                                         server: Server) -> None:
    alice = await c.register()
    srv, media_id = await m.mxc(alice, jpeg(2000, 1500), "image/jpeg")
    results = await asyncio.gather(*(
        m.get(f"{V1}/thumbnail/{srv}/{media_id}", alice, width="640", height="480",
              method="scale") for _ in range(6)))
    assert {r[0] for r in results} == {200} and len({r[1] for r in results}) == 1
    assert await server.hs.db.fetchval(
        "SELECT count(*) FROM media_thumbnails t JOIN local_media m ON m.sha256 ="
        " t.source_sha256 WHERE m.media_id = $1", media_id) == 1


async def test_png_and_webp_thumbnails_keep_their_kind(c: Client, m: Media) -> None:
    alice = await c.register()
    buf = io.BytesIO()
    Image.new("RGBA", (500, 400), (0, 0, 255, 128)).save(buf, "WEBP")
    for data, ctype in ((png(500, 400), "image/png"), (buf.getvalue(), "image/webp")):
        srv, media_id = await m.mxc(alice, data, ctype)
        status, body, headers = await m.get(f"{V1}/thumbnail/{srv}/{media_id}", alice,
                                            width="96", height="96", method="crop")
        assert status == 200 and headers["Content-Type"] == "image/png"
        assert Image.open(io.BytesIO(body)).size == (96, 96)


async def test_animated_thumbnail(c: Client, m: Media) -> None:
    alice = await c.register()
    srv, media_id = await m.mxc(alice, gif_animation(400, 300), "image/gif")
    path = f"{V1}/thumbnail/{srv}/{media_id}"
    status, body, headers = await m.get(path, alice, width="96", height="96", method="crop",
                                        animated="true")
    assert status == 200 and headers["Content-Type"] == "image/gif"
    im = Image.open(io.BytesIO(body))
    assert im.size == (96, 96) and im.n_frames == 4
    # animated=false (or absent): never animated
    for params in ({"animated": "false"}, {}):
        status, body, headers = await m.get(path, alice, width="96", height="96",
                                            method="crop", **params)
        assert status == 200 and headers["Content-Type"] == "image/png"
        assert getattr(Image.open(io.BytesIO(body)), "n_frames", 1) == 1
    # a JPEG asked for animated=true gets the still thumbnail
    srv, jpeg_id = await m.mxc(alice, jpeg(400, 300), "image/jpeg")
    status, body, headers = await m.get(f"{V1}/thumbnail/{srv}/{jpeg_id}", alice, width="96",
                                        height="96", method="crop", animated="true")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"


async def test_decompression_bomb_is_refused(c: Client, m: Media) -> None:
    alice = await c.register()
    bomb = png_bomb(60_000, 60_000)  # 3.6 gigapixels
    assert len(bomb) < 200_000
    srv, media_id = await m.mxc(alice, bomb, "image/png")
    status, body, _ = await m.get(f"{V1}/thumbnail/{srv}/{media_id}", alice, width="96",
                                  height="96", method="crop")
    assert status == 413 and b"M_TOO_LARGE" in body
    # the file itself is still downloadable (it is only not decoded)
    status, body, _ = await m.get(f"{V1}/download/{srv}/{media_id}", alice)
    assert status == 200 and body == bomb


async def _media_server(tmp_path: Path, dsn: str, **media: Any) -> AsyncIterator[Server]:
    cfg = make_config(tmp_path, media=replace(MediaConfig(), **media))
    async for s in start_server(cfg, dsn):
        yield s


async def test_legacy_endpoints_follow_the_cut_over(fresh_database: str, tmp_path: Path
                                                    ) -> None:
    """Media uploaded before the freeze stays on the unauthenticated endpoints; media uploaded
    after it is only served with a token."""
    async with aiohttp.ClientSession() as s:
        async for srv in _media_server(tmp_path, fresh_database, freeze_unauthenticated=False):
            c, m = Client(srv.url, s), Media(srv.url, s)
            alice = await c.register("alice")
            host, old_id = await m.mxc(alice, png(200, 200), "image/png")
            status, body, _ = await m.get(f"{LEGACY}/download/{host}/{old_id}")
            assert status == 200
        async for srv in _media_server(tmp_path, fresh_database):  # the freeze, same data
            c, m = Client(srv.url, s), Media(srv.url, s)
            status, body = await c.request("POST", "/login", {
                "type": "m.login.password", "user": "alice", "password": "pw-secret-1"})
            assert status == 200, body
            alice = User(body["user_id"], body["access_token"], body["device_id"])
            _, new_id = await m.mxc(alice, png(200, 200, (1, 2, 3)), "image/png")
            for prefix in (LEGACY, "/_matrix/media/r0"):
                status, body, headers = await m.get(f"{prefix}/download/{host}/{old_id}")
                assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"
                status, body, _ = await m.get(f"{prefix}/thumbnail/{host}/{old_id}",
                                              width="32", height="32", method="crop")
                assert status == 200 and Image.open(io.BytesIO(body)).size == (32, 32)
                status, body, _ = await m.get(f"{prefix}/download/{host}/{new_id}")
                assert status == 404 and b"M_NOT_FOUND" in body
                status, body, _ = await m.get(f"{prefix}/thumbnail/{host}/{new_id}",
                                              width="32", height="32")
                assert status == 404
            status, body, _ = await m.get(f"{V1}/download/{host}/{new_id}", alice)
            assert status == 200
        async for srv in _media_server(tmp_path, fresh_database, legacy_endpoints=False):
            m = Media(srv.url, s)
            status, body, _ = await m.get(f"{LEGACY}/download/{host}/{old_id}")
            assert status == 404


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_oversized_upload_is_refused_without_storing_it(fresh_database: str,
                                                              tmp_path: Path) -> None:
    limit = 1024 * 1024
    async with aiohttp.ClientSession() as s:
        async for srv in _media_server(tmp_path, fresh_database, max_upload_bytes=limit):
            c, m = Client(srv.url, s), Media(srv.url, s)
            alice = await c.register()
            status, body, _ = await m.get(f"{V1}/config", alice)
            assert b'"m.upload.size":1048576' in body
            # exactly the limit is fine
            status, body = await m.upload(alice, b"x" * limit, "application/octet-stream")
            assert status == 200, body
            ok = await srv.hs.db.fetchval("SELECT count(*) FROM local_media")
            before = _files(tmp_path / "media")
            # A declared length over the limit: refused before the body is sent at all.
            host, port = srv.url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write((f"POST {LEGACY}/upload HTTP/1.1\r\nHost: x\r\n"
                          f"Authorization: Bearer {alice.access_token}\r\n"
                          f"Content-Type: application/octet-stream\r\n"
                          f"Content-Length: {40 * limit}\r\n\r\n").encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.read(4096), 5)
            assert head.startswith(b"HTTP/1.1 413") and b"M_TOO_LARGE" in head, head
            writer.close()
            # The same with Expect: 100-continue (curl): refused instead of "100 Continue".
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write((f"PUT {LEGACY}/upload/parley.test/someId HTTP/1.1\r\nHost: x\r\n"
                          f"Authorization: Bearer {alice.access_token}\r\n"
                          f"Expect: 100-continue\r\nContent-Length: {40 * limit}\r\n\r\n"
                          ).encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.read(4096), 5)
            assert head.startswith(b"HTTP/1.1 413") and b"M_TOO_LARGE" in head, head
            writer.close()

            # A streamed (chunked) body with no length: refused once it passes the limit (the
            # rest is read and dropped for a while, as HTTP servers do, so the client sees
            # the answer).
            async def endless() -> AsyncIterator[bytes]:
                chunk = os.urandom(64 * 1024)
                for _ in range(50 * limit // len(chunk)):
                    yield chunk

            try:
                status, body = await m.upload(alice, endless(), "application/octet-stream")
                assert status == 413 and body["errcode"] == "M_TOO_LARGE"
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                pass  # the server may close the connection while the client still sends
            assert await srv.hs.db.fetchval("SELECT count(*) FROM local_media") == ok
            assert sorted(_files(tmp_path / "media")) == sorted(before)
            assert not _files(tmp_path / "media" / "tmp")


async def test_upload_cut_off_by_the_client_leaves_nothing(c: Client, server: Server,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    alice = await c.register()
    rows = await server.hs.db.fetchval("SELECT count(*) FROM local_media")
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write((f"POST {LEGACY}/upload HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {alice.access_token}\r\n"
                  f"Content-Length: {4 * 1024 * 1024}\r\n\r\n").encode() + b"y" * 1_500_000)
    await writer.drain()
    tmp = server.config.data_dir / "media" / "tmp"
    for _ in range(100):  # the server is writing it
        if _files(tmp):
            break
        await asyncio.sleep(0.02)
    assert _files(tmp)
    writer.transport.abort()
    for _ in range(100):
        if not _files(tmp):
            break
        await asyncio.sleep(0.02)
    assert not _files(tmp)
    assert await server.hs.db.fetchval("SELECT count(*) FROM local_media") == rows
    assert "unhandled error" not in caplog.text


async def test_quota_pending_limit_and_rate_limit(fresh_database: str, tmp_path: Path
                                                  ) -> None:
    cfg = make_config(tmp_path, media=replace(MediaConfig(), max_user_bytes=10_000,
                                              max_pending_uploads=2),
                      rate_limits=RateLimits(enabled=True, registration=RateLimit(100, 100),
                                             media_upload=RateLimit(0.01, 8)))
    async with aiohttp.ClientSession() as s:
        async for srv in start_server(cfg, fresh_database):
            c, m = Client(srv.url, s), Media(srv.url, s)
            alice = await c.register()
            assert (await m.upload(alice, b"a" * 6000))[0] == 200
            status, body = await m.upload(alice, b"b" * 6000)  # 12,000 > 10,000
            assert status == 403 and body["errcode"] == "M_FORBIDDEN"
            status, body = await m.upload(alice, b"c" * 4000)  # exactly the quota
            assert status == 200
            assert await srv.hs.db.fetchval("SELECT sum(size) FROM local_media") == 10_000
            for _ in range(2):
                status, body = await c.request("POST", "/_matrix/media/v1/create", {},
                                               alice.access_token)
                assert status == 200
            status, body = await c.request("POST", "/_matrix/media/v1/create", {},
                                           alice.access_token)
            assert status == 429 and body["errcode"] == "M_LIMIT_EXCEEDED"
            codes = [(await m.upload(alice, b""))[0] for _ in range(5)]
            assert 429 in codes  # 8 per burst, refilling slowly


async def test_quarantine_and_retention(fresh_database: str, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as s:
        async for srv in _media_server(tmp_path, fresh_database,
                                       local_media_lifetime_ms=60_000):
            c, m = Client(srv.url, s), Media(srv.url, s)
            alice = await c.register()
            media = srv.hs.media
            host, q_id = await m.mxc(alice, b"bad content", "text/plain")
            assert await media.service.set_quarantined(host, q_id)
            status, _, _ = await m.get(f"{V1}/download/{host}/{q_id}", alice)
            assert status == 404
            assert await media.service.set_quarantined(host, q_id, False)
            assert (await m.get(f"{V1}/download/{host}/{q_id}", alice))[0] == 200
            assert not await media.service.set_quarantined(host, "nosuch")

            data = jpeg(400, 300)
            host, a = await m.mxc(alice, data, "image/jpeg")
            _, b = await m.mxc(alice, data, "image/jpeg")  # same content: one file
            await m.get(f"{V1}/thumbnail/{host}/{a}", alice, width="32", height="32",
                        method="crop")
            content = _files(tmp_path / "media" / "content")
            assert len(content) == 3  # text, jpeg (shared), thumbnail
            await srv.hs.db.execute(
                "UPDATE local_media SET uploaded_ts = uploaded_ts - 120000 WHERE media_id = $1",
                a)
            assert await media.retention.purge() == 0  # b still names the file
            assert (await m.get(f"{V1}/download/{host}/{a}", alice))[0] == 404
            assert (await m.get(f"{V1}/download/{host}/{b}", alice))[0] == 200
            await srv.hs.db.execute(
                "UPDATE local_media SET uploaded_ts = uploaded_ts - 120000 WHERE media_id = $1",
                b)
            assert await media.retention.purge() == 2  # the image and its thumbnail
            assert len(_files(tmp_path / "media" / "content")) == 1
            assert await srv.hs.db.fetchval("SELECT count(*) FROM media_thumbnails") == 0
            # an orphaned file (a crash between rename and row) is swept once it is old
            orphan = tmp_path / "media" / "content" / "ab" / "cd" / ("abcd" + "0" * 60)
            orphan.parent.mkdir(parents=True)
            orphan.write_bytes(b"left by a crash")
            assert await media.retention.purge() == 0  # too recent to be sure
            os.utime(orphan, (0, 0))
            assert await media.retention.purge() == 1 and not orphan.exists()


async def test_fresh_start_removes_half_written_uploads(fresh_database: str, tmp_path: Path
                                                        ) -> None:
    half = tmp_path / "media" / "tmp" / "main" / "deadbeef"
    other = tmp_path / "media" / "tmp" / "worker2" / "cafe"  # another process's upload
    for f in (half, other):
        f.parent.mkdir(parents=True)
        f.write_bytes(b"half an upload")
    async for _srv in _media_server(tmp_path, fresh_database):
        assert not half.exists()
        assert other.exists()

