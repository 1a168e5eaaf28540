"""Synapse's user admin API (docs/admin_api/user_admin_api.md there) and the spec's
`/_matrix/client/v1/admin/{suspend,lock}/{userId}` (v1.18) and `/v3/admin/whois`."""

from __future__ import annotations

from aiohttp import web

from admin_api.context import admin_ctx, page_body, paging, require_admin
from client_api.context import auth
from homeserver.admin.store import USER_ORDER
from homeserver.errors import Codes, MatrixError, bad_json, forbidden, missing_param
from homeserver.events.validation import MAX_SAFE_INT
from homeserver.http import json_response, query_bool, query_choice, query_int, read_json
from homeserver.types import Requester

routes = web.RouteTableDef()
A = "/_synapse/admin"


def _uid(request: web.Request) -> str:
    return admin_ctx(request).users.local_user(request.match_info["user_id"])


def _opt_bool(body: dict[str, object], key: str) -> None:
    if key in body and not isinstance(body[key], bool):
        raise bad_json(f"{key} must be a boolean")


def _opt_str(body: dict[str, object], key: str, nullable: bool = True) -> None:
    if key in body and not (isinstance(body[key], str) or (nullable and body[key] is None)):
        raise bad_json(f"{key} must be a string")


@routes.get(A + "/v2/users")
async def list_users(request: web.Request) -> web.Response:
    await require_admin(request)
    offset, limit = paging(request)
    admins = request.query.get("admins")
    users, total = await admin_ctx(request).users.list_users(
        user_id=request.query.get("user_id"), name=request.query.get("name"),
        guests=query_bool(request, "guests", True),
        deactivated=query_bool(request, "deactivated", False),
        locked=query_bool(request, "locked", False),
        admins=None if admins is None else query_bool(request, "admins", False),
        order_by=query_choice(request, "order_by", tuple(USER_ORDER), "name"),
        backwards=query_choice(request, "dir", ("f", "b"), "f") == "b",
        limit=limit, offset=offset)
    return json_response(page_body("users", users, offset, total))


@routes.get(A + "/v2/users/{user_id}")
async def get_user(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_ctx(request).users.user(request.match_info["user_id"]))


