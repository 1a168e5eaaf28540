"""POST /user/{userId}/openid/request_token (spec "OpenID"); the token is checked by third
parties at /_matrix/federation/v1/openid/userinfo (federation/openid.py)."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.http import json_response, read_json

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"


@routes.post(V + "/user/{user_id}/openid/request_token")
async def request_token(request: web.Request) -> web.Response:
    requester = await auth(request)
    await read_json(request, allow_empty=True)
    svc = ctx(request).openid
    assert svc is not None
    return json_response(await svc.request_token(requester, request.match_info["user_id"]))
