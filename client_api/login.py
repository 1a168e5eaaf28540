"""Discovery and sessions: /versions, well-known, /capabilities, /login, /logout, /refresh."""

from __future__ import annotations

from aiohttp import web

from client_api.context import appservice_of, auth, ctx
from homeserver.errors import Codes, MatrixError, forbidden
from homeserver.events.room_versions import ROOM_VERSIONS, STABLE_ROOM_VERSIONS
from homeserver.http import json_response, read_json
from homeserver.users.sessions import LoginResult

routes = web.RouteTableDef()

SPEC_VERSIONS = ["r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8",
                 "v1.9", "v1.10", "v1.11"]


@routes.get("/_matrix/client/versions")
async def versions(request: web.Request) -> web.Response:
    # Only what works end to end: MSC3814 dehydrated devices (e2ee/dehydrated.py),
    # MSC4186 simplified sliding sync (homeserver/sync/sliding.py), MSC3266 room summaries
    # (homeserver/rooms/spaces.py), MSC2666 mutual rooms (homeserver/rooms/mutual_rooms.py)
    # and MSC4133 profile fields (homeserver/users/profile_fields.py).
    return json_response({"versions": SPEC_VERSIONS,
                          "unstable_features": {"org.matrix.msc3814": True,
                                                "org.matrix.simplified_msc3575": True,
                                                "im.nheko.summary": True,
                                                "uk.half-shot.msc2666.query_mutual_rooms": True,
                                                "uk.tcpip.msc4133": True}})


@routes.get("/.well-known/matrix/client")
async def well_known(request: web.Request) -> web.Response:
    return json_response({"m.homeserver": {"base_url": ctx(request).config.base_url}})


@routes.get("/_matrix/client/{v:(v3|r0)}/capabilities")
async def capabilities(request: web.Request) -> web.Response:
    await auth(request)
    c = ctx(request).config
    threepids = ctx(request).threepids
    return json_response({"capabilities": {
        "m.change_password": {"enabled": True},
        "m.room_versions": {"default": c.default_room_version,
                            "available": {v: "stable" if v in STABLE_ROOM_VERSIONS
                                          else "unstable" for v in ROOM_VERSIONS}},
        "m.set_displayname": {"enabled": True},
        "m.set_avatar_url": {"enabled": True},
        # Any field may be changed (spec v1.16, client_api/profile.py).
        "m.profile_fields": {"enabled": True},
        "uk.tcpip.msc4133.profile_fields": {"enabled": True},
        "m.3pid_changes": {"enabled": threepids is not None and threepids.email_enabled},
        # POST /login/get_token (client_api/login_token.py).
        "m.get_login_token": {"enabled": ctx(request).sso is not None},
    }})


@routes.get("/_matrix/client/{v:(v3|r0)}/login")
async def login_flows(request: web.Request) -> web.Response:
    flows: list[dict[str, object]] = [{"type": "m.login.password"}]
    if ctx(request).appservice_auth is not None:
        flows.append({"type": "m.login.application_service"})
    sso = ctx(request).sso
    if sso is not None:
        # A login token comes from POST /login/get_token (spec v1.7) and, with CAS configured,
        # from single sign-on; only what is configured is offered (spec "Single Sign-On").
        # m.login.cas too: the CAS-only name older clients (and SyTest) look for.
        flows.append({"type": "m.login.token", "get_login_token": True})
        if sso.enabled:
            flows += [{"type": "m.login.sso"}, {"type": "m.login.cas"}]
    return json_response({"flows": flows})


def login_body(r: LoginResult, server_name: str) -> dict[str, object]:
    body: dict[str, object] = {"user_id": r.user_id, "access_token": r.access_token,
                               "device_id": r.device_id, "home_server": server_name}
    if r.refresh_token is not None:
        body["refresh_token"] = r.refresh_token
        body["expires_in_ms"] = r.expires_in_ms
    return body


