"""GET /_matrix/client/v1/rooms/{roomId}/threads (homeserver/rooms/threads.py)."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, query_choice, query_int

routes = web.RouteTableDef()


@routes.get("/_matrix/client/v1/rooms/{room_id}/threads")
async def threads(request: web.Request) -> web.Response:
    requester = await auth(request)
    service = ctx(request).threads
    if service is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")
    room_id = request.match_info["room_id"]
    if not room_id.startswith("!"):
        raise MatrixError(400, Codes.INVALID_PARAM, "Not a room ID")
    include = query_choice(request, "include", ("all", "participated"), "all")
    limit = query_int(request, "limit", 10, 1, 100)
    return json_response(await service.threads(requester, room_id, include,
                                               request.query.get("from"), limit))
