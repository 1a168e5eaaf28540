"""Bad input through raw HTTP: each failure has the spec's status and errcode, and leaves nothing
behind (no event in the room, no user, no room)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.conftest import Server
from tests.e2e.conftest import new_name
from tests.helpers import Client, User


def err(status: int, data: Any, want_status: int, errcode: str) -> None:
    assert (status, data["errcode"] if isinstance(data, dict) else data) == \
        (want_status, errcode), data
    assert isinstance(data.get("error"), str)


async def newest_events(c: Client, user: User, room_id: str, n: int = 5) -> list[str]:
    status, data = await c.request("GET", f"/rooms/{room_id}/messages", token=user.access_token,
                                   params={"dir": "b", "limit": str(n)})
    assert status == 200, data
    return [e["event_id"] for e in data["chunk"]]


async def joined_rooms(c: Client, user: User) -> list[str]:
    status, data = await c.request("GET", "/joined_rooms", token=user.access_token)
    assert status == 200, data
    return sorted(data["joined_rooms"])


async def register_fast(c: Client, localpart: str | None = None) -> User:
    status, data = await c.request("POST", "/register", {
        "username": localpart or new_name("err"), "auth": {"type": "m.login.dummy"}})
    assert status == 200, data
    return User(data["user_id"], data["access_token"], data["device_id"])


async def test_request_errors_store_nothing(server: Server, raw: Client) -> None:
    alice = await register_fast(raw)
    carol = await register_fast(raw)
    room_id = await raw.create_room(alice, preset="public_chat")
    before = await newest_events(raw, alice, room_id)
    rooms_before = await joined_rooms(raw, alice)
    send_path = f"/rooms/{room_id}/send/m.room.message/"

    # Not JSON at all.
    status, data = await raw.request("PUT", send_path + "t1", raw=b"{not json",
                                     token=alice.access_token)
    err(status, data, 400, "M_NOT_JSON")
    status, data = await raw.request("POST", "/createRoom", raw=b"\xff\xfe garbage",
                                     token=alice.access_token)
    err(status, data, 400, "M_NOT_JSON")

    # JSON, but the wrong types.
    status, data = await raw.request("PUT", send_path + "t2", raw=b'["a list"]',
                                     token=alice.access_token)
    err(status, data, 400, "M_BAD_JSON")
    status, data = await raw.request("POST", "/createRoom", {"name": 5},
                                     token=alice.access_token)
    err(status, data, 400, "M_BAD_JSON")
    status, data = await raw.request("POST", "/createRoom", {"invite": "@x:parley.test"},
                                     token=alice.access_token)
    err(status, data, 400, "M_BAD_JSON")
    status, data = await raw.request("POST", f"/rooms/{room_id}/invite", {"user_id": 5},
                                     token=alice.access_token)
    err(status, data, 400, "M_BAD_JSON")
    name = new_name("typed")
    status, data = await raw.request("POST", "/register",
                                     {"username": name, "password": 12345678,
                                      "auth": {"type": "m.login.dummy"}})
    err(status, data, 400, "M_BAD_JSON")
    assert await server.hs.accounts.get_user(f"@{name}:parley.test") is None

    # Missing and unknown access tokens.
    status, data = await raw.request("PUT", send_path + "t3", {"msgtype": "m.text", "body": "x"})
    err(status, data, 401, "M_MISSING_TOKEN")
    status, data = await raw.request("PUT", send_path + "t4", {"msgtype": "m.text", "body": "x"},
                                     token="pa_not_a_real_token")
    err(status, data, 401, "M_UNKNOWN_TOKEN")
    status, data = await raw.request("GET", "/joined_rooms", token="")
    assert status == 401 and data["errcode"] in ("M_MISSING_TOKEN", "M_UNKNOWN_TOKEN"), data

    # Unknown endpoints (and a known path with an unsupported method).
    status, data = await raw.request("GET", "/no/such/endpoint", token=alice.access_token)
    err(status, data, 404, "M_UNRECOGNIZED")
    status, data = await raw.request("POST", "/_matrix/client/v3/rooms_nope", {})
    err(status, data, 404, "M_UNRECOGNIZED")
    status, data = await raw.request("DELETE", "/createRoom", token=alice.access_token)
    err(status, data, 405, "M_UNRECOGNIZED")

    # Sending into a room one is not in; into a room that does not exist.
    status, data = await raw.request("PUT", send_path + "t5", {"msgtype": "m.text", "body": "x"},
                                     token=carol.access_token)
    err(status, data, 403, "M_FORBIDDEN")
    status, data = await raw.request(
        "PUT", "/rooms/!doesnotexist:parley.test/send/m.room.message/t6",
        {"msgtype": "m.text", "body": "x"}, token=alice.access_token)
    err(status, data, 404, "M_NOT_FOUND")

    # Unsupported room version.
    status, data = await raw.request("POST", "/createRoom", {"room_version": "999"},
                                     token=alice.access_token)
    err(status, data, 400, "M_UNSUPPORTED_ROOM_VERSION")

    # An event over 65536 bytes, and a body over max_request_bytes.
    status, data = await raw.request("PUT", send_path + "t7",
                                     {"msgtype": "m.text", "body": "x" * 70_000},
                                     token=alice.access_token)
    err(status, data, 413, "M_TOO_LARGE")
    huge = server.config.max_request_bytes + 1024
    status, data = await raw.request("PUT", send_path + "t8",
                                     raw=orjson.dumps({"msgtype": "m.text", "body": "y" * huge}),
                                     token=alice.access_token)
    err(status, data, 413, "M_TOO_LARGE")
    status, data = await raw.request("PUT", f"/rooms/{room_id}/state/m.room.topic",
                                     {"topic": "z" * 70_000}, token=alice.access_token)
    err(status, data, 413, "M_TOO_LARGE")

    # None of the failed requests stored anything.
    assert await newest_events(raw, alice, room_id) == before
    assert await joined_rooms(raw, alice) == rooms_before
    assert await joined_rooms(raw, carol) == []
    # The same transaction ids are still free: a good request with one now succeeds once.
    ok = await raw.send(alice, room_id, "fine", txn="t7")
    assert await newest_events(raw, alice, room_id) == [ok, *before[:4]]


async def test_registration_errors(server: Server, raw: Client) -> None:
    taken = new_name("taken")
    first = await register_fast(raw, taken)
    status, data = await raw.request("POST", "/register", {
        "username": taken, "auth": {"type": "m.login.dummy"}})
    err(status, data, 400, "M_USER_IN_USE")
    status, data = await raw.request("POST", "/register", {
        "username": taken.upper(), "auth": {"type": "m.login.dummy"}})
    err(status, data, 400, "M_USER_IN_USE")
    status, data = await raw.request("GET", "/register/available", params={"username": taken})
    err(status, data, 400, "M_USER_IN_USE")
    # The first account is untouched: its token works and it has exactly its one device.
    status, data = await raw.request("GET", "/account/whoami", token=first.access_token)
    assert status == 200 and data["user_id"] == first.user_id, data
    status, data = await raw.request("GET", "/devices", token=first.access_token)
    assert status == 200, data
    assert [d["device_id"] for d in data["devices"]] == [first.device_id]

    for bad in ("bad name", "semi;colon", "ümlaut", "a:b", "@at"):
        status, data = await raw.request("POST", "/register", {
            "username": bad, "auth": {"type": "m.login.dummy"}})
        err(status, data, 400, "M_INVALID_USERNAME")
        assert await server.hs.accounts.get_user(f"@{bad}:parley.test") is None
    long_name = "l" * 300
    status, data = await raw.request("POST", "/register", {
        "username": long_name[:250], "auth": {"type": "m.login.dummy"}})
    err(status, data, 400, "M_INVALID_USERNAME")

    # Two racing registrations of one new name: exactly one wins.
    racing = new_name("race")
    results = await asyncio.gather(*(raw.request("POST", "/register", {
        "username": racing, "auth": {"type": "m.login.dummy"}}) for _ in range(2)))
    statuses = sorted(s for s, _ in results)
    assert statuses == [200, 400], results
    assert [d["errcode"] for s, d in results if s == 400] == ["M_USER_IN_USE"]
