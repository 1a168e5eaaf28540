"""URL previews: off by default; when on, private and loopback addresses are refused unless
allowed, OpenGraph data and the page's image come back, and the result is cached."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from homeserver.config import MediaConfig
from tests.conftest import Server, free_port, start_server
from tests.conftest import test_config as make_config
from tests.helpers import Client

PREVIEW = "/_matrix/client/v1/media/preview_url"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, list[str]]]:
    """A web site on loopback; yields its base URL and the paths it was asked for."""
    hits: list[str] = []

    async def page(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(content_type="text/html", text=(
            "<html><head><title>Fallback title</title>"
            '<meta property="og:title" content="Parley &amp; friends">'
            '<meta property="og:description" content="A chat server">'
            '<meta property="og:image" content="/logo.png"></head><body>x</body></html>'))

    async def logo(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=_png(), content_type="image/png")

    async def hop(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPFound(str(request.query["to"]))

    async def other(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(content_type="text/html", text=(
            '<meta property="og:title" content="t"><meta property="og:image" '
            'content="javascript:alert(1)"><meta property="og:image:url" content="x">'))

    async def big(request: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text="<title>x</title>" + "a" * 300_000)

    app = web.Application()
    app.router.add_get("/page", page)
    app.router.add_get("/logo.png", logo)
    app.router.add_get("/hop", hop)
    app.router.add_get("/big", big)
    app.router.add_get("/other", other)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", hits
    finally:
        await runner.cleanup()


async def _server(tmp_path: Path, dsn: str, **media: object) -> AsyncIterator[Server]:
    cfg = make_config(tmp_path, media=replace(MediaConfig(), url_preview_enabled=True,
                                              **media))  # type: ignore[arg-type]
    async for s in start_server(cfg, dsn):
        yield s


async def test_previews_are_off_by_default(c: Client) -> None:
    alice = await c.register()
    status, body = await c.request("GET", PREVIEW, token=alice.access_token,
                                   params={"url": "https://example.org/"})
    assert status == 404 and body["errcode"] == "M_UNRECOGNIZED"


async def test_loopback_is_refused_by_default(fresh_database: str, tmp_path: Path,
                                              site: tuple[str, list[str]]) -> None:
    base, hits = site
    async with aiohttp.ClientSession() as s:
        async for srv in _server(tmp_path, fresh_database):
            c = Client(srv.url, s)
            alice = await c.register()
            for url in (base + "/page", f"http://localhost:{base.rsplit(':', 1)[1]}/page"):
                status, body = await c.request("GET", PREVIEW, token=alice.access_token,
                                               params={"url": url})
                assert status == 403 and body["errcode"] == "M_FORBIDDEN", (url, body)
            for url in ("ftp://example.org/", "not a url", "http:///nohost"):
                status, body = await c.request("GET", PREVIEW, token=alice.access_token,
                                               params={"url": url})
                assert status == 400, (url, body)
    assert hits == []


async def test_preview_of_an_allowed_page(fresh_database: str, tmp_path: Path,
                                          site: tuple[str, list[str]]) -> None:
    base, hits = site
    async with aiohttp.ClientSession() as s:
        async for srv in _server(tmp_path, fresh_database, url_preview_allow=("127.0.0.1",),
                                 url_preview_max_bytes=100_000):
            c = Client(srv.url, s)
            alice = await c.register()
            status, og = await c.request("GET", PREVIEW, token=alice.access_token,
                                         params={"url": base + "/page"})
            assert status == 200, og
            assert og["og:title"] == "Parley & friends"
            assert og["og:description"] == "A chat server"
            assert og["og:image"].startswith("mxc://parley.test/")
            assert og["matrix:image:size"] == len(_png())
            media_path = og["og:image"].removeprefix("mxc://")
            async with s.get(f"{srv.url}/_matrix/client/v1/media/download/{media_path}",
                             headers={"Authorization": f"Bearer {alice.access_token}"}) as r:
                assert r.status == 200 and await r.read() == _png()
            assert hits == ["/page", "/logo.png"]
            # cached: the site is not asked again
            status, again = await c.request("GET", PREVIEW, token=alice.access_token,
                                            params={"url": base + "/page"})
            assert status == 200 and again == og and hits == ["/page", "/logo.png"]
            # a redirect is followed, each hop checked against the policy
            status, body = await c.request("GET", PREVIEW, token=alice.access_token, params={
                "url": f"{base}/hop?to=http://10.0.0.1/secret"})
            assert status == 403, body
            # an image that is not fetched and stored is not passed on
            status, body = await c.request("GET", PREVIEW, token=alice.access_token,
                                           params={"url": base + "/other"})
            assert status == 200 and body == {"og:title": "t"}, body
            # bodies above the size limit are not read to the end
            status, body = await c.request("GET", PREVIEW, token=alice.access_token,
                                           params={"url": base + "/big"})
            assert status == 502, body
