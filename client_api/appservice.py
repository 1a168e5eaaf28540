"""Client-server endpoints only application services use: ping (spec v1.7) and the room lists
of their networks (spec "Published room directories")."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.appservice.service import AppServiceQueries
from homeserver.errors import Codes, MatrixError, forbidden
from homeserver.http import json_response, read_json
from homeserver.types import is_valid_room_id

routes = web.RouteTableDef()


def _queries(request: web.Request) -> AppServiceQueries:
    q = ctx(request).appservices
    if q is None:  # no AS is registered: no as_token can have made this request
        raise forbidden("Only application services may use this endpoint")
    return q


@routes.post("/_matrix/client/v1/appservice/{as_id}/ping")
async def ping(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request, allow_empty=True)
    txn_id = body.get("transaction_id")
    if txn_id is not None and not isinstance(txn_id, str):
        raise MatrixError(400, Codes.BAD_JSON, "transaction_id must be a string")
    duration = await _queries(request).ping(requester, request.match_info["as_id"], txn_id)
    return json_response({"duration_ms": duration})


def _room(request: web.Request) -> tuple[str, str]:
    room_id = request.match_info["room_id"]
    if not is_valid_room_id(room_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room id")
    return request.match_info["network_id"], room_id


@routes.put("/_matrix/client/{v:(v3|r0)}/directory/list/appservice/{network_id}/{room_id}")
async def list_room(request: web.Request) -> web.Response:
    requester = await auth(request)
    network_id, room_id = _room(request)
    body = await read_json(request)
    vis = body.get("visibility")
    if vis not in ("public", "private"):
        raise MatrixError(400, Codes.BAD_JSON, "visibility must be public or private")
    await _queries(request).set_listed(requester, network_id, room_id, vis == "public")
    return json_response({})


@routes.delete("/_matrix/client/{v:(v3|r0)}/directory/list/appservice/{network_id}/{room_id}")
async def unlist_room(request: web.Request) -> web.Response:
    requester = await auth(request)
    network_id, room_id = _room(request)
    await _queries(request).set_listed(requester, network_id, room_id, False)
    return json_response({})
