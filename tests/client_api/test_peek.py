"""MSC2753 peeking through /sync: POST /peek, POST /unpeek and `rooms.peek`
(homeserver/sync/peeks.py), against a real server."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import Server, start_server
from tests.conftest import test_config as make_config
from tests.helpers import Client, User


async def login(c: Client, user: User, device_id: str) -> User:
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "password": "pw-secret-1", "device_id": device_id,
        "identifier": {"type": "m.id.user", "user": user.user_id}})
    assert status == 200, body
    return User(body["user_id"], body["access_token"], body["device_id"])


async def readable_room(c: Client, owner: User, **body: Any) -> str:
    room_id = await c.create_room(owner, **body)
    status, data = await c.request(
        "PUT", f"/rooms/{room_id}/state/m.room.history_visibility",
        {"history_visibility": "world_readable"}, owner.access_token)
    assert status == 200, data
    return room_id


async def peek(c: Client, user: User, room: str) -> tuple[int, Any]:
    return await c.request("POST", f"/peek/{room.replace('#', '%23')}", {}, user.access_token)


def peeked(body: dict[str, Any]) -> dict[str, Any]:
    return dict(body.get("rooms", {}).get("peek", {}))


def bodies(room: dict[str, Any]) -> list[str]:
    return [e["content"].get("body") for e in room["timeline"]["events"]
            if e["type"] == "m.room.message"]


async def test_peek_shows_the_room_from_its_start_then_only_what_is_new(c: Client) -> None:
    owner, peeker = await c.register(), await c.register()
    room_id = await readable_room(c, owner)
    before = await c.sync(peeker)
    status, data = await peek(c, peeker, room_id)
    assert status == 200, data
    assert data == {"room_id": room_id}
    await c.send(owner, room_id, "hello")

    first = await c.sync(peeker, since=before["next_batch"])
    room = peeked(first)[room_id]
    events = room["timeline"]["events"]
    assert events[0]["type"] == "m.room.create"
    assert bodies(room) == ["hello"]
    assert {"events", "limited", "prev_batch"} <= set(room["timeline"])
    assert room["state"]["events"] == []
    assert "join" not in first.get("rooms", {})

    again = await c.sync(peeker, since=first["next_batch"])
    assert room_id not in peeked(again)  # unchanged: left out

    await c.send(owner, room_id, "more")
    later = await c.sync(peeker, since=again["next_batch"])
    assert bodies(peeked(later)[room_id]) == ["more"]
    assert peeked(later)[room_id]["timeline"]["events"][0]["content"]["body"] == "more"


async def test_a_long_poll_wakes_on_a_new_event_in_a_peeked_room(c: Client) -> None:
    owner, peeker = await c.register(), await c.register()
    room_id = await readable_room(c, owner)
    await peek(c, peeker, room_id)
    first = await c.sync(peeker)
    assert room_id in peeked(first)

    poll = asyncio.create_task(c.sync(peeker, since=first["next_batch"], timeout=10_000))
    await asyncio.sleep(0.3)
    assert not poll.done()
    await c.send(owner, room_id, "wake up")
    woke = await asyncio.wait_for(poll, 5)
    assert bodies(peeked(woke)[room_id]) == ["wake up"]


async def test_a_peek_started_during_a_long_poll_wakes_it(c: Client) -> None:
    owner, peeker = await c.register(), await c.register()
    room_id = await readable_room(c, owner)
    first = await c.sync(peeker)
    poll = asyncio.create_task(c.sync(peeker, since=first["next_batch"], timeout=10_000))
    await asyncio.sleep(0.3)
    await peek(c, peeker, room_id)
    woke = await asyncio.wait_for(poll, 5)
    assert peeked(woke)[room_id]["timeline"]["events"][0]["type"] == "m.room.create"


async def test_only_the_device_that_peeked_sees_the_room(c: Client) -> None:
    owner, peeker = await c.register(), await c.register()
    other = await login(c, peeker, "OTHERDEV")
    room_id = await readable_room(c, owner)
    await peek(c, peeker, room_id)
    await c.send(owner, room_id, "for one device")
    assert room_id in peeked(await c.sync(peeker))
    assert peeked(await c.sync(other)) == {}


async def test_by_alias(c: Client, server: Server) -> None:
    owner, peeker = await c.register(), await c.register()
    name = "peek" + secrets.token_hex(4)
    room_id = await readable_room(c, owner, room_alias_name=name)
    status, data = await peek(c, peeker, f"#{name}:{server.config.server_name}")
    assert status == 200, data
    assert data["room_id"] == room_id
    assert room_id in peeked(await c.sync(peeker))


async def test_unpeek_ends_it(c: Client) -> None:
    owner, peeker = await c.register(), await c.register()
    room_id = await readable_room(c, owner)
    await peek(c, peeker, room_id)
    first = await c.sync(peeker)
    assert room_id in peeked(first)
    status, data = await c.request("POST", f"/unpeek/{room_id}", {}, peeker.access_token)
    assert status == 200, data
    await c.send(owner, room_id, "after unpeek")
    assert room_id not in peeked(await c.sync(peeker, since=first["next_batch"]))
    assert room_id not in peeked(await c.sync(peeker))


async def test_joining_ends_the_peek(c: Client) -> None:
    owner, peeker = await c.register(), await c.register()
    room_id = await readable_room(c, owner, preset="public_chat")
    await peek(c, peeker, room_id)
    first = await c.sync(peeker)
    assert room_id in peeked(first)
    await c.join(peeker, room_id)
    after = await c.sync(peeker, since=first["next_batch"])
    assert room_id in after["rooms"]["join"]
    assert room_id not in peeked(after)
    status, data = await c.request("POST", f"/rooms/{room_id}/leave", {}, peeker.access_token)
    assert status == 200, data
    await c.send(owner, room_id, "after leaving")
    assert room_id not in peeked(await c.sync(peeker))  # leaving does not bring it back


async def test_rooms_that_are_not_world_readable_are_refused(c: Client, server: Server
                                                              ) -> None:
    owner, peeker = await c.register(), await c.register()
    for visibility in ("shared", "invited", "joined"):
        room_id = await c.create_room(owner, preset="public_chat")
        status, data = await c.request(
            "PUT", f"/rooms/{room_id}/state/m.room.history_visibility",
            {"history_visibility": visibility}, owner.access_token)
        assert status == 200, data
        status, data = await peek(c, peeker, room_id)
        assert status == 403, data
        assert data["errcode"] == "M_FORBIDDEN"
    async with server.hs.db.connection() as conn:
        rows = await conn.fetchval("SELECT count(*) FROM room_peeks WHERE user_id = $1",
                                   peeker.user_id)
    assert rows == 0


async def test_unknown_rooms_and_bad_ids(c: Client, server: Server) -> None:
    peeker = await c.register()
    name = server.config.server_name
    status, data = await peek(c, peeker, f"!nosuchroom:{name}")
    assert (status, data["errcode"]) == (404, "M_NOT_FOUND")
    status, data = await peek(c, peeker, f"#nosuchalias:{name}")
    assert (status, data["errcode"]) == (404, "M_NOT_FOUND")
    status, data = await c.request("POST", "/unpeek/notaroom", {}, peeker.access_token)
    assert (status, data["errcode"]) == (400, "M_INVALID_PARAM")
    status, data = await c.request("POST", f"/peek/!x:{name}", None)
    assert (status, data["errcode"]) == (401, "M_MISSING_TOKEN")


async def test_deleting_the_device_deletes_its_peeks(c: Client, server: Server) -> None:
    owner, peeker = await c.register(), await c.register()
    other = await login(c, peeker, "GOINGAWAY")
    room_id = await readable_room(c, owner)
    await peek(c, other, room_id)
    status, data = await c.request("POST", "/logout", {}, other.access_token)
    assert status == 200, data
    async with server.hs.db.connection() as conn:
        rows = await conn.fetchval(
            "SELECT count(*) FROM room_peeks WHERE user_id = $1 AND device_id = $2",
            peeker.user_id, "GOINGAWAY")
    assert rows == 0


async def test_a_peek_survives_a_restart(fresh_database: str, tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    async with aiohttp.ClientSession() as session:
        async for s in start_server(cfg, fresh_database):
            c = Client(s.url, session)
            owner, peeker = await c.register(), await c.register()
            room_id = await readable_room(c, owner)
            await peek(c, peeker, room_id)
            first = await c.sync(peeker)
            assert room_id in peeked(first)
        async for s in start_server(cfg, fresh_database):
            c = Client(s.url, session)
            await c.send(owner, room_id, "after restart")
            later = await c.sync(peeker, since=first["next_batch"])
            assert bodies(peeked(later)[room_id]) == ["after restart"]


async def test_the_websocket_sync_pushes_peeked_rooms(c: Client, server: Server) -> None:
    owner, peeker = await c.register(), await c.register()
    room_id = await readable_room(c, owner)
    await peek(c, peeker, room_id)
    ws = await c.session.ws_connect(server.url + "/_matrix/client/v3/sync",
                                    headers={"Authorization": f"Bearer {peeker.access_token}"})
    try:
        async def next_body() -> dict[str, Any]:
            while True:
                data = (await ws.receive(timeout=10)).json()
                if data.get("type") == "sync":
                    return dict(data["body"])

        first = await next_body()
        assert peeked(first)[room_id]["timeline"]["events"][0]["type"] == "m.room.create"
        await c.send(owner, room_id, "over the socket")
        pushed = await next_body()
        while room_id not in peeked(pushed):
            pushed = await next_body()
        assert bodies(peeked(pushed)[room_id]) == ["over the socket"]
    finally:
        await ws.close()


async def test_a_room_that_stops_being_world_readable_is_no_longer_shown(c: Client) -> None:
    owner, peeker = await c.register(), await c.register()
    room_id = await readable_room(c, owner)
    await peek(c, peeker, room_id)
    first = await c.sync(peeker)
    assert room_id in peeked(first)
    status, data = await c.request(
        "PUT", f"/rooms/{room_id}/state/m.room.history_visibility",
        {"history_visibility": "shared"}, owner.access_token)
    assert status == 200, data
    await c.send(owner, room_id, "members only")
    status, data = await c.request("PUT", f"/rooms/{room_id}/state/m.room.topic",
                                   {"topic": "secret"}, owner.access_token)
    assert status == 200, data
    assert room_id not in peeked(await c.sync(peeker, since=first["next_batch"]))
    assert room_id not in peeked(await c.sync(peeker))
