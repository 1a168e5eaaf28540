"""Registration (m.login.dummy when open, m.login.registration_token when token-gated; an
application service's m.login.application_service, with no UIA, whatever the mode), guest
registration (`kind=guest`, spec "Guest access") and the upgrade of a guest to a full account
(`guest_access_token`), and the account endpoints that need user-interactive auth (password
change, deactivation), which an application service acting for its users skips (spec "Server
admin style permissions")."""

from __future__ import annotations

from aiohttp import web

from client_api.context import access_token, appservice_of, auth, ctx
from client_api.login import login_body
from client_api.uia import SSO_STAGE, UIA, operation_of
from homeserver.errors import Codes, MatrixError, forbidden
from homeserver.http import json_response, read_json
from homeserver.types import JsonDict, Requester

routes = web.RouteTableDef()


def _uia(request: web.Request) -> UIA:
    uia = ctx(request).uia
    assert isinstance(uia, UIA)
    return uia


@routes.get("/_matrix/client/{v:(v3|r0)}/register/available")
async def available(request: web.Request) -> web.Response:
    username = request.query.get("username")
    if not username:
        raise MatrixError(400, Codes.MISSING_PARAM, "username is required")
    c = ctx(request)
    if not await c.accounts.is_available(username):
        raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken")
    c.accounts.check_not_reserved(username)
    _check_exclusive(request, username.lower(), None)
    return json_response({"available": True})


def _check_exclusive(request: web.Request, localpart: str, app_service: str | None) -> None:
    """400 M_EXCLUSIVE for a user id an application service reserved (or, for an AS, one
    outside its namespaces)."""
    c = ctx(request)
    if c.appservice_auth is not None:
        c.appservice_auth.registry.check_user_allowed(c.accounts.user_id_for(localpart),
                                                      app_service)


async def _register_appservice(request: web.Request, body: JsonDict) -> web.Response:
    """type m.login.application_service: the AS named by its as_token creates a user in its
    namespace, with no password and no UIA (registration may even be closed)."""
    c = ctx(request)
    service = appservice_of(request)
    username = body.get("username")
    if not isinstance(username, str) or not username:
        raise MatrixError(400, Codes.MISSING_PARAM, "username is required")
    localpart = c.accounts.validate_localpart(username.lower())
    _check_exclusive(request, localpart, service.id)
    user_id = await c.accounts.register(localpart, None)
    return await _registered(request, body, user_id)


@routes.get("/_matrix/client/v1/register/m.login.registration_token/validity")
async def token_validity(request: web.Request) -> web.Response:
    token = request.query.get("token")
    if token is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "token is required")
    return json_response({"valid": await ctx(request).accounts.registration_token_valid(token)})


@routes.post("/_matrix/client/{v:(v3|r0)}/register")
async def register(request: web.Request) -> web.Response:
    c = ctx(request)
    body = await read_json(request, "register", allow_empty=True)
    if body.get("type") == "m.login.application_service":
        return await _register_appservice(request, body)
    kind = request.query.get("kind", "user")
    if kind == "guest":
        return await _register_guest(request, body)
    if kind != "user":
        raise MatrixError(400, Codes.INVALID_PARAM, "kind must be user or guest")
    mode = c.config.registration
    if mode == "closed":
        raise forbidden("Registration is disabled")
    c.limiter.check("register", request.remote or "", c.config.rate_limits.registration)
    uia = _uia(request)
    operation = operation_of(request)
    session = await uia.session_of(body)
    if session is not None and session.operation == operation and session.user_id is None:
        # A client may finish the flow sending only `auth`: the parameters of the request that
        # started the session hold (spec: the session is for "the same API call").
        if session.params is not None and not any(k != "auth" for k in body):
            body = {**session.params, "auth": body.get("auth")}
        if session.result is not None:
            # The same session finishing twice gives the same account (a client retrying
            # after a lost response), logged in again rather than registered again.
            return await _registered(request, body, session.result)
    username = body.get("username")
    guest = await _upgrading_guest(request, body)
    if username is not None and guest is None:
        c.accounts.validate_localpart(username.lower())
        if not await c.accounts.is_available(username.lower()):
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken")
        c.accounts.check_not_reserved(username.lower())
        _check_exclusive(request, username.lower(), None)
    if body.get("password") is not None:
        c.accounts.check_password_strength(body["password"])
    flows, params, optional = registration_flows(request)
    token_used: list[str] = []
    emails: list[tuple[str, str, int]] = []

    async def stage(stage: str, auth_dict: JsonDict) -> bool:
        if stage == "m.login.dummy":
            return True
        if stage == "m.login.registration_token":
            token = auth_dict.get("token")
            if isinstance(token, str) and (token in c.config.registration_tokens
                                           or await c.accounts.registration_token_valid(token)):
                token_used.append(token)
                return True
        if stage == "m.login.recaptcha" and c.recaptcha is not None:
            return await c.recaptcha.verify(auth_dict.get("response"), request.remote)
        if stage == "m.login.email.identity" and c.threepids is not None:
            creds = auth_dict.get("threepid_creds", auth_dict.get("threepidCreds"))
            if isinstance(creds, dict):
                found = await c.threepids.validated_session(creds.get("sid"),
                                                            creds.get("client_secret"))
                if found is not None and await c.threepids.user_for(*found[:2]) is None:
                    emails.append(found)
                    return True
        return False

    session = await uia.check(body, flows, stage, params, operation=operation, user_id=None,
                              remember={k: v for k, v in body.items() if k != "auth"},
                              optional=optional)
    db_token = token_used[0] if token_used and token_used[0] not in \
        c.config.registration_tokens else None
    if guest is not None:
        await c.accounts.upgrade_guest(guest, body.get("password"))
        user_id = guest
    else:
        user_id = await c.accounts.register(username, body.get("password"),
                                         registration_token=db_token)
    if c.threepids is not None:
        for medium, address, validated_at in emails:
            await c.threepids.add(user_id, medium, address, validated_at)
    if session is not None:
        await uia.set_result(session, user_id)
    return await _registered(request, body, user_id)


