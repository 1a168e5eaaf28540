"""GET/PUT /presence/{userId}/status (spec: client-server-api/modules/presence)."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, read_json
from homeserver.presence.timers import STATES
from homeserver.types import is_valid_user_id

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"
MAX_STATUS_MSG = 4096  # characters; the spec sets no limit, the request size limit still applies


def _user_id(request: web.Request) -> str:
    user_id = request.match_info["user_id"]
    if not is_valid_user_id(user_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user id")
    return user_id


@routes.get(V + "/presence/{user_id}/status")
async def get_presence(request: web.Request) -> web.Response:
    requester = await auth(request)
    user_id = _user_id(request)
    presence = ctx(request).presence
    if presence is None:
        return json_response({"presence": "offline"})
    return json_response(await presence.get(requester.user_id, user_id))


@routes.put(V + "/presence/{user_id}/status")
async def set_presence(request: web.Request) -> web.Response:
    requester = await auth(request)
    user_id = _user_id(request)
    if user_id != requester.user_id:
        raise MatrixError(403, Codes.FORBIDDEN, "You cannot set the presence of another user")
    body = await read_json(request)
    state = body.get("presence")
    if not isinstance(state, str):
        raise MatrixError(400, Codes.BAD_JSON, "presence must be a string")
    if state not in STATES:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid presence state {state!r}")
    status_msg = body.get("status_msg")
    if status_msg is not None and not isinstance(status_msg, str):
        raise MatrixError(400, Codes.BAD_JSON, "status_msg must be a string")
    if status_msg is not None and len(status_msg) > MAX_STATUS_MSG:
        raise MatrixError(400, Codes.TOO_LARGE, "status_msg is too long")
    presence = ctx(request).presence
    if presence is not None:
        await presence.set_status(user_id, state, status_msg)
    return json_response({})
