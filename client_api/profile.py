"""Profiles (displayname, avatar_url); a change is reflected in the user's joined rooms."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError, not_found
from homeserver.http import json_response, read_json
from homeserver.types import is_valid_user_id

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"
FIELDS = ("displayname", "avatar_url")


def _user_id(request: web.Request) -> str:
    user_id = request.match_info["user_id"]
    if not is_valid_user_id(user_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user id")
    return user_id


@routes.get(V + "/profile/{user_id}")
async def get_profile(request: web.Request) -> web.Response:
    return json_response(await ctx(request).profiles.lookup(_user_id(request)))


@routes.get(V + "/profile/{user_id}/{field}")
async def get_field(request: web.Request) -> web.Response:
    field = request.match_info["field"]
    profile = await ctx(request).profiles.lookup(_user_id(request))
    if field not in profile:
        raise not_found("Profile field not set")
    return json_response({field: profile[field]})


@routes.put(V + "/profile/{user_id}/{field}")
async def set_field(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    field = request.match_info["field"]
    if field not in FIELDS:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Unsupported profile field {field}")
    user_id = _user_id(request)
    body = await read_json(request)
    if field not in body:  # spec: PUT /profile/{userId}/{keyName}, 400 M_MISSING_PARAM
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing key {field!r} in the body")
    value = body[field]
    if value is not None and not isinstance(value, str):
        raise MatrixError(400, Codes.BAD_JSON, f"{field} must be a string")
    if value is not None and len(value.encode()) > 1024:
        raise MatrixError(400, Codes.TOO_LARGE, f"{field} is too long")
    await c.profiles.set_profile_field(requester, user_id, field, value)
    await c.rooms.update_profile(requester, user_id)  # into each joined room's member event
    return json_response({})
