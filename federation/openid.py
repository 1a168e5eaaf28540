"""GET /_matrix/federation/v1/openid/userinfo: whose an OpenID token is. Called by third
parties, not servers, so it carries no X-Matrix signature."""

from __future__ import annotations

from aiohttp import web

from federation.context import fed
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response

routes = web.RouteTableDef()


@routes.get("/_matrix/federation/v1/openid/userinfo")
async def userinfo(request: web.Request) -> web.Response:
    token = request.query.get("access_token")
    if not token:
        raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Missing access_token")
    return json_response(await fed(request).openid.userinfo(token))
