"""/register (UIA, availability, tokens, rate limits, password policy) and the UIA-protected
account endpoints /account/password and /account/deactivate."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from homeserver.config import RateLimit, RateLimits
from tests.conftest import Server, start_server
from tests.conftest import test_config as make_config
from tests.helpers import Client


def _local() -> str:
    return "reg" + secrets.token_hex(5)


async def _login(c: Client, local: str, password: str) -> tuple[int, Any]:
    return await c.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": local},
        "password": password})


async def test_register_uia_dummy_flow(c: Client, server: Server) -> None:
    local = _local()
    status, body = await c.request("POST", "/register", {"username": local,
                                                         "password": "pw-secret-1"})
    assert status == 401
    assert body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert isinstance(body["session"], str) and body["session"]
    assert body["params"] == {}
    status, body = await c.request("POST", "/register", {
        "username": local, "password": "pw-secret-1",
        "auth": {"type": "m.login.dummy", "session": body["session"]}})
    assert status == 200, body
    assert body["user_id"] == f"@{local}:{server.config.server_name}"
    assert body["home_server"] == server.config.server_name
    assert isinstance(body["device_id"], str)
    status, who = await c.request("GET", "/account/whoami", token=body["access_token"])
    assert status == 200
    assert who["user_id"] == body["user_id"]
    assert who["device_id"] == body["device_id"]
    status, _ = await _login(c, local, "pw-secret-1")
    assert status == 200


async def test_register_unknown_session(c: Client) -> None:
    status, body = await c.request("POST", "/register", {
        "username": _local(), "password": "pw-secret-1",
        "auth": {"type": "m.login.dummy", "session": "no-such-session"}})
    assert status == 400
    assert body["errcode"] == "M_UNKNOWN"


async def test_register_inhibit_login_and_refresh(c: Client, server: Server) -> None:
    local = _local()
    status, body = await c.request("POST", "/register", {
        "username": local, "password": "pw-secret-1", "inhibit_login": True,
        "auth": {"type": "m.login.dummy"}})
    assert status == 200, body
    assert body == {"user_id": f"@{local}:{server.config.server_name}",
                    "home_server": server.config.server_name}
    status, body = await c.request("POST", "/register", {
        "username": _local(), "password": "pw-secret-1", "refresh_token": True,
        "auth": {"type": "m.login.dummy"}})
    assert status == 200, body
    assert isinstance(body["refresh_token"], str)
    assert isinstance(body["expires_in_ms"], int)


async def test_register_available_and_in_use(c: Client) -> None:
    local = _local()
    status, body = await c.request("GET", "/register/available", params={"username": local})
    assert status == 200
    assert body == {"available": True}
    await c.register(local)
    status, body = await c.request("GET", "/register/available", params={"username": local})
    assert status == 400
    assert body["errcode"] == "M_USER_IN_USE"
    status, body = await c.request("POST", "/register", {
        "username": local, "password": "pw-secret-1", "auth": {"type": "m.login.dummy"}})
    assert status == 400
    assert body["errcode"] == "M_USER_IN_USE"
    # Also refused up front, before any UIA stage.
    status, body = await c.request("POST", "/register", {"username": local,
                                                         "password": "pw-secret-1"})
    assert status == 400
    assert body["errcode"] == "M_USER_IN_USE"


async def test_register_invalid_username(c: Client) -> None:
    # "abc\n" too: a regex anchored with "$" matches before a final newline.
    for bad in ("has space", "émoji", "a:b", "#x", "abc\n", "ab\ncd", "\n"):
        status, body = await c.request("GET", "/register/available", params={"username": bad})
        assert status == 400, bad
        assert body["errcode"] == "M_INVALID_USERNAME", bad
        status, body = await c.request("POST", "/register", {
            "username": bad, "password": "pw-secret-1", "auth": {"type": "m.login.dummy"}})
        assert status == 400, bad
        assert body["errcode"] == "M_INVALID_USERNAME", bad


async def test_register_guest_refused_when_guest_access_is_off(fresh_database: str,
                                                              tmp_path: Path) -> None:
    cfg = make_config(tmp_path, allow_guest_access=False)
    async for srv in start_server(cfg, fresh_database):
        async with aiohttp.ClientSession() as s:
            c = Client(srv.url, s)
            status, body = await c.request("POST", "/register", {}, params={"kind": "guest"})
            assert status == 403
            assert body["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
            # ordinary registration is unaffected
            await c.register()


async def test_closed_registration(fresh_database: str, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, registration="closed")
    async for srv in start_server(cfg, fresh_database):
        async with aiohttp.ClientSession() as s:
            c = Client(srv.url, s)
            status, body = await c.request("POST", "/register", {
                "username": "someone", "password": "pw-secret-1",
                "auth": {"type": "m.login.dummy"}})
            assert status == 403
            assert body["errcode"] == "M_FORBIDDEN"


async def test_token_registration_and_weak_password(fresh_database: str, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, registration="token", registration_tokens=("tok",),
                      password_min_length=10)
    async for srv in start_server(cfg, fresh_database):
        async with aiohttp.ClientSession() as s:
            c = Client(srv.url, s)
            status, body = await c.request("POST", "/register", {
                "username": "alice", "password": "long-enough-pw"})
            assert status == 401
            assert body["flows"] == [{"stages": ["m.login.registration_token"]}]
            session = body["session"]
            # m.login.dummy is not a stage of this server's flows.
            status, body = await c.request("POST", "/register", {
                "username": "alice", "password": "long-enough-pw",
                "auth": {"type": "m.login.dummy", "session": session}})
            assert status == 401
            assert body["errcode"] == "M_UNRECOGNIZED"
            assert body["completed"] == []
            # A wrong token fails the stage.
            status, body = await c.request("POST", "/register", {
                "username": "alice", "password": "long-enough-pw",
                "auth": {"type": "m.login.registration_token", "token": "wrong",
                         "session": session}})
            assert status == 401
            assert body["errcode"] == "M_FORBIDDEN"
            assert body["session"] == session
            status, body = await c.request(
                "GET", "/_matrix/client/v1/register/m.login.registration_token/validity",
                params={"token": "tok"})
            assert status == 200
            assert body == {"valid": True}
            status, body = await c.request(
                "GET", "/_matrix/client/v1/register/m.login.registration_token/validity",
                params={"token": "nope"})
            assert status == 200
            assert body == {"valid": False}
            status, body = await c.request("POST", "/register", {
                "username": "alice", "password": "long-enough-pw",
                "auth": {"type": "m.login.registration_token", "token": "tok",
                         "session": session}})
            assert status == 200, body
            assert body["user_id"] == "@alice:parley.test"
            # Password policy: too short -> M_WEAK_PASSWORD, before UIA and at /account/password.
            status, body = await c.request("POST", "/register", {
                "username": "bob", "password": "short"})
            assert status == 400
            assert body["errcode"] == "M_WEAK_PASSWORD"
            status, body = await c.request("POST", "/account/password", {
                "new_password": "short",
                "auth": {"type": "m.login.password", "password": "long-enough-pw",
                         "identifier": {"type": "m.id.user", "user": "alice"}}},
                token=None)
            assert status == 401  # no access token
            status, login = await _login(c, "alice", "long-enough-pw")
            assert status == 200
            status, body = await c.request("POST", "/account/password", {
                "new_password": "short",
                "auth": {"type": "m.login.password", "password": "long-enough-pw",
                         "identifier": {"type": "m.id.user", "user": "alice"}}},
                token=login["access_token"])
            assert status == 400
            assert body["errcode"] == "M_WEAK_PASSWORD"


async def test_registration_rate_limited(fresh_database: str, tmp_path: Path) -> None:
    limits = replace(RateLimits(enabled=True), registration=RateLimit(0.1, 3))
    cfg = make_config(tmp_path, rate_limits=limits)
    async for srv in start_server(cfg, fresh_database):
        async with aiohttp.ClientSession() as s:
            c = Client(srv.url, s)
            statuses = []
            last: Any = None
            for _ in range(5):
                status, last = await c.request("POST", "/register", {"username": _local()})
                statuses.append(status)
            assert statuses == [401, 401, 401, 429, 429]
            assert last["errcode"] == "M_LIMIT_EXCEEDED"
            assert isinstance(last["retry_after_ms"], int)
            assert 0 < last["retry_after_ms"] <= 10_000


async def test_change_password(c: Client) -> None:
    local = _local()
    u = await c.register(local, password="old-password")
    status, other = await _login(c, local, "old-password")
    assert status == 200
    status, body = await c.request("POST", "/account/password", {"new_password": "new-password"},
                                   token=u.access_token)
    assert status == 401
    assert body["flows"] == [{"stages": ["m.login.password"]}]
    session = body["session"]
    status, body = await c.request("POST", "/account/password", {
        "new_password": "new-password",
        "auth": {"type": "m.login.password", "session": session, "password": "wrong",
                 "identifier": {"type": "m.id.user", "user": u.user_id}}},
        token=u.access_token)
    assert status == 401
    assert body["errcode"] == "M_FORBIDDEN"
    assert body["completed"] == []
    status, body = await c.request("POST", "/account/password", {
        "new_password": "new-password",
        "auth": {"type": "m.login.password", "session": session, "password": "old-password",
                 "identifier": {"type": "m.id.user", "user": u.user_id}}},
        token=u.access_token)
    assert status == 200, body
    assert body == {}
    status, body = await _login(c, local, "old-password")
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    status, _ = await _login(c, local, "new-password")
    assert status == 200
    # Other devices were logged out (logout_devices defaults to true); this one was kept.
    status, body = await c.request("GET", "/account/whoami", token=other["access_token"])
    assert status == 401
    assert body["errcode"] == "M_UNKNOWN_TOKEN"
    status, _ = await c.request("GET", "/account/whoami", token=u.access_token)
    assert status == 200


async def test_change_password_keep_devices(c: Client) -> None:
    local = _local()
    u = await c.register(local, password="old-password")
    status, other = await _login(c, local, "old-password")
    assert status == 200
    status, body = await c.request("POST", "/account/password", {
        "new_password": "new-password", "logout_devices": False,
        "auth": {"type": "m.login.password", "password": "old-password",
                 "identifier": {"type": "m.id.user", "user": local}}},
        token=u.access_token)
    assert status == 200, body
    status, _ = await c.request("GET", "/account/whoami", token=other["access_token"])
    assert status == 200


async def test_deactivate(c: Client) -> None:
    local = _local()
    u = await c.register(local, password="pw-secret-1")
    owner = await c.register()
    room = await c.create_room(owner, preset="public_chat")
    await c.join(u, room)
    status, body = await c.request("POST", "/account/deactivate", {}, token=u.access_token)
    assert status == 401
    assert body["flows"] == [{"stages": ["m.login.password"]}]
    status, body = await c.request("POST", "/account/deactivate", {
        "auth": {"type": "m.login.password", "password": "wrong",
                 "identifier": {"type": "m.id.user", "user": u.user_id}}},
        token=u.access_token)
    assert status == 401
    assert body["errcode"] == "M_FORBIDDEN"
    # Someone else's password does not authenticate this user.
    status, body = await c.request("POST", "/account/deactivate", {
        "auth": {"type": "m.login.password", "password": "pw-secret-1",
                 "identifier": {"type": "m.id.user", "user": owner.user_id}}},
        token=u.access_token)
    assert status == 403  # refused outright (SyTest, Synapse), not a stage to retry
    assert body["errcode"] == "M_FORBIDDEN"
    status, body = await c.request("POST", "/account/deactivate", {
        "auth": {"type": "m.login.password", "password": "pw-secret-1",
                 "identifier": {"type": "m.id.user", "user": u.user_id}}},
        token=u.access_token)
    assert status == 200, body
    assert body["id_server_unbind_result"] == "no-support"
    status, body = await c.request("GET", "/account/whoami", token=u.access_token)
    assert status == 401
    assert body["errcode"] == "M_UNKNOWN_TOKEN"
    status, body = await _login(c, local, "pw-secret-1")
    assert status == 403
    assert body["errcode"] in ("M_FORBIDDEN", "M_USER_DEACTIVATED")
    # The user left the room: others see the leave.
    status, body = await c.request("GET", f"/rooms/{room}/state/m.room.member/{u.user_id}",
                                   token=owner.access_token)
    assert status == 200
    assert body["membership"] == "leave"
    status, body = await c.request("GET", f"/rooms/{room}/joined_members",
                                   token=owner.access_token)
    assert list(body["joined"]) == [owner.user_id]
    # The user id stays taken.
    status, body = await c.request("GET", "/register/available", params={"username": local})
    assert status == 400
    assert body["errcode"] == "M_USER_IN_USE"


async def _start(c: Client, body: dict[str, Any]) -> str:
    status, data = await c.request("POST", "/register", body)
    assert status == 401, data
    return str(data["session"])


async def test_register_same_session_twice_gives_the_same_user(c: Client,
                                                              server: Server) -> None:
    """SyTest "registration is idempotent" (with and without a username): a client retrying
    the request that completed the flow gets the same account, logged in again."""
    for body in ({"password": "pw-secret-1"}, {"username": _local(), "password": "pw-secret-1"}):
        session = await _start(c, body)
        done = {**body, "auth": {"type": "m.login.dummy", "session": session}}
        status, first = await c.request("POST", "/register", done)
        assert status == 200, first
        status, again = await c.request("POST", "/register", done)
        assert status == 200, again
        assert again["user_id"] == first["user_id"]
        assert again["access_token"] != first["access_token"]
        if "username" in body:
            assert first["user_id"] == f"@{body['username']}:{server.config.server_name}"
        for token in (first["access_token"], again["access_token"]):
            status, who = await c.request("GET", "/account/whoami", token=token)
            assert status == 200 and who["user_id"] == first["user_id"]
    # Only one account was made per session.
    count = await server.hs.db.fetchval("SELECT count(*) FROM users WHERE user_id = $1",
                                        first["user_id"])
    assert count == 1


async def test_register_session_remembers_the_first_requests_parameters(
        c: Client, server: Server) -> None:
    """SyTest "registration remembers parameters" and "with inhibit_login inhibits login": the
    request finishing the flow may carry only `auth`."""
    local = _local()
    session = await _start(c, {"username": local, "password": "pw-secret-1",
                               "device_id": "xyzzy", "initial_device_display_name": "named"})
    status, body = await c.request("POST", "/register", {
        "auth": {"type": "m.login.dummy", "session": session}})
    assert status == 200, body
    assert body["user_id"] == f"@{local}:{server.config.server_name}"
    assert body["device_id"] == "xyzzy"
    status, device = await c.request("GET", "/devices/xyzzy", token=body["access_token"])
    assert status == 200 and device["display_name"] == "named"

    local = _local()
    session = await _start(c, {"username": local, "password": "pw-secret-1",
                               "inhibit_login": True})
    status, body = await c.request("POST", "/register", {
        "auth": {"type": "m.login.dummy", "session": session}})
    assert status == 200, body
    assert body == {"user_id": f"@{local}:{server.config.server_name}",
                    "home_server": server.config.server_name}
    status, _ = await _login(c, local, "pw-secret-1")
    assert status == 200


async def test_register_session_is_not_for_another_request(c: Client) -> None:
    """A registration session cannot authorise another operation, nor a session of another
    operation a registration."""
    alice = await c.register()
    session = await _start(c, {"username": _local(), "password": "pw-secret-1"})
    status, body = await c.request("POST", "/account/deactivate", {
        "auth": {"type": "m.login.dummy", "session": session}}, alice.access_token)
    assert status == 400 and body["errcode"] == "M_UNKNOWN", body
    status, body = await c.request("POST", "/account/password", {"new_password": "next-pw-1"},
                                   alice.access_token)
    assert status == 401, body
    status, body = await c.request("POST", "/register", {
        "username": _local(), "password": "pw-secret-1",
        "auth": {"type": "m.login.dummy", "session": body["session"]}})
    assert status == 400 and body["errcode"] == "M_UNKNOWN", body


async def test_deactivate_with_erase_hides_messages_from_later_joiners(c: Client) -> None:
    """POST /account/deactivate {"erase": true}: a member who saw the message keeps seeing
    it; one who joined after it was sent gets it with its content removed (spec; SyTest
    30rooms/32erasure.pl). A non-boolean erase is M_BAD_JSON and deactivates nothing."""
    creator, member, joiner = await c.register(), await c.register(), await c.register()
    room = await c.create_room(creator, preset="public_chat")
    await c.join(member, room)
    message = await c.send(creator, room, "body1")
    await c.join(joiner, room)
    auth = {"type": "m.login.password", "password": "pw-secret-1",
            "identifier": {"type": "m.id.user", "user": creator.user_id}}
    status, body = await c.request("POST", "/account/deactivate",
                                   {"auth": auth, "erase": "yes"}, creator.access_token)
    assert status == 400 and body["errcode"] == "M_BAD_JSON", body
    status, body = await c.request("POST", "/account/deactivate", {"auth": auth, "erase": True},
                                   creator.access_token)
    assert status == 200, body

    def content(sync: dict[str, Any]) -> Any:
        events = sync["rooms"]["join"][room]["timeline"]["events"]
        return next(e for e in events if e["event_id"] == message)["content"]

    assert content(await c.sync(member)) == {"msgtype": "m.text", "body": "body1"}
    assert content(await c.sync(joiner)) == {}
