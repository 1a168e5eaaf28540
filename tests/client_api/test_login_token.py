"""POST /login/get_token (spec v1.7): a signed-in device gets a one-use login token, after the
password; another device signs in with it (m.login.token) once, and not after it expires."""

from __future__ import annotations

from typing import Any

from tests.helpers import Client

PATH = "/_matrix/client/v1/login/get_token"


async def _get_token(c: Client, token: str, auth: dict[str, Any] | None) -> tuple[int, Any]:
    return await c.request("POST", PATH, {} if auth is None else {"auth": auth}, token)


async def test_login_token_after_the_password_logs_in_once(c: Client) -> None:
    user = await c.register()
    status, caps = await c.request("GET", "/capabilities", token=user.access_token)
    assert caps["capabilities"]["m.get_login_token"] == {"enabled": True}
    status, flows = await c.request("GET", "/login")
    assert {"type": "m.login.token", "get_login_token": True} in flows["flows"]
    # user-interactive auth first: 401 with the password flow, and a wrong password refused
    status, body = await _get_token(c, user.access_token, None)
    assert status == 401 and ["m.login.password"] in [f["stages"] for f in body["flows"]]
    session = body["session"]
    status, body = await _get_token(c, user.access_token, {
        "type": "m.login.password", "session": session, "password": "wrong",
        "identifier": {"type": "m.id.user", "user": user.user_id}})
    assert status == 401 and body.get("errcode") == "M_FORBIDDEN", body
    status, body = await _get_token(c, user.access_token, {
        "type": "m.login.password", "session": session, "password": "pw-secret-1",
        "identifier": {"type": "m.id.user", "user": user.user_id}})
    assert status == 200 and body["expires_in_ms"] > 0, body
    login_token = body["login_token"]
    status, body = await c.request("POST", "/login", {"type": "m.login.token",
                                                      "token": login_token})
    assert status == 200 and body["user_id"] == user.user_id, body
    assert body["device_id"] and body["access_token"] != user.access_token
    status, whoami = await c.request("GET", "/account/whoami", token=body["access_token"])
    assert status == 200 and whoami["user_id"] == user.user_id
    # one use only
    status, body = await c.request("POST", "/login", {"type": "m.login.token",
                                                      "token": login_token})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


async def test_get_token_needs_an_access_token(c: Client) -> None:
    status, body = await c.request("POST", PATH, {})
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