@routes.post("/_matrix/client/{v:(v3|r0)}/login")
async def login(request: web.Request) -> web.Response:
    c = ctx(request)
    body = await read_json(request, "login")
    if body["type"] == "m.login.token" and c.sso is not None:
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise MatrixError(400, Codes.MISSING_PARAM, "token is required")
        c.limiter.check("login", request.remote or "", c.config.rate_limits.login)
        user_id = await c.sso.redeem(token)
    elif body["type"] == "m.login.password":
        c.limiter.check("login", request.remote or "", c.config.rate_limits.login)
        user_id = await _password_user(request, body)
        if not await c.accounts.check_password(user_id, body["password"]):
            raise forbidden("Invalid username or password")
    elif body["type"] == "m.login.application_service":
        user_id = await _password_user(request, body)
        await _check_appservice_login(request, user_id)
    else:
        raise MatrixError(400, Codes.UNKNOWN, f"Unknown login type {body['type']}")
    await c.accounts.check_not_locked(user_id)
    result = await c.sessions.create_session(
        user_id, body.get("device_id"), body.get("initial_device_display_name"),
        request.remote, refresh=bool(body.get("refresh_token")))
    return json_response(login_body(result, c.config.server_name))


async def _check_appservice_login(request: web.Request, user_id: str) -> None:
    """m.login.application_service (spec "Server admin style permissions"): the as_token of
    an AS whose users namespace covers the (existing) user."""
    c = ctx(request)
    service = appservice_of(request)
    if not service.is_interested_in_user(user_id):
        raise MatrixError(400, Codes.EXCLUSIVE,
                          "User is not in the application service's namespace")
    user = await c.accounts.get_user(user_id)
    if user is None or user["deactivated"]:
        raise forbidden("Unknown user")


async def _password_user(request: web.Request, body: dict[str, object]) -> str:
    """The account a password login names: a user (m.id.user, or the old top-level `user`)
    or a 3PID of it (m.id.thirdparty, or the old top-level `medium` and `address`)."""
    c = ctx(request)
    ident = body.get("identifier")
    if not isinstance(ident, dict):
        if body.get("medium") is not None or body.get("address") is not None:
            ident = {"type": "m.id.thirdparty", "medium": body.get("medium"),
                     "address": body.get("address")}
        else:
            ident = {"type": "m.id.user", "user": body.get("user")}
    if ident.get("type") == "m.id.thirdparty":
        user_id = None
        if c.threepids is not None:
            user_id = await c.threepids.user_for(ident.get("medium"), ident.get("address"))
        if user_id is None:
            raise forbidden("Invalid username or password")
        return user_id
    if ident.get("type") != "m.id.user" or not isinstance(ident.get("user"), str):
        raise MatrixError(400, Codes.UNKNOWN,
                          "Only m.id.user and m.id.thirdparty identifiers are supported")
    user = str(ident["user"])
    return user if user.startswith("@") else c.accounts.user_id_for(user.lower())


@routes.post("/_matrix/client/{v:(v3|r0)}/refresh")
async def refresh(request: web.Request) -> web.Response:
    body = await read_json(request)
    token = body.get("refresh_token")
    if not isinstance(token, str):
        raise MatrixError(400, Codes.BAD_JSON, "refresh_token is required")
    r = await ctx(request).sessions.refresh(token)
    return json_response({"access_token": r.access_token, "refresh_token": r.refresh_token,
                          "expires_in_ms": r.expires_in_ms})


@routes.post("/_matrix/client/{v:(v3|r0)}/logout")
async def logout(request: web.Request) -> web.Response:
    requester = await auth(request, allow_locked=True)
    await ctx(request).sessions.logout(requester)
    return json_response({})


@routes.post("/_matrix/client/{v:(v3|r0)}/logout/all")
async def logout_all(request: web.Request) -> web.Response:
    requester = await auth(request, allow_locked=True)
    await ctx(request).sessions.logout_all(requester.user_id)
    return json_response({})


@routes.get("/_matrix/client/{v:(v3|r0)}/account/whoami")
async def whoami(request: web.Request) -> web.Response:
    requester = await auth(request)
    body: dict[str, object] = {"user_id": requester.user_id, "is_guest": requester.is_guest}
    if requester.device_id:  # an application service acting for no device has none
        body["device_id"] = requester.device_id
    return json_response(body)
