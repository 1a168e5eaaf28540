"""Downloads, thumbnails, config and URL previews (spec "Content repository").

Authenticated media (v1.11): /_matrix/client/v1/media/{config,download,thumbnail,preview_url},
with an access token. The deprecated /_matrix/media/v3 (and r0) download and thumbnail endpoints
take no token and serve only media uploaded before unauthenticated access was frozen
(`media.freeze_unauthenticated`, as Synapse's `enable_authenticated_media`), or nothing when
`media.legacy_endpoints` is off. Every response carrying media bytes gets the headers of
homeserver/media/headers.py (Content-Disposition by type, CSP sandbox, nosniff).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from client_api.context import ClientContext, auth, ctx
from homeserver.errors import Codes, MatrixError, not_found
from homeserver.http import CORS_HEADERS, json_response, query_bool, query_choice, query_int
from homeserver.media.headers import clean_filename, download_headers
from homeserver.media.service import MAX_WAIT_MS, MediaInfo, MediaService
from homeserver.media.thumbnailer import ThumbnailRef

routes = web.RouteTableDef()
V1 = "/_matrix/client/v1/media"
LEGACY = "/_matrix/media/{v:(v3|r0)}"
MAX_DIMENSION = 10_000


def _media(c: ClientContext) -> MediaService:
    if c.media is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "The media repository is not enabled")
    return c.media


async def _check_access(request: web.Request, legacy: bool) -> None:
    if not legacy:
        await auth(request)
    elif not ctx(request).config.media.legacy_endpoints:
        raise not_found("Unauthenticated media endpoints are disabled")


async def _info(request: web.Request, legacy: bool) -> tuple[ClientContext, MediaInfo]:
    c = ctx(request)
    wait = query_int(request, "timeout_ms", 20_000, maximum=MAX_WAIT_MS)
    info = await _media(c).get(
        request.match_info["server_name"], request.match_info["media_id"], wait_ms=wait,
        legacy=legacy, allow_remote=query_bool(request, "allow_remote", True))
    return c, info


def _send(request: web.Request, media: MediaService, sha256: str, size: int,
          content_type: str | None, filename: str | None) -> web.StreamResponse:
    headers = download_headers(content_type, filename)
    headers.update(CORS_HEADERS)
    path = media.storage.local_path(sha256)
    if path is not None:
        return web.FileResponse(path, headers=headers)  # sendfile; Range, ETag
    return _Streamed(media, sha256, size, headers)


class _Streamed(web.StreamResponse):
    """Content from a backend without local files, written as it is read."""

    def __init__(self, media: MediaService, sha256: str, size: int,
                 headers: dict[str, str]) -> None:
        super().__init__(headers=headers)
        self.content_length = size
        self._media, self._sha256 = media, sha256

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        writer = await super().prepare(request)
        if request.method != "HEAD":
            async for chunk in self._media.chunks(self._sha256):
                await self.write(chunk)
        return writer


async def _download(request: web.Request, legacy: bool) -> web.StreamResponse:
    await _check_access(request, legacy)
    c, info = await _info(request, legacy)
    name = clean_filename(request.match_info.get("file_name")) or info.upload_name
    return _send(request, _media(c), info.sha256, info.size, info.content_type, name)


async def _thumbnail(request: web.Request, legacy: bool) -> web.StreamResponse:
    await _check_access(request, legacy)
    width = query_int(request, "width", 0, minimum=1, maximum=MAX_DIMENSION)
    height = query_int(request, "height", 0, minimum=1, maximum=MAX_DIMENSION)
    if not width or not height:
        raise MatrixError(400, Codes.MISSING_PARAM, "width and height are required")
    method = query_choice(request, "method", ("crop", "scale"), "scale")
    animated = query_bool(request, "animated", False)
    c, info = await _info(request, legacy)
    if c.thumbnails is None:
        raise MatrixError(400, Codes.UNKNOWN, "Thumbnails are not enabled")
    ref: ThumbnailRef = await c.thumbnails.thumbnail(info, width, height, method, animated)
    return _send(request, _media(c), ref.sha256, ref.size, ref.content_type, None)


@routes.get(V1 + "/download/{server_name}/{media_id}")
async def download(request: web.Request) -> web.StreamResponse:
    return await _download(request, legacy=False)


@routes.get(V1 + "/download/{server_name}/{media_id}/{file_name:[^/]*}")
async def download_named(request: web.Request) -> web.StreamResponse:
    return await _download(request, legacy=False)


@routes.get(V1 + "/thumbnail/{server_name}/{media_id}")
async def thumbnail(request: web.Request) -> web.StreamResponse:
    return await _thumbnail(request, legacy=False)


@routes.get(LEGACY + "/download/{server_name}/{media_id}")
async def legacy_download(request: web.Request) -> web.StreamResponse:
    return await _download(request, legacy=True)


@routes.get(LEGACY + "/download/{server_name}/{media_id}/{file_name:[^/]*}")
async def legacy_download_named(request: web.Request) -> web.StreamResponse:
    return await _download(request, legacy=True)


@routes.get(LEGACY + "/thumbnail/{server_name}/{media_id}")
async def legacy_thumbnail(request: web.Request) -> web.StreamResponse:
    return await _thumbnail(request, legacy=True)


async def _config(request: web.Request) -> web.Response:
    await auth(request)
    c = ctx(request)
    return json_response({"m.upload.size": c.config.media.max_upload_bytes})


@routes.get(V1 + "/config")
async def config(request: web.Request) -> web.Response:
    return await _config(request)


@routes.get(LEGACY + "/config")
async def legacy_config(request: web.Request) -> web.Response:
    return await _config(request)


async def _preview(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    if c.previews is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "URL previews are not enabled")
    url = request.query.get("url")
    if not url:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing url")
    c.limiter.check("url_preview", requester.user_id, c.config.rate_limits.media_upload)
    return json_response(await c.previews.preview(url, requester.user_id))


@routes.get(V1 + "/preview_url")
async def preview_url(request: web.Request) -> web.Response:
    return await _preview(request)


@routes.get(LEGACY + "/preview_url")
async def legacy_preview_url(request: web.Request) -> web.Response:
    return await _preview(request)
