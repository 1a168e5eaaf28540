"""Discovery, /login, /logout, /whoami and refresh tokens (spec "Client Authentication")."""

from __future__ import annotations

import secrets

from tests.conftest import Server
from tests.helpers import Client


async def test_versions(c: Client) -> None:
    status, body = await c.request("GET", "/_matrix/client/versions")
    assert status == 200
    assert "v1.11" in body["versions"]
    assert "r0.6.1" in body["versions"]
    assert isinstance(body["unstable_features"], dict)


async def test_well_known(c: Client, server: Server) -> None:
    status, body = await c.request("GET", "/.well-known/matrix/client")
    assert status == 200
    assert body == {"m.homeserver": {"base_url": server.config.base_url}}


async def test_capabilities(c: Client, server: Server) -> None:
    status, body = await c.request("GET", "/capabilities")
    assert status == 401
    assert body["errcode"] == "M_MISSING_TOKEN"
    u = await c.register()
    status, body = await c.request("GET", "/capabilities", token=u.access_token)
    assert status == 200
    caps = body["capabilities"]
    assert caps["m.change_password"] == {"enabled": True}
    rv = caps["m.room_versions"]
    assert rv["default"] == server.config.default_room_version
    # rooms/_index.md lists versions 1 to 12, all stable; the default stays 12
    assert rv["available"] == {str(v): "stable" for v in range(1, 13)}
    assert rv["default"] == "12"


async def test_login_flows(c: Client) -> None:
    status, body = await c.request("GET", "/login")
    assert status == 200
    assert {"type": "m.login.password"} in body["flows"]


async def test_login_identifier_and_bare_user(c: Client, server: Server) -> None:
    local = "login" + secrets.token_hex(4)
    u = await c.register(local, password="correct-horse")
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": local},
        "password": "correct-horse", "initial_device_display_name": "laptop"})
    assert status == 200, body
    assert body["user_id"] == u.user_id
    assert body["home_server"] == server.config.server_name
    assert body["device_id"] != u.device_id
    assert "refresh_token" not in body
    # The full user id works too, as does the deprecated bare `user` field.
    status, body2 = await c.request("POST", "/login", {
        "type": "m.login.password", "user": u.user_id, "password": "correct-horse",
        "device_id": "MYDEVICE"})
    assert status == 200, body2
    assert body2["user_id"] == u.user_id
    assert body2["device_id"] == "MYDEVICE"
    status, who = await c.request("GET", "/account/whoami", token=body2["access_token"])
    assert status == 200
    assert who == {"user_id": u.user_id, "device_id": "MYDEVICE", "is_guest": False}
    status, dev = await c.request("GET", f"/devices/{body['device_id']}",
                                  token=body2["access_token"])
    assert status == 200
    assert dev["display_name"] == "laptop"


async def test_login_wrong_password(c: Client) -> None:
    local = "wrongpw" + secrets.token_hex(4)
    await c.register(local, password="right-one")
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": local},
        "password": "wrong-one"})
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "nobody_" + local},
        "password": "wrong-one"})
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"


async def test_login_unknown_type(c: Client) -> None:
    status, body = await c.request("POST", "/login", {"type": "m.login.bogus"})
    assert status == 400
    assert body["errcode"] == "M_UNKNOWN"


async def test_whoami_requires_token(c: Client) -> None:
    status, body = await c.request("GET", "/account/whoami")
    assert status == 401
    assert body["errcode"] == "M_MISSING_TOKEN"
    status, body = await c.request("GET", "/account/whoami", token="not-a-token")
    assert status == 401
    assert body["errcode"] == "M_UNKNOWN_TOKEN"


async def test_logout_kills_only_that_token(c: Client) -> None:
    local = "logout" + secrets.token_hex(4)
    u = await c.register(local)
    status, other = await c.request("POST", "/login", {
        "type": "m.login.password", "user": local, "password": "pw-secret-1"})
    assert status == 200
    status, body = await c.request("POST", "/logout", {}, token=u.access_token)
    assert status == 200
    assert body == {}
    status, body = await c.request("GET", "/account/whoami", token=u.access_token)
    assert status == 401
    assert body["errcode"] == "M_UNKNOWN_TOKEN"
    status, body = await c.request("GET", "/account/whoami", token=other["access_token"])
    assert status == 200
    assert body["user_id"] == u.user_id
    # The logged-out device is gone.
    status, devs = await c.request("GET", "/devices", token=other["access_token"])
    assert [d["device_id"] for d in devs["devices"]] == [other["device_id"]]


async def test_logout_all(c: Client) -> None:
    local = "logoutall" + secrets.token_hex(4)
    u = await c.register(local)
    status, other = await c.request("POST", "/login", {
        "type": "m.login.password", "user": local, "password": "pw-secret-1"})
    assert status == 200
    status, body = await c.request("POST", "/logout/all", {}, token=other["access_token"])
    assert status == 200
    assert body == {}
    for tok in (u.access_token, other["access_token"]):
        status, body = await c.request("GET", "/account/whoami", token=tok)
        assert status == 401
        assert body["errcode"] == "M_UNKNOWN_TOKEN"
    # Logging in again still works.
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "user": local, "password": "pw-secret-1"})
    assert status == 200


async def test_refresh_tokens(c: Client) -> None:
    local = "refresh" + secrets.token_hex(4)
    await c.register(local)
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "user": local, "password": "pw-secret-1",
        "refresh_token": True})
    assert status == 200, body
    assert isinstance(body["refresh_token"], str)
    assert isinstance(body["expires_in_ms"], int) and body["expires_in_ms"] > 0
    old_access, old_refresh = body["access_token"], body["refresh_token"]
    status, new = await c.request("POST", "/refresh", {"refresh_token": old_refresh})
    assert status == 200, new
    assert set(new) == {"access_token", "refresh_token", "expires_in_ms"}
    assert new["access_token"] != old_access
    assert new["refresh_token"] != old_refresh
    status, who = await c.request("GET", "/account/whoami", token=new["access_token"])
    assert status == 200
    assert who["device_id"] == body["device_id"]
    # The old access token and the old refresh token are spent.
    status, err = await c.request("GET", "/account/whoami", token=old_access)
    assert status == 401
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
    status, err = await c.request("POST", "/refresh", {"refresh_token": old_refresh})
    assert status == 401
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
    status, err = await c.request("POST", "/refresh", {"refresh_token": "bogus"})
    assert status == 401
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
    # Logging out kills the refresh token too.
    status, _ = await c.request("POST", "/logout", {}, token=new["access_token"])
    assert status == 200
    status, err = await c.request("POST", "/refresh", {"refresh_token": new["refresh_token"]})
    assert status == 401
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
