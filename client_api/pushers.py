"""Pushers and the notifications list (spec "Client behaviour", "Listing Notifications").
Logic lives in homeserver/push/."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, query_int, read_json
from homeserver.push.notifications import NotificationService
from homeserver.push.pushers import PusherService

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"
MAX_LIMIT = 100


def _pushers(request: web.Request) -> PusherService:
    service = ctx(request).pushers
    if service is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Pushers are not enabled")
    return service


def _notifications(request: web.Request) -> NotificationService:
    service = ctx(request).notifications
    if service is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Notifications are not enabled")
    return service


@routes.get(V + "/pushers")
async def get_pushers(request: web.Request) -> web.Response:
    requester = await auth(request)
    return json_response({"pushers": await _pushers(request).list(requester.user_id)})


@routes.post(V + "/pushers/set")
async def set_pusher(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    await _pushers(request).set(requester.user_id, body, requester.device_id)
    return json_response({})


@routes.get(V + "/notifications")
async def get_notifications(request: web.Request) -> web.Response:
    requester = await auth(request)
    raw_from = request.query.get("from")
    before: int | None = None
    if raw_from is not None:
        if not raw_from.isascii() or not raw_from.isdigit() or len(raw_from) > 18:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid from token")
        before = int(raw_from)
    limit = query_int(request, "limit", 20, minimum=1, maximum=MAX_LIMIT)
    only = request.query.get("only")
    items, nxt = await _notifications(request).page(requester.user_id, before, limit,
                                                    only == "highlight")
    out: dict[str, object] = {"notifications": items}
    if nxt is not None:
        out["next_token"] = str(nxt)
    return json_response(out)