async def _register_guest(request: web.Request, body: JsonDict) -> web.Response:
    """POST /register?kind=guest: a guest account, logged in on a new device. No
    user-interactive auth (there is nobody to ask yet); refused when the server has guest
    access off, whatever its registration mode."""
    c = ctx(request)
    if not c.config.allow_guest_access:
        raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access is disabled")
    c.limiter.check("register", request.remote or "", c.config.rate_limits.registration)
    user_id = await c.accounts.register_guest()
    # The device id is the server's choice: a guest has no earlier device to name.
    result = await c.sessions.create_session(
        user_id, None, body.get("initial_device_display_name"), request.remote,
        refresh=bool(body.get("refresh_token")))
    return json_response(login_body(result, c.config.server_name))


async def _upgrading_guest(request: web.Request, body: JsonDict) -> str | None:
    """The guest a registration upgrades (spec: `guest_access_token`, with `username` the
    guest's own localpart), or None for a new account.

    Raises:
        MatrixError: 400 M_MISSING_PARAM without `username`; 400 M_USER_IN_USE when the
            token is not a guest's or the guest is another user (one guest cannot take over
            another's id); 401 for an unknown token.
    """
    token = body.get("guest_access_token")
    if token is None:
        return None
    username = body.get("username")
    if username is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "username is required to upgrade a guest")
    c = ctx(request)
    guest = await c.sessions.authenticate(token, ip=request.remote)
    if not guest.is_guest or guest.user_id != c.accounts.user_id_for(username.lower()):
        raise MatrixError(400, Codes.USER_IN_USE,
                          "Cannot register taken user ID without valid guest credentials for"
                          " that user")
    return guest.user_id


def registration_flows(request: web.Request) -> tuple[list[list[str]], JsonDict, frozenset[str]]:
    """The registration flows this server offers, their params, and the stages it verifies
    when offered though no flow needs them: only what is configured (e-mail registration
    with e-mail, the captcha with reCAPTCHA keys)."""
    c = ctx(request)
    if c.config.registration == "open":
        flows = [["m.login.dummy"]]
        if c.threepids is not None and c.threepids.email_enabled:
            flows.append(["m.login.email.identity"])
    else:
        flows = [["m.login.registration_token"]]
    params: JsonDict = {}
    optional: frozenset[str] = frozenset()
    if c.recaptcha is not None and c.recaptcha.enabled:
        params["m.login.recaptcha"] = {"public_key": c.recaptcha.config.public_key}
        if c.recaptcha.config.required:
            flows = [["m.login.recaptcha", *f] for f in flows]
        else:
            optional = frozenset({"m.login.recaptcha"})
    return flows, params, optional


