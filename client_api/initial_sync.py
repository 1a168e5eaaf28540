"""GET /initialSync and GET /rooms/{roomId}/initialSync (homeserver/sync/initial_sync.py)."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from client_api.rooms import room_id_param
from homeserver.http import json_response, query_bool, query_int

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"


@routes.get(V + "/initialSync")
async def initial_sync(request: web.Request) -> web.Response:
    requester = await auth(request)
    limit = query_int(request, "limit", 20, 0, 100)
    archived = query_bool(request, "archived", False)
    c = ctx(request)
    assert c.initial_sync is not None
    if c.presence is not None:  # the v1 sync's first call: its client is online
        await c.presence.heartbeat(requester.user_id, requester.device_id)
    return json_response(await c.initial_sync.all(requester, limit, archived))


@routes.get(V + "/rooms/{room_id}/initialSync")
async def room_initial_sync(request: web.Request) -> web.Response:
    requester = await auth(request)
    room_id = room_id_param(request)
    limit = query_int(request, "limit", 20, 0, 100)
    c = ctx(request)
    assert c.initial_sync is not None
    return json_response(await c.initial_sync.room(requester, room_id, limit))
