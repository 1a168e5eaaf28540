"""Synapse's media admin API (docs/admin_api/media_admin_api.md there), the user API's "media
uploaded by a user" (user_admin_api.md) and users' media statistics (statistics.md): the same
paths, fields and paging. The work is in homeserver/admin/media.py."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin_api.context import admin_ctx, paging, require_admin
from homeserver.admin.media import MediaAdminService
from homeserver.admin.store import USAGE_ORDER, USER_MEDIA_ORDER
from homeserver.errors import invalid_param, missing_param
from homeserver.http import json_response, query_bool, query_choice, query_int
from homeserver.types import is_valid_user_id

routes = web.RouteTableDef()
A = "/_synapse/admin/v1"

# before this (Dec 1970 in ms, or a time in seconds by mistake) a before_ts is refused, as
# Synapse refuses it
EARLIEST_TS = 30_000_000_000


def _media(request: web.Request) -> MediaAdminService:
    return admin_ctx(request).media


def _before_ts(request: web.Request) -> int:
    if "before_ts" not in request.query:
        raise missing_param("Missing integer query parameter 'before_ts'")
    before_ts = query_int(request, "before_ts", 0, minimum=0)
    if before_ts < EARLIEST_TS:
        raise invalid_param("Query parameter before_ts you provided is from the year 1970. "
                            "Double check that you are providing a timestamp in milliseconds.")
    return before_ts


def _page(key: str, items: list[Any], offset: int, total: int) -> dict[str, Any]:
    """Synapse's page for these endpoints: `next_token` is an integer here."""
    body: dict[str, Any] = {key: items, "total": total}
    if offset + len(items) < total:
        body["next_token"] = offset + len(items)
    return body


async def _user_media_query(request: web.Request) -> tuple[str, tuple[str, bool, int, int]]:
    """The user (local and known, else 400/404) and the listing's order and page; with
    neither `order_by` nor `dir`, newest first, as Synapse answers."""
    users = admin_ctx(request).users
    user_id = users.local_user(request.match_info["user_id"])
    offset, limit = paging(request)
    if "order_by" not in request.query and "dir" not in request.query:
        order, backwards = "created_ts", True
    else:
        order = query_choice(request, "order_by", tuple(USER_MEDIA_ORDER), "created_ts")
        backwards = query_choice(request, "dir", ("f", "b"), "f") == "b"
    await users.existing(user_id)
    return user_id, (order, backwards, limit, offset)


@routes.get(A + "/users/{user_id}/media")
async def user_media(request: web.Request) -> web.Response:
    await require_admin(request)
    user_id, (order, backwards, limit, offset) = await _user_media_query(request)
    items, total = await _media(request).user_media(user_id, order, backwards, limit, offset)
    return json_response(_page("media", items, offset, total))


@routes.delete(A + "/users/{user_id}/media")
async def delete_user_media(request: web.Request) -> web.Response:
    await require_admin(request)
    user_id, (order, backwards, limit, offset) = await _user_media_query(request)
    deleted = await _media(request).delete_user_media(user_id, order, backwards, limit, offset)
    return json_response({"deleted_media": deleted, "total": len(deleted)})


@routes.get(A + "/room/{room_id}/media")
async def room_media(request: web.Request) -> web.Response:
    await require_admin(request)
    local, remote = await _media(request).room_media(request.match_info["room_id"])
    return json_response({"local": local, "remote": remote})


# -- quarantine and protection --------------------------------------------------------------

