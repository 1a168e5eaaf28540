"""POST /rooms/{roomId}/upgrade (spec "Room Upgrades"; homeserver/rooms/upgrades.py)."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from client_api.rooms import room_id_param
from homeserver.http import json_response, read_json

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"


@routes.post(V + "/rooms/{room_id}/upgrade")
async def upgrade(request: web.Request) -> web.Response:
    requester = await auth(request)
    room_id = room_id_param(request)
    body = await read_json(request, "room_upgrade")
    c = ctx(request)
    assert c.upgrades is not None
    c.limiter.check("create_room", requester.user_id, c.config.rate_limits.room_creation,
                    requester.is_admin)
    new_id = await c.upgrades.upgrade(requester, room_id, body["new_version"],
                                      body.get("additional_creators"))
    return json_response({"replacement_room": new_id})
