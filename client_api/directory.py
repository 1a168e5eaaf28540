"""Room aliases and the public room directory."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, query_int, read_json
from homeserver.types import is_valid_room_alias, is_valid_room_id, is_valid_server_name

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"


def _check_alias(request: web.Request) -> str:
    alias = request.match_info["alias"]
    server = ctx(request).config.server_name
    if not is_valid_room_alias(alias):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room alias")
    if alias.partition(":")[2] != server:
        raise MatrixError(400, Codes.INVALID_PARAM, "Alias must be on this server")
    return alias


@routes.get(V + "/directory/room/{alias}")
async def get_alias(request: web.Request) -> web.Response:
    alias = request.match_info["alias"]
    if not is_valid_room_alias(alias):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room alias")
    c = ctx(request)
    if alias.partition(":")[2] != c.config.server_name and c.rooms.remote is not None:
        room_id, servers = await c.rooms.remote.resolve_alias(alias)  # /query/directory
        return json_response({"room_id": room_id, "servers": servers})
    try:
        room_id = await c.reader.resolve_alias(alias)
    except MatrixError as e:
        # An alias in an application service's namespace is the AS's to make on demand.
        if e.status != 404 or c.appservices is None or not await c.appservices.query_alias(
                alias):
            raise
        room_id = await c.reader.resolve_alias(alias)
    return json_response({"room_id": room_id, "servers": [c.config.server_name]})


@routes.put(V + "/directory/room/{alias}")
async def put_alias(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    alias = _check_alias(request)
    body = await read_json(request)
    room_id = body.get("room_id")
    if not isinstance(room_id, str):
        raise MatrixError(400, Codes.BAD_JSON, "room_id is required")
    if not is_valid_room_id(room_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room id")
    await c.rooms.create_alias(requester, alias, room_id)
    return json_response({})


@routes.delete(V + "/directory/room/{alias}")
async def delete_alias(request: web.Request) -> web.Response:
    requester = await auth(request)
    await ctx(request).rooms.delete_alias(requester, _check_alias(request))
    return json_response({})


@routes.get(V + "/rooms/{room_id}/aliases")
async def room_aliases(request: web.Request) -> web.Response:
    requester = await auth(request)
    aliases = await ctx(request).reader.room_aliases(requester, request.match_info["room_id"])
    return json_response({"aliases": aliases})


@routes.get(V + "/directory/list/room/{room_id}")
async def get_visibility(request: web.Request) -> web.Response:
    c = ctx(request)
    await c.rooms.get_room(request.match_info["room_id"])
    public = request.match_info["room_id"] in await c.reader.public_rooms()
    return json_response({"visibility": "public" if public else "private"})


@routes.put(V + "/directory/list/room/{room_id}")
async def set_visibility(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    body = await read_json(request)
    vis = body.get("visibility")
    if vis not in ("public", "private"):
        raise MatrixError(400, Codes.BAD_JSON, "visibility must be public or private")
    await c.rooms.set_public(requester, request.match_info["room_id"], vis == "public")
    return json_response({})


async def _public_rooms(request: web.Request, limit: int, since: str | None,
                        term: str | None, instance_id: object = None,
                        all_networks: object = False) -> web.Response:
    c = ctx(request)
    server = request.query.get("server")
    if server is not None and not is_valid_server_name(server):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid server name")
    if instance_id is not None and not isinstance(instance_id, str):
        raise MatrixError(400, Codes.BAD_JSON, "third_party_instance_id must be a string")
    if not isinstance(all_networks, bool):
        raise MatrixError(400, Codes.BAD_JSON, "include_all_networks must be a boolean")
    if instance_id is not None and all_networks:
        raise MatrixError(400, Codes.INVALID_PARAM, "Give third_party_instance_id or "
                                                    "include_all_networks, not both")
    assert c.public_rooms is not None
    return json_response(await c.public_rooms.page(limit, since, term, server,
                                                   instance_id, all_networks))


@routes.get(V + "/publicRooms")
async def public_rooms_get(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 0, 0, 1000)
    q = request.query
    return await _public_rooms(request, limit, q.get("since"), None,
                               q.get("third_party_instance_id"),
                               q.get("include_all_networks", "false").lower() == "true")


@routes.post(V + "/publicRooms")
async def public_rooms_post(request: web.Request) -> web.Response:
    await auth(request)
    body = await read_json(request, allow_empty=True)
    limit = body.get("limit", 0)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise MatrixError(400, Codes.BAD_JSON, "limit must be a non-negative integer")
    flt = body.get("filter") if isinstance(body.get("filter"), dict) else {}
    term = flt.get("generic_search_term")
    since = body.get("since")
    if since is not None and not isinstance(since, str):
        raise MatrixError(400, Codes.BAD_JSON, "since must be a string")
    return await _public_rooms(request, limit, since, term if isinstance(term, str) else None,
                               body.get("third_party_instance_id"),
                               body.get("include_all_networks", False))
