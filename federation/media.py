"""/_matrix/federation/v1/media/{download,thumbnail}/{mediaId}: this server's own media for
other servers (server-server API, "Content Repository"), X-Matrix authenticated.

The answer is multipart/mixed with exactly two parts: the JSON metadata (always `{}` for now)
and the bytes, with the Content-Type and Content-Disposition a client download gets. It is
written as the content is read, with its length known up front. Only media uploaded here is
served (the path names no server); quarantined, unknown and expired ids are 404 M_NOT_FOUND.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

from aiohttp import web

from federation.context import FederationContext, fed, signed
from homeserver.errors import Codes, MatrixError
from homeserver.http import query_bool, query_choice, query_int
from homeserver.media.headers import disposition, served_type
from homeserver.media.service import MAX_WAIT_MS, MediaService

routes = web.RouteTableDef()
PREFIX = "/_matrix/federation/v1/media"
MAX_DIMENSION = 10_000


def _media(ctx: FederationContext) -> MediaService:
    if ctx.media is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "The media repository is not enabled")
    media: MediaService = ctx.media
    return media


def _wait(request: web.Request) -> int:
    return query_int(request, "timeout_ms", 20_000, maximum=MAX_WAIT_MS)


async def _multipart(request: web.Request, content_type: str | None, filename: str | None,
                     size: int, chunks: AsyncIterator[bytes]) -> web.StreamResponse:
    boundary = secrets.token_hex(16)
    ctype = served_type(content_type)
    head = (f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n"
            f"--{boundary}\r\nContent-Type: {ctype}\r\n"
            f"Content-Disposition: {disposition(content_type, filename)}\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    resp = web.StreamResponse(headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
    resp.content_length = len(head) + size + len(tail)
    await resp.prepare(request)
    if request.method != "HEAD":
        await resp.write(head)
        async for chunk in chunks:
            await resp.write(chunk)
        await resp.write(tail)
    await resp.write_eof()
    return resp


@routes.get(PREFIX + "/download/{media_id}")
async def download(request: web.Request) -> web.StreamResponse:
    await signed(request)
    media = _media(fed(request))
    info, chunks = await media.open_local(request.match_info["media_id"], _wait(request))
    return await _multipart(request, info.content_type, info.upload_name, info.size, chunks)


@routes.get(PREFIX + "/thumbnail/{media_id}")
async def thumbnail(request: web.Request) -> web.StreamResponse:
    await signed(request)
    ctx = fed(request)
    media = _media(ctx)
    width = query_int(request, "width", 0, minimum=1, maximum=MAX_DIMENSION)
    height = query_int(request, "height", 0, minimum=1, maximum=MAX_DIMENSION)
    if not width or not height:
        raise MatrixError(400, Codes.MISSING_PARAM, "width and height are required")
    method = query_choice(request, "method", ("crop", "scale"), "scale")
    animated = query_bool(request, "animated", False)
    info = await media.get(ctx.server_name, request.match_info["media_id"],
                           wait_ms=_wait(request))
    if ctx.thumbnails is None:
        raise MatrixError(400, Codes.UNKNOWN, "Thumbnails are not enabled")
    ref = await ctx.thumbnails.thumbnail(info, width, height, method, animated)
    return await _multipart(request, ref.content_type, None, ref.size,
                            media.chunks(ref.sha256))
