"""User-interactive auth sessions in the database: what a session is bound to, that a completed
flow authorises one request, expiry and the sweep of expired sessions."""

from __future__ import annotations

import asyncio
from typing import Any

from client_api.uia import UIA
from homeserver.errors import MatrixError, UIARequired
from homeserver.uia.service import SESSION_TTL_MS
from tests.conftest import Server
from tests.helpers import Client, User

PASSWORD_OP = "POST /_matrix/client/{v}/account/password"


def _password_auth(user: User, session: str | None, password: str = "pw-secret-1"
                   ) -> dict[str, Any]:
    auth: dict[str, Any] = {"type": "m.login.password", "password": password,
                            "identifier": {"type": "m.id.user", "user": user.user_id}}
    if session is not None:
        auth["session"] = session
    return auth


async def _start_password_change(c: Client, user: User) -> str:
    status, body = await c.request("POST", "/account/password", {"new_password": "next-pw-1"},
                                   user.access_token)
    assert status == 401, body
    assert body["completed"] == []
    return str(body["session"])


async def _session_row(server: Server, session: str) -> Any:
    return await server.hs.db.fetchrow(
        "SELECT operation, user_id, completed FROM uia_sessions WHERE session_id = $1", session)


async def test_session_is_a_row_until_its_flow_completes(c: Client, server: Server) -> None:
    alice = await c.register()
    session = await _start_password_change(c, alice)
    row = await _session_row(server, session)
    assert row is not None
    assert (row["operation"], row["user_id"], list(row["completed"])) == (
        PASSWORD_OP, alice.user_id, [])
    # A wrong password leaves the session open, with nothing completed.
    status, body = await c.request("POST", "/account/password", {
        "new_password": "next-pw-1", "auth": _password_auth(alice, session, "wrong")},
        alice.access_token)
    assert status == 401 and body["errcode"] == "M_FORBIDDEN" and body["session"] == session
    assert list((await _session_row(server, session))["completed"]) == []

    status, body = await c.request("POST", "/account/password", {
        "new_password": "next-pw-1", "auth": _password_auth(alice, session)}, alice.access_token)
    assert status == 200, body
    assert await _session_row(server, session) is None
    # The completed session authorised one request: offering it again is refused.
    status, body = await c.request("POST", "/account/password", {
        "new_password": "third-pw-1", "auth": _password_auth(alice, session, "next-pw-1")},
        alice.access_token)
    assert status == 400 and body["errcode"] == "M_UNKNOWN"


async def test_a_flow_done_in_one_request_stores_no_session(c: Client, server: Server) -> None:
    alice = await c.register()
    status, body = await c.request("POST", "/account/password", {
        "new_password": "next-pw-1", "auth": _password_auth(alice, None)}, alice.access_token)
    assert status == 200, body
    count = await server.hs.db.fetchval("SELECT count(*) FROM uia_sessions WHERE user_id = $1",
                                        alice.user_id)
    assert count == 0


async def test_session_belongs_to_its_user_and_request(c: Client, server: Server) -> None:
    alice, bob = await c.register(), await c.register()
    session = await _start_password_change(c, alice)
    # Bob cannot use Alice's session, even with his own password.
    status, body = await c.request("POST", "/account/password", {
        "new_password": "bob-new-pw", "auth": _password_auth(bob, session)}, bob.access_token)
    assert status == 400 and body["errcode"] == "M_UNKNOWN"
    # Nor can Alice use it for another request: the account stays active.
    status, body = await c.request("POST", "/account/deactivate", {
        "auth": _password_auth(alice, session)}, alice.access_token)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    status, _ = await c.request("GET", "/account/whoami", token=alice.access_token)
    assert status == 200
    # A session id that is not a string is an unknown session, not a server error.
    status, body = await c.request("POST", "/account/password", {
        "new_password": "next-pw-1", "auth": {**_password_auth(alice, None), "session": [1]}},
        alice.access_token)
    assert status == 400 and body["errcode"] == "M_UNKNOWN"
    # The session still serves the request it was started for.
    status, body = await c.request("POST", "/account/password", {
        "new_password": "next-pw-1", "auth": _password_auth(alice, session)}, alice.access_token)
    assert status == 200, body


async def test_two_requests_racing_on_one_session_pass_once(c: Client, server: Server) -> None:
    alice = await c.register()
    session = await _start_password_change(c, alice)

    async def change(new: str) -> int:
        status, _ = await c.request("POST", "/account/password", {
            "new_password": new, "logout_devices": False,
            "auth": _password_auth(alice, session)}, alice.access_token)
        return status

    statuses = await asyncio.gather(change("first-pw-1"), change("second-pw-1"))
    assert sorted(statuses) == [200, 400]


