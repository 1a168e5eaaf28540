"""User directory search (spec "User directory", POST /user_directory/search).

As Synapse does by default, a user finds the users they share a joined room with and the users
joined to public (or world-readable) rooms, by user id or display name; see
`RoomReader.search_user_directory` for the matching and ranking.
"""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, read_json

routes = web.RouteTableDef()
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000  # a bigger limit is served as this many (the response says `limited`)


@routes.post("/_matrix/client/{v:(v3|r0)}/user_directory/search")
async def search(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    term = body.get("search_term")
    if term is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "search_term is required")
    if not isinstance(term, str):
        raise MatrixError(400, Codes.BAD_JSON, "search_term must be a string")
    limit = body.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise MatrixError(400, Codes.BAD_JSON, "limit must be an integer")
    if limit < 0:
        raise MatrixError(400, Codes.INVALID_PARAM, "limit must not be negative")
    results, limited = await ctx(request).reader.search_user_directory(
        requester, term, min(limit, MAX_LIMIT))
    return json_response({"results": results, "limited": limited})
