"""/_matrix/federation/v1/publicRooms (GET and POST): this server's public room directory
for other servers, the same list local clients get (homeserver/rooms/directory.py).
Third-party networks are not supported: the list is this server's rooms whatever
`include_all_networks` or `third_party_instance_id` say."""

from __future__ import annotations

from aiohttp import web

from federation.context import fed, signed
from homeserver.errors import Codes, MatrixError, bad_json
from homeserver.http import json_response, query_int

routes = web.RouteTableDef()
P = "/_matrix/federation/v1/publicRooms"


@routes.get(P)
async def public_rooms_get(request: web.Request) -> web.Response:
    await signed(request)
    limit = query_int(request, "limit", 0, 0, 1000)
    return json_response(await fed(request).public_rooms.page(
        limit, request.query.get("since"), None))


@routes.post(P)
async def public_rooms_post(request: web.Request) -> web.Response:
    _, body = await signed(request)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise bad_json("The body must be an object")
    limit = body.get("limit", 0)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= 1000:
        raise MatrixError(400, Codes.BAD_JSON, "limit must be an integer from 0 to 1000")
    since = body.get("since")
    if since is not None and not isinstance(since, str):
        raise bad_json("since must be a string")
    flt = body.get("filter")
    if flt is not None and not isinstance(flt, dict):
        raise bad_json("filter must be an object")
    term = (flt or {}).get("generic_search_term")
    if term is not None and not isinstance(term, str):
        raise bad_json("generic_search_term must be a string")
    return json_response(await fed(request).public_rooms.page(limit, since, term))
