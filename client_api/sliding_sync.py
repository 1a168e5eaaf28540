"""POST /sync of Simplified Sliding Sync (MSC4186): the stable v4 path and the unstable one.

One handler for both; the unstable path keeps the dialect matrix-rust-sdk speaks there
(`pos`/`timeout` may come as query parameters, `invite_state` rather than `stripped_state`).
The work is homeserver/sync/sliding.py's.
"""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, park, query_int, read_json
from homeserver.sync.sliding_request import parse_request

routes = web.RouteTableDef()

UNSTABLE = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
STABLE = "/_matrix/client/v4/sync"


async def _sliding_sync(request: web.Request, stable: bool) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    if c.sliding_sync is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")
    body = await read_json(request, "sliding_sync", allow_empty=True)
    query_timeout = query_int(request, "timeout", 0, 0, 600_000)
    req = parse_request(body, request.query.get("pos"), query_timeout,
                        request.query.get("set_presence"))
    if c.presence is not None:
        await c.presence.heartbeat(requester.user_id, requester.device_id, req.set_presence,
                                   grace_ms=req.timeout_ms)
    if req.pos is not None and req.timeout_ms > 0:
        park(request)  # this one may wait long
    return json_response(await c.sliding_sync.sync(requester, req, stable))


@routes.post(STABLE)
async def sliding_sync_v4(request: web.Request) -> web.Response:
    return await _sliding_sync(request, stable=True)


@routes.post(UNSTABLE)
async def sliding_sync_unstable(request: web.Request) -> web.Response:
    return await _sliding_sync(request, stable=False)
