"""GET /.well-known/matrix/support (spec v1.10, "Server administration") from the `support`
configuration; 404 when neither contacts nor a support page is configured."""

from __future__ import annotations

from aiohttp import web

from client_api.context import ctx
from homeserver.errors import not_found
from homeserver.http import json_response
from homeserver.types import JsonDict

routes = web.RouteTableDef()


@routes.get("/.well-known/matrix/support")
async def support(request: web.Request) -> web.Response:
    s = ctx(request).config.support
    body: JsonDict = {}
    if s.contacts:
        body["contacts"] = [dict(c) for c in s.contacts]
    if s.support_page:
        body["support_page"] = s.support_page
    if not body:
        raise not_found("No support information")
    return json_response(body)
