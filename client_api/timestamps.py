"""GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event (homeserver/rooms/timestamps.py)."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from client_api.rooms import room_id_param
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, query_choice, query_int

routes = web.RouteTableDef()


@routes.get("/_matrix/client/v1/rooms/{room_id}/timestamp_to_event")
async def timestamp_to_event(request: web.Request) -> web.Response:
    requester = await auth(request)
    room_id = room_id_param(request)
    if "ts" not in request.query:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing query parameter ts")
    ts = query_int(request, "ts", 0, 0)
    direction = query_choice(request, "dir", ("f", "b"))
    c = ctx(request)
    assert c.timestamps is not None
    return json_response(await c.timestamps.closest(requester, room_id, ts, direction == "f"))
