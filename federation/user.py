"""/_matrix/federation/v1/user/*: device lists and end-to-end keys of this server's users
(spec "Device Management" and "End-to-End Encryption"); the work is in
homeserver/federation/devices.py and e2ee_keys.py."""

from __future__ import annotations

from aiohttp import web

from federation.context import fed, signed
from homeserver.errors import Codes, MatrixError, not_found
from homeserver.http import json_response
from homeserver.types import is_valid_user_id

routes = web.RouteTableDef()
F = "/_matrix/federation/v1/user"


@routes.get(F + "/devices/{user_id}")
async def devices(request: web.Request) -> web.Response:
    await signed(request)
    ctx = fed(request)
    user_id = request.match_info["user_id"]
    if not is_valid_user_id(user_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Bad user id")
    if user_id.partition(":")[2] != ctx.server_name:
        raise not_found("Not a user of this server")
    return json_response(await ctx.devices.user_devices(user_id))


@routes.post(F + "/keys/query")
async def keys_query(request: web.Request) -> web.Response:
    _, body = await signed(request)
    return json_response(await fed(request).e2ee_keys.serve_query(body))


@routes.post(F + "/keys/claim")
async def keys_claim(request: web.Request) -> web.Response:
    _, body = await signed(request)
    return json_response(await fed(request).e2ee_keys.serve_claim(body))
