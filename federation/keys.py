"""/_matrix/key/v2: our keys (GET server) and the notary endpoints (POST and GET query)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from federation.context import fed
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, query_int, read_json
from homeserver.types import is_valid_server_name

routes = web.RouteTableDef()

MAX_QUERY_SERVERS = 100


@routes.get("/_matrix/key/v2/server")
@routes.get("/_matrix/key/v2/server/{key_id}")  # deprecated form, still asked by some servers
async def server_keys(request: web.Request) -> web.Response:
    return json_response(fed(request).keys.own_response())


def _criteria(body: Any) -> dict[str, dict[str, int]]:
    servers = body.get("server_keys") if isinstance(body, dict) else None
    if not isinstance(servers, dict):
        raise MatrixError(400, Codes.BAD_JSON, "server_keys must be an object")
    if len(servers) > MAX_QUERY_SERVERS:
        raise MatrixError(400, Codes.TOO_LARGE, "Too many servers in one query")
    out: dict[str, dict[str, int]] = {}
    for server, keys in servers.items():
        if not is_valid_server_name(server) or not isinstance(keys, dict) or len(keys) > 100:
            raise MatrixError(400, Codes.BAD_JSON, f"Bad query for server {server!r}")
        out[server] = {}
        for key_id, crit in keys.items():
            if not isinstance(key_id, str) or not isinstance(crit, dict):
                raise MatrixError(400, Codes.BAD_JSON, "Bad key criteria")
            minimum = crit.get("minimum_valid_until_ts", 0)
            if not isinstance(minimum, int) or isinstance(minimum, bool):
                raise MatrixError(400, Codes.BAD_JSON, "minimum_valid_until_ts must be an int")
            out[server][key_id] = minimum
    return out


@routes.post("/_matrix/key/v2/query")
async def query(request: web.Request) -> web.Response:
    wanted = _criteria(await read_json(request))
    return json_response({"server_keys": await fed(request).keys.notary_query(wanted)})


@routes.get("/_matrix/key/v2/query/{server_name}")
@routes.get("/_matrix/key/v2/query/{server_name}/{key_id}")  # older form, one key
async def query_one(request: web.Request) -> web.Response:
    server = request.match_info["server_name"]
    if not is_valid_server_name(server):
        raise MatrixError(400, Codes.INVALID_PARAM, "Bad server name")
    minimum = query_int(request, "minimum_valid_until_ts", 0)
    key_id = request.match_info.get("key_id")
    if key_id is not None:
        return json_response({"server_keys": await fed(request).keys.notary_query(
            {server: {key_id: minimum}})})
    keys = await fed(request).keys.notary_query({server: {}})
    keys = [k for k in keys if k.get("valid_until_ts", 0) >= minimum]
    return json_response({"server_keys": keys})