@routes.post(A + "/media/quarantine/{server_name}/{media_id}")
async def quarantine(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    await _media(request).quarantine(request.match_info["server_name"],
                                     request.match_info["media_id"], requester.user_id)
    return json_response({})


@routes.post(A + "/media/unquarantine/{server_name}/{media_id}")
async def unquarantine(request: web.Request) -> web.Response:
    await require_admin(request)
    await _media(request).quarantine(request.match_info["server_name"],
                                     request.match_info["media_id"], None)
    return json_response({})


@routes.post(A + "/room/{room_id}/media/quarantine")
@routes.post(A + "/quarantine_media/{room_id}")
async def quarantine_room(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    n = await _media(request).quarantine_room(request.match_info["room_id"], requester.user_id)
    return json_response({"num_quarantined": n})


@routes.post(A + "/user/{user_id}/media/quarantine")
async def quarantine_user(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    user_id = request.match_info["user_id"]
    if not is_valid_user_id(user_id):
        raise invalid_param("Invalid user id")
    n = await _media(request).quarantine_user(user_id, requester.user_id)
    return json_response({"num_quarantined": n})


@routes.post(A + "/media/protect/{media_id}")
async def protect(request: web.Request) -> web.Response:
    await require_admin(request)
    await _media(request).protect(request.match_info["media_id"], True)
    return json_response({})


@routes.post(A + "/media/unprotect/{media_id}")
async def unprotect(request: web.Request) -> web.Response:
    await require_admin(request)
    await _media(request).protect(request.match_info["media_id"], False)
    return json_response({})


# -- deleting ---------------------------------------------------------------------------------

@routes.post(A + "/media/delete")
async def delete_old(request: web.Request) -> web.Response:
    await require_admin(request)
    before_ts = _before_ts(request)
    size_gt = query_int(request, "size_gt", 0, minimum=0)
    keep_profiles = query_bool(request, "keep_profiles", True)
    deleted = await _media(request).delete_old_local(before_ts, size_gt, keep_profiles)
    return json_response({"deleted_media": deleted, "total": len(deleted)})


@routes.post(A + "/media/{server_name}/delete")
async def delete_old_legacy(request: web.Request) -> web.Response:
    """The deprecated form of POST /media/delete, with the server name in the path."""
    await require_admin(request)
    before_ts = _before_ts(request)
    size_gt = query_int(request, "size_gt", 0, minimum=0)
    keep_profiles = query_bool(request, "keep_profiles", True)
    if request.match_info["server_name"] != _media(request).server_name:
        raise invalid_param("Can only delete local media")
    deleted = await _media(request).delete_old_local(before_ts, size_gt, keep_profiles)
    return json_response({"deleted_media": deleted, "total": len(deleted)})


@routes.get(A + "/media/{server_name}/{media_id}")
async def media_info(request: web.Request) -> web.Response:
    await require_admin(request)
    info = await _media(request).media_info(request.match_info["server_name"],
                                            request.match_info["media_id"])
    return json_response({"media_info": info})


@routes.delete(A + "/media/{server_name}/{media_id}")
async def delete_media(request: web.Request) -> web.Response:
    await require_admin(request)
    deleted = await _media(request).delete_one(request.match_info["server_name"],
                                               request.match_info["media_id"])
    return json_response({"deleted_media": deleted, "total": len(deleted)})


@routes.post(A + "/purge_media_cache")
async def purge_media_cache(request: web.Request) -> web.Response:
    await require_admin(request)
    deleted = await _media(request).purge_remote_cache(_before_ts(request))
    return json_response({"deleted": deleted})


# -- statistics -------------------------------------------------------------------------------

@routes.get(A + "/statistics/users/media")
async def users_media_statistics(request: web.Request) -> web.Response:
    await require_admin(request)
    offset, limit = paging(request)
    order = query_choice(request, "order_by", tuple(USAGE_ORDER), "user_id")
    backwards = query_choice(request, "dir", ("f", "b"), "f") == "b"
    from_ts = query_int(request, "from_ts", 0, minimum=0) if "from_ts" in request.query \
        else None
    until_ts = query_int(request, "until_ts", 0, minimum=0) if "until_ts" in request.query \
        else None
    if from_ts is not None and until_ts is not None and until_ts < from_ts:
        raise invalid_param("Query parameter until_ts must be greater than from_ts.")
    search = request.query.get("search_term")
    if search is not None and not search:
        raise invalid_param("Query parameter search_term cannot be empty.")
    users, total = await _media(request).users_media_usage(
        order, backwards, limit, offset, from_ts, until_ts, search)
    return json_response(_page("users", users, offset, total))
