"""POST /search: server-side search of room events (homeserver/search/)."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, read_json, validate

routes = web.RouteTableDef()


@routes.post("/_matrix/client/{v:(v3|r0)}/search")
async def search(request: web.Request) -> web.Response:
    requester = await auth(request)
    service = ctx(request).search
    if service is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")
    body = await read_json(request, "search")
    flt = body["search_categories"].get("room_events", {}).get("filter")
    if flt is not None:
        validate(flt, "room_event_filter")
    return json_response(await service.search(requester, body,
                                              request.query.get("next_batch")))
