"""Fetching another server's media (server-server API, "Content Repository"), over HTTP.

GET /_matrix/federation/v1/media/download/{mediaId}, signed; the answer is multipart/mixed: a
JSON metadata part, then either the bytes (read as they arrive, never held whole) or a
`Location` header naming where they are, fetched through the same outbound policy and not
remembered (the spec: such URLs may expire). A server that does not know the endpoint (404
M_UNRECOGNIZED) is asked at the deprecated /_matrix/media/v3/download with
`allow_remote=false`, as the spec requires. Failures are FederationError (the remote said no, or
answered nonsense) and FederationUnreachable (including a connection lost mid-body), which
homeserver/media/remote.py turns into the client API's errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlencode, urljoin

import aiohttp
import orjson
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

from federation.client import FederationClient, FederationError, FederationUnreachable
from homeserver.federation.transport import fed_path

CHUNK = 1 << 16
MAX_ERROR_BODY = 64 * 1024
MAX_METADATA = 64 * 1024
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)

Fetched = tuple[str | None, str | None, AsyncIterator[bytes]]


class FederationMediaClient:
    def __init__(self, client: FederationClient, timeout_s: float = 60.0) -> None:
        self._client = client
        self._timeout = timeout_s

    async def download(self, origin: str, media_id: str, max_bytes: int,
                       timeout_ms: int = 20_000) -> Fetched:
        """(content type, file name, the bytes as they arrive). The answer stays open until
        the byte iterator is exhausted or closed."""
        query = urlencode({"timeout_ms": timeout_ms})
        uri = fed_path("/_matrix/federation/v1/media/download/%s", media_id) + "?" + query
        stack = AsyncExitStack()
        try:
            resp = await stack.enter_async_context(
                self._client.stream(origin, uri, timeout=self._timeout))
            if not 200 <= resp.status < 300:
                error = await _error(resp)
                if error.status in (400, 404) and error.errcode == "M_UNRECOGNIZED":
                    await stack.aclose()
                    return await self._legacy(origin, media_id, max_bytes, timeout_ms)
                raise error
            fetched = await self._multipart(resp, stack, max_bytes)
        except BaseException:
            await stack.aclose()
            raise
        return fetched

    async def _multipart(self, resp: aiohttp.ClientResponse, stack: AsyncExitStack,
                         max_bytes: int) -> Fetched:
        if resp.content_type != "multipart/mixed":
            raise FederationError(502, {"error": "media answer is not multipart/mixed"})
        try:
            reader = aiohttp.MultipartReader(resp.headers, resp.content)
            meta = await reader.next()
            if not isinstance(meta, aiohttp.BodyPartReader):
                raise FederationError(502, {"error": "media answer has no metadata part"})
            raw = b""
            while chunk := await meta.read_chunk(CHUNK):
                raw += chunk
                if len(raw) > MAX_METADATA:
                    raise FederationError(502, {"error": "media metadata too large"})
            if not isinstance(orjson.loads(raw or b"{}"), dict):
                raise FederationError(502, {"error": "bad media metadata"})
            part = await reader.next()
            if not isinstance(part, aiohttp.BodyPartReader):
                raise FederationError(502, {"error": "media answer has no content part"})
        except (ValueError, AssertionError, orjson.JSONDecodeError) as e:
            raise FederationError(502, {"error": f"malformed multipart answer: {e}"}) from e
        except (aiohttp.ClientError, TimeoutError) as e:
            raise FederationUnreachable(f"media answer cut off: {e}") from e
        location = part.headers.get("Location")
        if location is not None:
            return await self._follow(urljoin(str(resp.url), location), stack, max_bytes)
        return (part.headers.get("Content-Type"), part.filename,
                _guard(_part_chunks(part), stack))

    async def _follow(self, url: str, stack: AsyncExitStack, max_bytes: int) -> Fetched:
        for _ in range(MAX_REDIRECTS + 1):
            inner = AsyncExitStack()
            resp = await inner.enter_async_context(
                self._client.stream_url(url, timeout=self._timeout))
            if resp.status in REDIRECTS and "Location" in resp.headers:
                url = urljoin(url, resp.headers["Location"])
                await inner.aclose()
                continue
            await stack.enter_async_context(inner)
            if resp.status != 200:
                raise await _error(resp)
            return _plain(resp, stack, max_bytes)
        raise FederationError(502, {"error": "too many redirects for media"})

    async def _legacy(self, origin: str, media_id: str, max_bytes: int,
                      timeout_ms: int) -> Fetched:
        uri = fed_path("/_matrix/media/v3/download/%s/%s", origin, media_id) + "?" + (
            urlencode({"allow_remote": "false", "timeout_ms": timeout_ms}))
        stack = AsyncExitStack()
        try:
            resp = await stack.enter_async_context(
                self._client.stream(origin, uri, timeout=self._timeout))
            if resp.status != 200:
                raise await _error(resp)
            return _plain(resp, stack, max_bytes)
        except BaseException:
            await stack.aclose()
            raise


def _plain(resp: aiohttp.ClientResponse, stack: AsyncExitStack, max_bytes: int) -> Fetched:
    """A whole-body answer: the bytes with the type and name from its headers."""
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise FederationError(502, {"errcode": "M_TOO_LARGE", "error": "media too large"})
    name = None
    disposition = resp.headers.get("Content-Disposition")
    if disposition:
        _kind, params = parse_content_disposition(disposition)
        name = content_disposition_filename(params, "filename")
    return (resp.headers.get("Content-Type"), name,
            _guard(resp.content.iter_chunked(CHUNK), stack))


async def _part_chunks(part: aiohttp.BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


async def _guard(chunks: AsyncIterator[bytes], stack: AsyncExitStack) -> AsyncIterator[bytes]:
    """The bytes, with a connection lost midway reported as FederationUnreachable, and the
    answer released when iteration ends (or the iterator is closed)."""
    try:
        async for chunk in chunks:
            yield chunk
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        raise FederationUnreachable(f"media transfer failed: {e}") from e
    finally:
        await stack.aclose()


async def _error(resp: aiohttp.ClientResponse) -> FederationError:
    """The remote's error answer (status and its JSON body when it has one)."""
    body: Any = None
    try:
        raw = b""
        while len(raw) < MAX_ERROR_BODY and (chunk := await resp.content.read(CHUNK)):
            raw += chunk
        body = orjson.loads(raw) if raw else None
    except (orjson.JSONDecodeError, aiohttp.ClientError, TimeoutError):
        pass
    return FederationError(resp.status, body)
