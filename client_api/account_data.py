"""Account data (global and per room) and filters."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError, forbidden
from homeserver.http import json_response, read_json
from homeserver.types import Requester, is_valid_room_id

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"
SERVER_MANAGED = ("m.fully_read", "m.push_rules")


def _own(requester: Requester, user_id: str) -> None:
    if requester.user_id != user_id:
        raise forbidden("Cannot access another user's account data")


@routes.put(V + "/user/{user_id}/account_data/{type}")
async def put_global(request: web.Request) -> web.Response:
    requester = await auth(request)
    _own(requester, request.match_info["user_id"])
    body = await read_json(request)
    etype = request.match_info["type"]
    if etype in SERVER_MANAGED:
        raise MatrixError(400, Codes.BAD_JSON, f"{etype} is managed by the server")
    await ctx(request).account_data.put_account_data(requester.user_id, "", etype, body)
    return json_response({})


@routes.get(V + "/user/{user_id}/account_data/{type}")
async def get_global(request: web.Request) -> web.Response:
    requester = await auth(request)
    _own(requester, request.match_info["user_id"])
    return json_response(await ctx(request).account_data.get_account_data(
        requester.user_id, "", request.match_info["type"]))


@routes.put(V + "/user/{user_id}/rooms/{room_id}/account_data/{type}")
async def put_room(request: web.Request) -> web.Response:
    requester = await auth(request)
    _own(requester, request.match_info["user_id"])
    body = await read_json(request)
    etype = request.match_info["type"]
    if etype in SERVER_MANAGED:
        raise MatrixError(400, Codes.BAD_JSON, f"{etype} is managed by the server")
    room_id = request.match_info["room_id"]
    if not is_valid_room_id(room_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room id")
    await ctx(request).account_data.put_account_data(requester.user_id, room_id, etype, body)
    return json_response({})


@routes.get(V + "/user/{user_id}/rooms/{room_id}/account_data/{type}")
async def get_room(request: web.Request) -> web.Response:
    requester = await auth(request)
    _own(requester, request.match_info["user_id"])
    return json_response(await ctx(request).account_data.get_account_data(
        requester.user_id, request.match_info["room_id"], request.match_info["type"]))


@routes.post(V + "/user/{user_id}/filter")
async def create_filter(request: web.Request) -> web.Response:
    requester = await auth(request)
    _own(requester, request.match_info["user_id"])
    body = await read_json(request, "filter")
    return json_response({"filter_id": await ctx(request).filters.create_filter(
        requester.user_id, body)})


@routes.get(V + "/user/{user_id}/filter/{filter_id}")
async def get_filter(request: web.Request) -> web.Response:
    requester = await auth(request)
    _own(requester, request.match_info["user_id"])
    return json_response(await ctx(request).filters.get_filter(
        requester.user_id, request.match_info["filter_id"]))
