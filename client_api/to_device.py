"""Send-to-device messaging: PUT /sendToDevice/{eventType}/{txnId}."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, read_json

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"
MAX_ID_LENGTH = 255


@routes.put(V + "/sendToDevice/{event_type}/{txn_id}")
async def send_to_device(request: web.Request) -> web.Response:
    requester = await auth(request)
    event_type, txn_id = request.match_info["event_type"], request.match_info["txn_id"]
    if len(event_type) > MAX_ID_LENGTH or len(txn_id) > MAX_ID_LENGTH:
        raise MatrixError(400, Codes.INVALID_PARAM, "Event type or txn id too long")
    body = await read_json(request, "send_to_device")
    service = ctx(request).to_device
    if service is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "To-device messaging is not enabled")
    await service.send(requester, event_type, body["messages"], txn_id)
    return json_response({})