async def test_expired_session_is_refused_and_swept(c: Client, server: Server) -> None:
    alice = await c.register()
    old = await _start_password_change(c, alice)
    # Make the session older than the TTL, as if it had been started 10 minutes ago.
    await server.hs.db.execute(
        "UPDATE uia_sessions SET created_ts = created_ts - $2 WHERE session_id = $1",
        old, SESSION_TTL_MS + 1_000)
    status, body = await c.request("POST", "/account/password", {
        "new_password": "next-pw-1", "auth": _password_auth(alice, old)}, alice.access_token)
    assert status == 400 and body["errcode"] == "M_UNKNOWN"
    status, _ = await c.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": "next-pw-1"})
    assert status == 403  # the password did not change

    # Starting a new flow sweeps expired sessions; the new one and other live ones stay.
    live = await _start_password_change(c, alice)
    assert await _session_row(server, old) is None
    newer = await _start_password_change(c, alice)
    assert await _session_row(server, live) is not None
    assert await _session_row(server, newer) is not None
    status, body = await c.request("POST", "/account/password", {
        "new_password": "next-pw-1", "auth": _password_auth(alice, live)}, alice.access_token)
    assert status == 200, body


async def test_finishing_is_what_authorises(server: Server) -> None:
    """Two requests that both completed the stage of one session: only the one that deletes the
    session passes. (The HTTP race above rarely gets this far; here both checks are held inside
    their stage until both are there.)"""
    uia = UIA(server.hs.uia)
    try:
        await uia.check({}, [["m.login.dummy"]], _never, operation="test", user_id=None)
    except UIARequired as e:
        session = e.body["session"]
    else:
        raise AssertionError("a flow with no auth completed")
    inside = 0
    both_inside = asyncio.Event()

    async def stage(stage: str, auth: dict[str, Any]) -> bool:
        nonlocal inside
        inside += 1
        if inside == 2:
            both_inside.set()
        await both_inside.wait()
        return True

    body = {"auth": {"type": "m.login.dummy", "session": session}}
    results = await asyncio.gather(
        *(uia.check(body, [["m.login.dummy"]], stage, operation="test", user_id=None)
          for _ in range(2)), return_exceptions=True)
    passed = [r for r in results if not isinstance(r, BaseException)]
    assert len(passed) == 1 and passed[0] is not None, results
    [error] = [r for r in results if isinstance(r, BaseException)]
    assert isinstance(error, MatrixError) and error.errcode == "M_UNKNOWN"


async def _never(stage: str, auth: dict[str, Any]) -> bool:
    raise AssertionError("no stage was offered")


async def _new_device(c: Client, user: User) -> str:
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "password": "pw-secret-1",
        "identifier": {"type": "m.id.user", "user": user.user_id}})
    assert status == 200, body
    return str(body["device_id"])


async def test_session_is_bound_to_the_device_it_deletes(c: Client) -> None:
    """SyTest "The operation must be consistent through an interactive authentication session":
    a session started to delete one device cannot delete another."""
    alice = await c.register()
    first, second = await _new_device(c, alice), await _new_device(c, alice)
    for device in (first, second):
        assert (await c.request("GET", f"/devices/{device}", token=alice.access_token))[0] == 200
    status, body = await c.request("DELETE", f"/devices/{first}", {}, alice.access_token)
    assert status == 401, body
    status, body = await c.request("DELETE", f"/devices/{second}", {
        "auth": _password_auth(alice, body["session"])}, alice.access_token)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN", body
    for device in (first, second):
        assert (await c.request("GET", f"/devices/{device}", token=alice.access_token))[0] == 200


async def test_deleting_a_device_needs_its_owners_password(c: Client) -> None:
    """SyTest "DELETE /device/{deviceId} requires UI auth user to match device owner": Eve with
    Alice's access token and her own password cannot delete Alice's device."""
    alice, eve = await c.register(), await c.register()
    device = await _new_device(c, alice)
    status, body = await c.request("DELETE", f"/devices/{device}", {
        "auth": _password_auth(eve, None)}, alice.access_token)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN", body
    assert (await c.request("GET", f"/devices/{device}", token=alice.access_token))[0] == 200
    status, body = await c.request("DELETE", f"/devices/{device}", {
        "auth": _password_auth(alice, None)}, alice.access_token)
    assert status == 200, body
    assert (await c.request("GET", f"/devices/{device}", token=alice.access_token))[0] == 404
