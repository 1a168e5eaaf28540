"""/_matrix/federation/v1/query/*: profiles and room aliases of this server's users and
directory (spec "Querying for information")."""

from __future__ import annotations

from aiohttp import web

from federation.context import fed, signed
from homeserver.errors import Codes, MatrixError, not_found
from homeserver.http import json_response
from homeserver.types import is_valid_room_alias, is_valid_user_id
from homeserver.users.profile_fields import KEY_PATTERN

routes = web.RouteTableDef()


@routes.get("/_matrix/federation/v1/query/profile")
async def profile(request: web.Request) -> web.Response:
    await signed(request)
    ctx = fed(request)
    user_id = request.query.get("user_id")
    if user_id is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing user_id")
    if not is_valid_user_id(user_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Bad user_id")
    if user_id.partition(":")[2] != ctx.server_name:
        raise not_found("Not a user of this server")
    field = request.query.get("field")
    if field is not None and not KEY_PATTERN.fullmatch(field):
        raise MatrixError(400, Codes.INVALID_PARAM, "Unknown profile field")
    # The whole profile, custom fields (MSC4133) included, as the spec allows.
    profiles = ctx.profiles
    body = await (profiles.fields.full_profile(user_id) if profiles.fields is not None
                  else profiles.profile(user_id))
    if field is not None:
        body = {field: body[field]} if field in body else {}
    return json_response(body)


@routes.get("/_matrix/federation/v1/query/directory")
async def directory(request: web.Request) -> web.Response:
    await signed(request)
    ctx = fed(request)
    alias = request.query.get("room_alias")
    if alias is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing room_alias")
    if not is_valid_room_alias(alias):
        raise MatrixError(400, Codes.INVALID_PARAM, "Bad room_alias")
    if alias.partition(":")[2] != ctx.server_name:
        raise not_found("Not an alias of this server")
    room_id = await ctx.reader.resolve_alias(alias)
    return json_response({"room_id": room_id, "servers": await ctx.servers_in_room(room_id)})
