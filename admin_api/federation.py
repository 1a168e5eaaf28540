"""Synapse's federation admin API (docs/usage/administration/admin_api/federation.md there):
the destinations this server sends to, their retry state and rooms, and a connection reset."""

from __future__ import annotations

from aiohttp import web

from admin_api.context import admin_ctx, page_body, paging, require_admin
from homeserver.federation.store import DESTINATION_ORDER
from homeserver.http import json_response, query_choice, read_json

routes = web.RouteTableDef()
A = "/_synapse/admin/v1/federation/destinations"


@routes.get(A)
async def list_destinations(request: web.Request) -> web.Response:
    await require_admin(request)
    offset, limit = paging(request)
    destinations, total = await admin_ctx(request).destinations.page(
        request.query.get("destination") or None,
        query_choice(request, "order_by", tuple(DESTINATION_ORDER), "destination"),
        query_choice(request, "dir", ("f", "b"), "f") == "b", limit, offset)
    return json_response(page_body("destinations", destinations, offset, total))


@routes.get(A + "/{destination}")
async def get_destination(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(
        await admin_ctx(request).destinations.get(request.match_info["destination"]))


@routes.get(A + "/{destination}/rooms")
async def destination_rooms(request: web.Request) -> web.Response:
    await require_admin(request)
    offset, limit = paging(request)
    rooms, total = await admin_ctx(request).destinations.rooms(
        request.match_info["destination"],
        query_choice(request, "dir", ("f", "b"), "f") == "b", limit, offset)
    return json_response(page_body("rooms", rooms, offset, total))


@routes.post(A + "/{destination}/reset_connection")
async def reset_connection(request: web.Request) -> web.Response:
    await require_admin(request)
    await read_json(request, allow_empty=True)
    await admin_ctx(request).destinations.reset_connection(request.match_info["destination"])
    return json_response({})
