"""GET /_matrix/client/v1/mutual_rooms (spec v1.19) and MSC2666's unstable path
(homeserver/rooms/mutual_rooms.py)."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response
from homeserver.types import is_valid_user_id

routes = web.RouteTableDef()


@routes.get("/_matrix/client/v1/mutual_rooms")
@routes.get("/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms")
async def mutual_rooms(request: web.Request) -> web.Response:
    requester = await auth(request)
    other = request.query.get("user_id")
    if other is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing query parameter user_id")
    if not is_valid_user_id(other):
        raise MatrixError(400, Codes.INVALID_PARAM, "The user ID provided was invalid")
    c = ctx(request)
    assert c.mutual_rooms is not None
    return json_response(await c.mutual_rooms.mutual(requester.user_id, other,
                                                     request.query.get("from")))
