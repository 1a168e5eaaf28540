"""URL previews (GET /media/preview_url): OpenGraph data of a web page, off by default.

Fetching a URL a user names is a request from inside the server's network, so every
connection (and every redirect, followed by hand) goes only to addresses the preview's
`OutboundPolicy` permits, checked after DNS resolution (a name resolving to 127.0.0.1 is refused
like the literal). Bodies are read up to `url_preview_max_bytes` within
`url_preview_timeout_ms`; an image (the page's og:image, or the URL itself) is stored as media
and given as an mxc URI. Results are cached per URL for `url_preview_cache_ms`.
"""

from __future__ import annotations

import asyncio
import ipaddress
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from homeserver.config import MediaConfig
from homeserver.errors import Codes, MatrixError
from homeserver.media.headers import base_type
from homeserver.media.service import MediaService, now_ms
from homeserver.media.store import MediaStore
from homeserver.outbound import OutboundPolicy
from homeserver.outbound_resolver import PolicyResolver
from homeserver.storage.database import Database

MAX_URL = 2048
MAX_REDIRECTS = 5
MAX_TEXT = 500
PREVIEW_USER = ""  # owner of stored preview images: no user (no quota)


class Blocked(Exception):
    pass


class _OpenGraph(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.title = ""
        self.description = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "meta":
            key = a.get("property") or a.get("name") or ""
            if key.startswith("og:") and "content" in a and key not in self.og:
                self.og[key] = a["content"][:MAX_TEXT]
            elif key == "description" and not self.description:
                self.description = a.get("content", "")[:MAX_TEXT]
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title and len(self.title) < MAX_TEXT:
            self.title += data


def parse_html(html: str, url: str) -> dict[str, Any]:
    """OpenGraph fields of a page (pure), falling back to <title> and the description."""
    p = _OpenGraph()
    try:
        p.feed(html)
        p.close()
    except Exception:  # noqa: BLE001 (html.parser raises assorted errors on junk)
        pass
    og: dict[str, Any] = dict(p.og)
    if "og:title" not in og and p.title.strip():
        og["og:title"] = p.title.strip()
    if "og:description" not in og and p.description:
        og["og:description"] = p.description
    if "og:image" in og:
        og["og:image"] = urljoin(url, og["og:image"])
    return og


class PreviewService:
    def __init__(self, db: Database, store: MediaStore, media: MediaService,
                 policy: OutboundPolicy, config: MediaConfig) -> None:
        self.db, self.store, self.media, self.config = db, store, media, config
        self._policy = policy
        self._session: aiohttp.ClientSession | None = None

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def start(self) -> None:
        pass

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=PolicyResolver(self._policy, Blocked),
                                               use_dns_cache=False, limit=50),
                headers={"User-Agent": "Parley URL preview"})
        return self._session

    async def preview(self, url: str, user_id: str) -> dict[str, Any]:
        parts = urlsplit(url)
        if len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname:
            raise MatrixError(400, Codes.INVALID_PARAM, "url must be an http(s) URL")
        now = now_ms()
        cached = await self.store.preview(self.db.pool, url, now)
        if cached is not None:
            result: dict[str, Any] = orjson.loads(cached)
            return result
        try:
            async with asyncio.timeout(self.config.url_preview_timeout_ms / 1000):
                og = await self._build(url)
        except Blocked as e:
            raise MatrixError(403, Codes.FORBIDDEN, f"URL not allowed: {e}") from None
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            raise MatrixError(502, Codes.UNKNOWN, f"Could not preview the URL: {e}") from None
        async with self.db.transaction() as conn:
            await self.store.save_preview(conn, url, orjson.dumps(og).decode(), now,
                                          now + self.config.url_preview_cache_ms)
        return og

    async def _build(self, url: str) -> dict[str, Any]:
        final, ctype, body = await self._fetch(url)
        if base_type(ctype).startswith("image/"):
            return await self._image(ctype, body)
        if base_type(ctype) not in ("text/html", "application/xhtml+xml"):
            return {}
        og = parse_html(body.decode("utf-8", "replace"), final)
        image = og.get("og:image")
        if isinstance(image, str) and urlsplit(image).scheme in ("http", "https"):
            try:
                _, itype, data = await self._fetch(image)
                if base_type(itype).startswith("image/"):
                    og.update(await self._image(itype, data))
            except (Blocked, aiohttp.ClientError, OSError, ValueError):
                pass
        if not str(og.get("og:image", "")).startswith("mxc://"):
            # never hand a client another server's image URL: it would fetch it itself
            og = {k: v for k, v in og.items() if not k.startswith("og:image")}
        return og

    async def _image(self, ctype: str, data: bytes) -> dict[str, Any]:
        async def body() -> Any:
            yield data

        media_id = await self.media.upload(PREVIEW_USER, ctype, None, body(), len(data))
        return {"og:image": f"mxc://{self.media.server_name}/{media_id}",
                "og:image:type": ctype, "matrix:image:size": len(data)}

    async def _fetch(self, url: str) -> tuple[str, str, bytes]:
        for _ in range(MAX_REDIRECTS + 1):
            host = (urlsplit(url).hostname or "").strip("[]")
            try:
                literal = ipaddress.ip_address(host)
            except ValueError:
                literal = None
            if literal is not None and not self._policy.permits(str(literal)):
                raise Blocked(f"{host} is not an address the preview policy permits")
            async with self._http().get(url, allow_redirects=False) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    url = urljoin(url, resp.headers["Location"])
                    continue
                if resp.status != 200:
                    raise ValueError(f"the server answered {resp.status}")
                data = bytearray()
                async for chunk in resp.content.iter_any():
                    data += chunk
                    if len(data) > self.config.url_preview_max_bytes:
                        raise ValueError("the content is too large")
                return url, resp.headers.get("Content-Type", ""), bytes(data)
        raise ValueError("too many redirects")
