"""Profiles: displayname and avatar_url (a change is reflected in the user's joined rooms),
and since spec v1.16 (MSC4133) m.tz and custom fields (homeserver/users/profile_fields.py),
also at MSC4133's unstable path."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError, not_found
from homeserver.http import json_response, read_json
from homeserver.types import is_valid_user_id
from homeserver.users.profile_fields import CLASSIC, check_key

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"
UNSTABLE = "/_matrix/client/unstable/uk.tcpip.msc4133"
FIELDS = CLASSIC


def _user_id(request: web.Request) -> str:
    user_id = request.match_info["user_id"]
    if not is_valid_user_id(user_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user id")
    return user_id


def _field(request: web.Request) -> str:
    field = request.match_info["field"]
    check_key(field)
    return field


@routes.get(V + "/profile/{user_id}")
async def get_profile(request: web.Request) -> web.Response:
    return json_response(await ctx(request).profiles.lookup(_user_id(request)))


@routes.get(V + "/profile/{user_id}/{field}")
@routes.get(UNSTABLE + "/profile/{user_id}/{field}")
async def get_field(request: web.Request) -> web.Response:
    user_id = _user_id(request)
    field = _field(request)
    profile = await ctx(request).profiles.lookup(user_id)
    if field not in profile:
        raise not_found("Profile field not set")
    return json_response({field: profile[field]})


@routes.put(V + "/profile/{user_id}/{field}")
@routes.put(UNSTABLE + "/profile/{user_id}/{field}")
async def set_field(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    user_id = _user_id(request)
    field = _field(request)
    body = await read_json(request)
    if field not in body:  # spec: PUT /profile/{userId}/{keyName}, 400 M_MISSING_PARAM
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing key {field!r} in the body")
    value = body[field]
    fields = c.profiles.fields
    assert fields is not None
    if field not in CLASSIC:
        if field == "m.tz" and not isinstance(value, str):
            raise MatrixError(400, Codes.BAD_JSON, "m.tz must be a string")
        await fields.set_field(requester, user_id, field, value)
        return json_response({})
    if value is not None and not isinstance(value, str):
        raise MatrixError(400, Codes.BAD_JSON, f"{field} must be a string")
    if value is not None and len(value.encode()) > 1024:
        raise MatrixError(400, Codes.TOO_LARGE, f"{field} is too long")
    fields.check_owner(requester, user_id)
    await fields.check_size_now(user_id, field, value)
    await c.profiles.set_profile_field(requester, user_id, field, value)
    await c.rooms.update_profile(requester, user_id)  # into each joined room's member event
    return json_response({})


@routes.delete(V + "/profile/{user_id}/{field}")
@routes.delete(UNSTABLE + "/profile/{user_id}/{field}")
async def delete_field(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    user_id = _user_id(request)
    field = _field(request)
    fields = c.profiles.fields
    assert fields is not None
    if field not in CLASSIC:
        await fields.delete_field(requester, user_id, field)
        return json_response({})
    await c.profiles.set_profile_field(requester, user_id, field, None)
    await c.rooms.update_profile(requester, user_id)
    return json_response({})