@routes.put(A + "/v2/users/{user_id}")
async def put_user(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await read_json(request, allow_empty=True)
    for key in ("logout_devices", "admin", "deactivated", "locked"):
        _opt_bool(body, key)
    for key in ("password", "displayname", "avatar_url"):
        _opt_str(body, key)
    users = admin_ctx(request).users
    created = await users.upsert(requester, _uid(request), body)
    return json_response(await users.user(_uid(request)), 201 if created else 200)


@routes.post(A + "/v1/deactivate/{user_id}")
async def deactivate(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json(request, allow_empty=True)
    _opt_bool(body, "erase")
    await admin_ctx(request).users.deactivate(_uid(request), bool(body.get("erase", False)))
    return json_response({"id_server_unbind_result": "success"})


@routes.post(A + "/v1/reset_password/{user_id}")
async def reset_password(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json(request)
    if not isinstance(body.get("new_password"), str):
        raise missing_param("new_password is required")
    _opt_bool(body, "logout_devices")
    await admin_ctx(request).users.reset_password(
        _uid(request), body["new_password"], bool(body.get("logout_devices", True)))
    return json_response({})


@routes.get(A + "/v1/whois/{user_id}")
async def whois(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_ctx(request).users.whois(_uid(request)))


@routes.get("/_matrix/client/{v:(v3|r0)}/admin/whois/{user_id}")
async def client_whois(request: web.Request) -> web.Response:
    """The spec's whois: server admins, or the user asking about themselves."""
    requester = await auth(request)
    user_id = request.match_info["user_id"]
    if not requester.is_admin and requester.user_id != user_id:
        raise forbidden("You are not a server admin")
    return json_response(await admin_ctx(request).users.whois(_uid(request)))


@routes.get(A + "/v2/users/{user_id}/devices")
async def list_devices(request: web.Request) -> web.Response:
    await require_admin(request)
    devices = await admin_ctx(request).users.user_devices(_uid(request))
    return json_response({"devices": devices, "total": len(devices)})


@routes.get(A + "/v2/users/{user_id}/devices/{device_id}")
async def get_device(request: web.Request) -> web.Response:
    await require_admin(request)
    users = admin_ctx(request).users
    user_id = _uid(request)
    await users.existing(user_id)
    return json_response(await users.devices.device(user_id, request.match_info["device_id"]))


@routes.put(A + "/v2/users/{user_id}/devices/{device_id}")
async def rename_device(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json(request, allow_empty=True)
    _opt_str(body, "display_name", nullable=False)
    users = admin_ctx(request).users
    user_id = _uid(request)
    await users.existing(user_id)
    if "display_name" in body:
        await users.devices.rename_device(user_id, request.match_info["device_id"],
                                          body["display_name"])
    else:
        await users.devices.device(user_id, request.match_info["device_id"])
    return json_response({})


@routes.delete(A + "/v2/users/{user_id}/devices/{device_id}")
async def delete_device(request: web.Request) -> web.Response:
    await require_admin(request)
    users = admin_ctx(request).users
    user_id = _uid(request)
    await users.existing(user_id)
    await users.devices.delete_devices(user_id, [request.match_info["device_id"]])
    return json_response({})


@routes.post(A + "/v2/users/{user_id}/delete_devices")
async def delete_devices(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json(request)
    devices = body.get("devices")
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise bad_json("devices must be a list of device ids")
    users = admin_ctx(request).users
    user_id = _uid(request)
    await users.existing(user_id)
    await users.devices.delete_devices(user_id, devices)
    return json_response({})


@routes.get(A + "/v1/users/{user_id}/joined_rooms")
async def joined_rooms(request: web.Request) -> web.Response:
    await require_admin(request)
    rooms = await admin_ctx(request).users.joined_rooms(_uid(request))
    return json_response({"joined_rooms": rooms, "total": len(rooms)})


@routes.get(A + "/v1/users/{user_id}/pushers")
async def pushers(request: web.Request) -> web.Response:
    await require_admin(request)
    found = await admin_ctx(request).users.pushers(_uid(request))
    return json_response({"pushers": found, "total": len(found)})


@routes.get(A + "/v1/users/{user_id}/admin")
async def get_admin(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response({"admin": (await admin_ctx(request).users.existing(
        _uid(request)))["admin"]})


@routes.put(A + "/v1/users/{user_id}/admin")
async def put_admin(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await read_json(request)
    if not isinstance(body.get("admin"), bool):
        raise missing_param("admin must be a boolean")
    await admin_ctx(request).users.set_admin(requester, _uid(request), body["admin"])
    return json_response({})


@routes.get(A + "/v1/username_available")
async def username_available(request: web.Request) -> web.Response:
    await require_admin(request)
    username = request.query.get("username")
    if not username:
        raise missing_param("username is required")
    if not await admin_ctx(request).users.username_available(username):
        raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.")
    return json_response({"available": True})


# -- account states -------------------------------------------------------------------------

async def _set_state(request: web.Request, requester: Requester, flag: str,
                     value: bool) -> str:
    users = admin_ctx(request).users
    user_id = _uid(request)
    target = await users.existing(user_id, active=flag != "shadow_banned")
    if flag in ("locked", "suspended") and value and target["admin"] and (
            user_id != requester.user_id):
        raise forbidden("Cannot change the state of another server admin")
    await users.states.set_flag(user_id, flag, value)
    return user_id


@routes.post(A + "/v1/users/{user_id}/shadow_ban")
async def shadow_ban(request: web.Request) -> web.Response:
    await _set_state(request, await require_admin(request), "shadow_banned", True)
    return json_response({})


@routes.delete(A + "/v1/users/{user_id}/shadow_ban")
async def shadow_unban(request: web.Request) -> web.Response:
    await _set_state(request, await require_admin(request), "shadow_banned", False)
    return json_response({})


@routes.put(A + "/v1/suspend/{user_id}")
async def synapse_suspend(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await read_json(request)
    if not isinstance(body.get("suspend"), bool):
        raise missing_param("suspend must be a boolean")
    user_id = await _set_state(request, requester, "suspended", body["suspend"])
    return json_response({f"user_{user_id}_suspended": body["suspend"]})


for _flag, _key in (("suspended", "suspend"), ("locked", "lock")):

    def _handlers(flag: str, key: str) -> None:
        path = f"/_matrix/client/v1/admin/{key}/{{user_id}}"

        @routes.get(path)
        async def get_state(request: web.Request) -> web.Response:
            await require_admin(request)
            user = await admin_ctx(request).users.existing(_uid(request), active=True)
            return json_response({flag: user[flag]})

        @routes.put(path)
        async def put_state(request: web.Request) -> web.Response:
            requester = await require_admin(request)
            body = await read_json(request)
            if not isinstance(body.get(flag), bool):
                raise missing_param(f"{flag} must be a boolean")
            await _set_state(request, requester, flag, body[flag])
            return json_response({flag: body[flag]})

    _handlers(_flag, _key)


@routes.get(A + "/v1/users/{user_id}/override_ratelimit")
async def get_ratelimit(request: web.Request) -> web.Response:
    await require_admin(request)
    users = admin_ctx(request).users
    user_id = _uid(request)
    await users.existing(user_id)
    return json_response(await users.states.ratelimit(user_id))


@routes.post(A + "/v1/users/{user_id}/override_ratelimit")
async def set_ratelimit(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json(request, allow_empty=True)
    per_second, burst = body.get("messages_per_second", 0), body.get("burst_count", 0)
    for name, v in (("messages_per_second", per_second), ("burst_count", burst)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be a positive integer")
    users = admin_ctx(request).users
    user_id = _uid(request)
    await users.existing(user_id)
    await users.states.set_ratelimit(user_id, float(per_second), int(burst))
    return json_response({"messages_per_second": per_second, "burst_count": burst})


@routes.delete(A + "/v1/users/{user_id}/override_ratelimit")
async def delete_ratelimit(request: web.Request) -> web.Response:
    await require_admin(request)
    users = admin_ctx(request).users
    user_id = _uid(request)
    await users.existing(user_id)
    await users.states.delete_ratelimit(user_id)
    return json_response({})




@routes.get(A + "/v1/threepid/{medium}/users/{address}")
async def user_by_threepid(request: web.Request) -> web.Response:
    await require_admin(request)
    user_id = await admin_ctx(request).users.user_by_threepid(
        request.match_info["medium"], request.match_info["address"])
    return json_response({"user_id": user_id})


@routes.get(A + "/v1/auth_providers/{provider}/users/{external_id}")
async def user_by_external_id(request: web.Request) -> web.Response:
    await require_admin(request)
    user_id = await admin_ctx(request).users.user_by_external_id(
        request.match_info["provider"], request.match_info["external_id"])
    return json_response({"user_id": user_id})


# -- what the user has and did ------------------------------------------------------------

@routes.get(A + "/v1/users/{user_id}/accountdata")
async def account_data(request: web.Request) -> web.Response:
    await require_admin(request)
    data = await admin_ctx(request).user_data.account_data(request.match_info["user_id"])
    return json_response({"account_data": data})


@routes.get(A + "/v1/users/{user_id}/memberships")
async def memberships(request: web.Request) -> web.Response:
    await require_admin(request)
    found = await admin_ctx(request).user_data.memberships(request.match_info["user_id"])
    return json_response({"memberships": found})


def _from_ts(request: web.Request) -> int:
    if "from_ts" not in request.query:
        raise missing_param("from_ts is required")
    return query_int(request, "from_ts", 0)


@routes.get(A + "/v1/users/{user_id}/sent_invite_count")
async def sent_invite_count(request: web.Request) -> web.Response:
    await require_admin(request)
    n = await admin_ctx(request).user_data.sent_invite_count(request.match_info["user_id"],
                                                             _from_ts(request))
    return json_response({"invite_count": n})


@routes.get(A + "/v1/users/{user_id}/cumulative_joined_room_count")
async def cumulative_joined_room_count(request: web.Request) -> web.Response:
    await require_admin(request)
    n = await admin_ctx(request).user_data.cumulative_joined_room_count(
        request.match_info["user_id"], _from_ts(request))
    return json_response({"cumulative_joined_room_count": n})


@routes.post(A + "/v1/users/{user_id}/login")
async def login_as_user(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await read_json(request, allow_empty=True)
    valid_until = body.get("valid_until_ms")
    if valid_until is not None and (not isinstance(valid_until, int)
                                    or isinstance(valid_until, bool)):
        raise MatrixError(400, Codes.INVALID_PARAM, "'valid_until_ms' parameter must be an int")
    if valid_until is not None and not 0 <= valid_until <= MAX_SAFE_INT:
        raise MatrixError(400, Codes.INVALID_PARAM, "'valid_until_ms' is out of range")
    token = await admin_ctx(request).user_data.login_as(
        requester, request.match_info["user_id"], valid_until)
    return json_response({"access_token": token})


# Synapse's per-user switches for its experimental MSCs (msc3881, msc3575, msc4222). Parley
# has none of these switches (what it implements is on for everyone), so a user has no
# features to show, and setting one is refused as Synapse refuses a feature it does not know.

@routes.get(A + "/v1/experimental_features/{user_id}")
async def get_experimental_features(request: web.Request) -> web.Response:
    await require_admin(request)
    await admin_ctx(request).users.existing(_uid(request))
    return json_response({"features": {}})


@routes.put(A + "/v1/experimental_features/{user_id}")
async def put_experimental_features(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json(request)
    features = body.get("features")
    if not isinstance(features, dict) or not features:
        raise missing_param("You must provide features to set.")
    await admin_ctx(request).users.existing(_uid(request))
    name = sorted(features)[0]
    raise MatrixError(400, Codes.UNKNOWN,
                      f"{name!r} is not recognised as a valid experimental feature.")

