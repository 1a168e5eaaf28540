"""GET /sync: the long poll. (The WebSocket upgrade of the same request is issue 3.)"""

from __future__ import annotations

from aiohttp import web

from client_api import websocket
from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.events.filter import SyncFilter
from homeserver.http import json_response, parse_json_object, query_bool, query_int, validate
from homeserver.streams.tokens import SyncToken

routes = web.RouteTableDef()


async def parse_filter(request: web.Request, user_id: str) -> SyncFilter:
    raw = request.query.get("filter")
    if raw is None:
        return SyncFilter()
    if raw.lstrip().startswith("{"):
        body = parse_json_object(raw, "filter")
        validate(body, "filter")  # the same schema as POST /user/{userId}/filter: M_BAD_JSON
        return SyncFilter.parse(body)
    return SyncFilter.parse(await ctx(request).filters.get_filter(user_id, raw))


@routes.get("/_matrix/client/{v:(v3|r0)}/sync")
async def sync(request: web.Request) -> web.StreamResponse:
    requester = await auth(request)
    c = ctx(request)
    since_raw = request.query.get("since")
    since = SyncToken.parse(since_raw) if since_raw else None
    timeout = query_int(request, "timeout", 0, 0, 600_000)
    full_state = query_bool(request, "full_state", False)
    set_presence = request.query.get("set_presence", "online")
    if set_presence not in ("online", "offline", "unavailable"):
        raise MatrixError(400, Codes.INVALID_PARAM, "invalid set_presence")
    flt = await parse_filter(request, requester.user_id)
    if websocket.is_upgrade(request):
        return await websocket.serve(request, requester, since, flt, full_state, set_presence)
    if c.presence is not None:
        await c.presence.heartbeat(requester.user_id, requester.device_id, set_presence,
                                   grace_ms=timeout)
    result = await c.sync.sync(requester, since, flt, timeout, full_state)
    return json_response(result.body)
