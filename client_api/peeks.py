"""MSC2753 peeking through /sync (unstable, homeserver/sync/peeks.py): `POST /peek/{roomIdOrAlias}`
starts a peek for the requesting device, `POST /unpeek/{roomId}` ends it. Not advertised in
/versions; only SyTest-era clients use it (docs/client_api.md)."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError, invalid_param
from homeserver.http import json_response, read_json
from homeserver.sync.peeks import SyncPeeks
from homeserver.types import is_valid_room_id

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"


def _peeks(request: web.Request) -> SyncPeeks:
    peeks = ctx(request).peeks
    if peeks is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")
    return peeks


@routes.post(V + "/peek/{room:[^/]+}")
async def peek(request: web.Request) -> web.Response:
    requester = await auth(request)
    await read_json(request, allow_empty=True)
    room_id = await _peeks(request).peek(requester, request.match_info["room"])
    return json_response({"room_id": room_id})


@routes.post(V + "/unpeek/{room_id}")
async def unpeek(request: web.Request) -> web.Response:
    requester = await auth(request)
    await read_json(request, allow_empty=True)
    room_id = request.match_info["room_id"]
    if not is_valid_room_id(room_id):
        raise invalid_param("Invalid room id")
    await _peeks(request).unpeek(requester, room_id)
    return json_response({})