async def _registered(request: web.Request, body: JsonDict, user_id: str) -> web.Response:
    """The answer to a registration: the new account, logged in unless `inhibit_login`."""
    c = ctx(request)
    if body.get("inhibit_login"):
        return json_response({"user_id": user_id, "home_server": c.config.server_name})
    result = await c.sessions.create_session(
        user_id, body.get("device_id"), body.get("initial_device_display_name"),
        request.remote, refresh=bool(body.get("refresh_token")))
    return json_response(login_body(result, c.config.server_name))


async def password_uia(request: web.Request, requester: Requester, body: JsonDict) -> None:
    c = ctx(request)
    if requester.app_service is not None:
        return  # an AS manages its users without their passwords (they have none)

    async def stage(stage: str, auth_dict: JsonDict) -> bool:
        if stage != "m.login.password":
            return False
        ident = auth_dict.get("identifier") or {"user": auth_dict.get("user")}
        user = ident.get("user") if isinstance(ident, dict) else None
        if isinstance(user, str):
            uid = user if user.startswith("@") else c.accounts.user_id_for(user)
            if uid != requester.user_id:
                # Someone else's password does not authorise this user's request (a stolen
                # access token plus the thief's own account): refused outright, as Synapse does.
                raise forbidden("The authenticating user does not match the requester")
        password = auth_dict.get("password")
        return isinstance(password, str) and await c.accounts.check_password(
            requester.user_id, password)

    flows = [["m.login.password"]]
    if c.sso is not None and c.sso.enabled:
        flows.append([SSO_STAGE])  # completed out of band, through the SSO fallback page
    await _uia(request).check(body, flows, stage, operation=operation_of(request),
                              user_id=requester.user_id)


@routes.post("/_matrix/client/{v:(v3|r0)}/account/password")
async def change_password(request: web.Request) -> web.Response:
    c = ctx(request)
    if (access_token(request) is None and c.threepids is not None
            and c.threepids.email_enabled):
        return await _reset_password(request)
    requester = await auth(request)
    body = await read_json(request, "account_password")
    await password_uia(request, requester, body)
    await ctx(request).accounts.change_password(requester, body["new_password"],
                                             bool(body.get("logout_devices", True)))
    return json_response({})


async def _reset_password(request: web.Request) -> web.Response:
    """A forgotten password (no access token): the person proves they hold one of the
    account's e-mail addresses (m.login.email.identity, after POST
    /account/password/email/requestToken) and the account gets the new password; its
    sessions end unless logout_devices is false."""
    c = ctx(request)
    assert c.threepids is not None
    body = await read_json(request, "account_password")
    owners: list[str] = []

    async def stage(stage: str, auth_dict: JsonDict) -> bool:
        creds = auth_dict.get("threepid_creds", auth_dict.get("threepidCreds"))
        if stage != "m.login.email.identity" or not isinstance(creds, dict):
            return False
        assert c.threepids is not None
        found = await c.threepids.validated_session(creds.get("sid"), creds.get("client_secret"))
        owner = await c.threepids.user_for(*found[:2]) if found is not None else None
        if owner is not None:
            owners.append(owner)
        return owner is not None

    await _uia(request).check(body, [["m.login.email.identity"]], stage,
                              operation=operation_of(request), user_id=None)
    if not owners:  # the stage was completed in an earlier request of the session
        raise forbidden("Send the e-mail credentials with the new password")
    await c.accounts.set_password(owners[0], body["new_password"],
                                  bool(body.get("logout_devices", True)))
    return json_response({})


@routes.post("/_matrix/client/{v:(v3|r0)}/account/deactivate")
async def deactivate(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request, allow_empty=True)
    erase = body.get("erase", False)
    if not isinstance(erase, bool):
        raise MatrixError(400, Codes.BAD_JSON, "erase must be a boolean")
    await password_uia(request, requester, body)
    c = ctx(request)
    unbind_result = "no-support"
    if c.threepids is not None:
        # Spec: the homeserver "should" unbind the account's 3PIDs from the identity servers
        # it bound them to (or the one named).
        unbind_result = await c.threepids.unbind_all(requester.user_id)
    # Leave every room first so other members see the user go.
    await c.rooms.leave_all(requester)
    await c.accounts.deactivate(requester.user_id)
    if erase and c.erase_user is not None:
        # Spec: users "which join the room after the erasure request are served redacted
        # copies of the events sent by this account"; those who saw them still do.
        await c.erase_user(requester.user_id)
    return json_response({"id_server_unbind_result": unbind_result})
