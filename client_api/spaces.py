"""Space hierarchy and room summaries (homeserver/rooms/spaces.py):
GET /_matrix/client/v1/rooms/{roomId}/hierarchy and
GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (also at MSC3266's unstable paths)."""

from __future__ import annotations

from aiohttp import web

from client_api.context import access_token, auth, ctx
from client_api.rooms import room_id_param
from homeserver.http import json_response, query_bool, query_int

routes = web.RouteTableDef()


@routes.get("/_matrix/client/v1/rooms/{room_id}/hierarchy")
async def hierarchy(request: web.Request) -> web.Response:
    requester = await auth(request)
    room_id = room_id_param(request)
    suggested_only = query_bool(request, "suggested_only", False)
    limit = query_int(request, "limit", 50, 1, 100)
    max_depth = (query_int(request, "max_depth", 0, 0) if "max_depth" in request.query
                 else None)
    c = ctx(request)
    assert c.spaces is not None
    return json_response(await c.spaces.hierarchy(
        requester.user_id, room_id, suggested_only, max_depth, limit,
        request.query.get("from")))


@routes.get("/_matrix/client/v1/room_summary/{room:[^/]+}")
@routes.get("/_matrix/client/unstable/im.nheko.summary/summary/{room:[^/]+}")
@routes.get("/_matrix/client/unstable/im.nheko.summary/rooms/{room:[^/]+}/summary")
async def room_summary(request: web.Request) -> web.Response:
    # Unauthenticated callers are allowed; they see only rooms anyone may see.
    user_id = (await auth(request)).user_id if access_token(request) is not None else None
    c = ctx(request)
    assert c.spaces is not None
    return json_response(await c.spaces.room_summary(user_id, request.match_info["room"]))
