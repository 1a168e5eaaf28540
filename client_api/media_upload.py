"""Uploads (spec "Content repository"): POST /_matrix/media/v3/upload, and the asynchronous
form, POST /_matrix/media/v1/create then PUT /_matrix/media/v3/upload/{serverName}/{mediaId}.

The body is streamed to the media store as it arrives (never read whole), so
`max_request_bytes` does not apply; `media.max_upload_bytes` does. A Content-Length above it is
refused before a byte of the body is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import HttpVersion11, web

from client_api.context import ClientContext, auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.http import error_response, json_response
from homeserver.media.service import MediaService
from homeserver.types import Requester

routes = web.RouteTableDef()
MEDIA = "/_matrix/media/{v:(v3|r0)}"


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_any():
        yield chunk


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue`: a declared length over the limit is refused before the client
    sends the body (curl asks for every body over 1 MB); else the usual 100 Continue."""
    if (request.headers.get("Expect", "").lower() != "100-continue"
            or request.version != HttpVersion11):
        return None
    c = ctx(request)
    length = request.content_length
    if c.media is not None and length is not None and length > c.config.media.max_upload_bytes:
        resp = error_response(MatrixError(413, Codes.TOO_LARGE, "Media is larger than "
                                          f"{c.config.media.max_upload_bytes} bytes"))
        resp.force_close()
        return resp
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the response proper has not started (as aiohttp does)
    return None


async def _start(request: web.Request) -> tuple[ClientContext, MediaService, Requester]:
    requester = await auth(request)
    c = ctx(request)
    if c.media is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "The media repository is not enabled")
    c.limiter.check("media_upload", requester.user_id, c.config.rate_limits.media_upload)
    return c, c.media, requester


def _uri(media: MediaService, media_id: str) -> str:
    return f"mxc://{media.server_name}/{media_id}"


@routes.post(MEDIA + "/upload", expect_handler=_expect)
async def upload(request: web.Request) -> web.Response:
    _, media, requester = await _start(request)
    media_id = await media.upload(
        requester.user_id, request.headers.get("Content-Type"), request.query.get("filename"),
        _body(request), request.content_length)
    return json_response({"content_uri": _uri(media, media_id)})


@routes.post("/_matrix/media/v1/create")
async def create(request: web.Request) -> web.Response:
    _, media, requester = await _start(request)
    media_id, expires = await media.create(requester.user_id)
    return json_response({"content_uri": _uri(media, media_id), "unused_expires_at": expires})


@routes.put(MEDIA + "/upload/{server_name}/{media_id}", expect_handler=_expect)
async def upload_to(request: web.Request) -> web.Response:
    _, media, requester = await _start(request)
    server_name, media_id = request.match_info["server_name"], request.match_info["media_id"]
    if server_name != media.server_name:
        raise MatrixError(404, Codes.NOT_FOUND, "Unknown media id")
    await media.upload(requester.user_id, request.headers.get("Content-Type"),
                       request.query.get("filename"), _body(request), request.content_length,
                       media_id=media_id)
    return json_response({})
