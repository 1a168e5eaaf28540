"""Presence over HTTP: PUT/GET /presence/{userId}/status, m.presence in /sync for co-members only,
the idle/offline sweep waking co-members, persistence across a restart, and switching it off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Server, start_server
from tests.conftest import test_config as make_config
from tests.helpers import Client, User


def presence_of(sync: dict[str, Any], user_id: str) -> list[dict[str, Any]]:
    return [e["content"] for e in sync.get("presence", {}).get("events", [])
            if e["type"] == "m.presence" and e["sender"] == user_id]


async def put_presence(c: Client, user: User, presence: str, status_msg: str | None = None
                       ) -> tuple[int, Any]:
    body: dict[str, Any] = {"presence": presence}
    if status_msg is not None:
        body["status_msg"] = status_msg
    return await c.request("PUT", f"/presence/{user.user_id}/status", body, user.access_token)


async def get_presence(c: Client, observer: User, user_id: str) -> tuple[int, Any]:
    return await c.request("GET", f"/presence/{user_id}/status", token=observer.access_token)


async def pair_in_room(c: Client) -> tuple[User, User, str]:
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    return alice, bob, room


@pytest.fixture
async def short_server(fresh_database: str, tmp_path: Path) -> AsyncIterator[Server]:
    cfg = make_config(tmp_path, presence_idle_after_ms=400, presence_offline_after_ms=1_200)
    async for s in start_server(cfg, fresh_database):
        yield s


@pytest.fixture
async def short(short_server: Server) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as s:
        yield Client(short_server.url, s)


async def test_set_status_and_read_it_back(c: Client) -> None:
    alice, bob, _ = await pair_in_room(c)
    assert await put_presence(c, alice, "unavailable", "in a meeting") == (200, {})
    status, body = await get_presence(c, alice, alice.user_id)
    assert status == 200, body
    assert body["presence"] == "unavailable"
    assert body["status_msg"] == "in a meeting"
    assert body["currently_active"] is False
    assert isinstance(body["last_active_ago"], int) and 0 <= body["last_active_ago"] < 10_000
    # A co-member sees the same.
    status, seen = await get_presence(c, bob, alice.user_id)
    assert status == 200 and seen["presence"] == "unavailable"
    assert seen["status_msg"] == "in a meeting"

    assert await put_presence(c, alice, "online") == (200, {})
    status, body = await get_presence(c, bob, alice.user_id)
    assert body["presence"] == "online" and body["currently_active"] is True
    assert "status_msg" not in body  # PUT without status_msg clears it

    assert (await put_presence(c, alice, "offline"))[0] == 200
    assert (await get_presence(c, bob, alice.user_id))[1]["presence"] == "offline"


async def test_presence_errors(c: Client) -> None:
    alice, bob, _ = await pair_in_room(c)
    stranger = await c.register()
    status, body = await put_presence(c, bob, "online")
    assert status == 200
    # Only for yourself.
    status, body = await c.request("PUT", f"/presence/{alice.user_id}/status",
                                   {"presence": "online"}, bob.access_token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # The enum and the types are checked.
    status, body = await put_presence(c, alice, "busy")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await c.request("PUT", f"/presence/{alice.user_id}/status",
                                   {"status_msg": "x"}, alice.access_token)
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await c.request("PUT", f"/presence/{alice.user_id}/status",
                                   {"presence": "online", "status_msg": 5}, alice.access_token)
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    # Someone who shares no room may not look.
    status, body = await get_presence(c, stranger, alice.user_id)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await get_presence(c, alice, "not-a-user-id")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await c.request("GET", f"/presence/{alice.user_id}/status")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")


async def test_sync_reaches_co_members_only(c: Client) -> None:
    alice, bob, _ = await pair_in_room(c)
    eve = await c.register()
    await c.create_room(eve, preset="private_chat")  # eve is in a room, but not with alice
    bob_since = (await c.sync(bob))["next_batch"]
    eve_since = (await c.sync(eve))["next_batch"]

    # bob long-polls; alice's change wakes him at once.
    started = time.monotonic()
    waiting = asyncio.create_task(c.sync(bob, bob_since, timeout=10_000))
    await asyncio.sleep(0.2)
    assert (await put_presence(c, alice, "online", "hello"))[0] == 200
    got = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 5
    [content] = presence_of(got, alice.user_id)[-1:]
    assert content["presence"] == "online" and content["status_msg"] == "hello"
    assert content["currently_active"] is True

    eve_sync = await c.sync(eve, eve_since)
    assert presence_of(eve_sync, alice.user_id) == []

    # Many changes between two syncs come out as one event with the latest state.
    since = got["next_batch"]
    for msg in ("one", "two", "three"):
        await put_presence(c, alice, "online", msg)
    [content] = presence_of(await c.sync(bob, since), alice.user_id)
    assert content["status_msg"] == "three"

    # An initial sync shows co-members' current presence, and the user's own.
    initial = await c.sync(bob)
    assert presence_of(initial, alice.user_id)[0]["status_msg"] == "three"
    assert presence_of(initial, bob.user_id)[0]["presence"] == "online"
    assert presence_of(await c.sync(eve), alice.user_id) == []


async def test_sync_marks_online_and_set_presence(c: Client) -> None:
    alice, bob, _ = await pair_in_room(c)
    await c.sync(alice, set_presence="offline")  # not marked online
    assert (await get_presence(c, bob, alice.user_id))[1]["presence"] == "offline"
    await c.sync(alice, set_presence="unavailable")
    assert (await get_presence(c, bob, alice.user_id))[1]["presence"] == "unavailable"
    await c.sync(alice)
    body = (await get_presence(c, bob, alice.user_id))[1]
    assert body["presence"] == "online" and body["currently_active"] is True
    status, err = await c.request("GET", "/sync", token=alice.access_token,
                                  params={"set_presence": "busy"})
    assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")


async def test_idle_then_offline_wakes_co_members(short: Client, short_server: Server) -> None:
    c = short
    alice, bob, _ = await pair_in_room(c)
    await c.sync(alice)  # alice's one heartbeat (timeout 0): online, then silence
    since = (await c.sync(bob))["next_batch"]
    assert (await get_presence(c, bob, alice.user_id))[1]["presence"] == "online"

    seen: list[str] = []
    deadline = time.monotonic() + 10
    while "offline" not in seen and time.monotonic() < deadline:
        got = await c.sync(bob, since, timeout=5_000)  # woken by the sweep, not by a timeout
        since = got["next_batch"]
        seen += [p["presence"] for p in presence_of(got, alice.user_id)]
    assert seen == ["unavailable", "offline"]
    body = (await get_presence(c, bob, alice.user_id))[1]
    assert body["presence"] == "offline" and body["currently_active"] is False
    assert body["last_active_ago"] >= 1_000

    # A parked long-poll is not idleness: alice's 2 s sync keeps her online past idle_after_ms.
    poll = asyncio.create_task(c.sync(alice, timeout=2_000,
                                      filter='{"presence": {"types": []}}'))
    await asyncio.sleep(1.0)
    assert (await get_presence(c, bob, alice.user_id))[1]["presence"] == "online"
    await poll


async def test_sending_a_message_is_activity(short: Client) -> None:
    """Spec "last active": sending an event resets last_active_ago, and a user gone unavailable
    by idleness is online again."""
    c = short
    alice, bob, room = await pair_in_room(c)
    await c.sync(alice)  # one heartbeat, then idleness
    deadline = time.monotonic() + 10
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = (await get_presence(c, bob, alice.user_id))[1]
        if body["presence"] == "unavailable":
            break
        await asyncio.sleep(0.05)
    assert body["presence"] == "unavailable"
    assert body["last_active_ago"] >= 400
    await c.send(alice, room, "I'm back")
    body = (await get_presence(c, bob, alice.user_id))[1]
    assert body["presence"] == "online" and body["currently_active"] is True
    assert body["last_active_ago"] < 400


async def test_presence_survives_restart(fresh_database: str, tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    async with aiohttp.ClientSession() as s:
        async for server in start_server(cfg, fresh_database):
            c = Client(server.url, s)
            alice = await c.register()
            assert (await put_presence(c, alice, "unavailable", "back soon"))[0] == 200
        async for server in start_server(make_config(tmp_path), fresh_database):
            c = Client(server.url, s)
            status, body = await get_presence(c, alice, alice.user_id)
            assert status == 200, body
            assert body["presence"] == "unavailable" and body["status_msg"] == "back soon"
            assert isinstance(body["last_active_ago"], int)


async def test_presence_disabled(fresh_database: str, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, presence_enabled=False)
    async with aiohttp.ClientSession() as s:
        async for server in start_server(cfg, fresh_database):
            c = Client(server.url, s)
            alice, bob, _ = await pair_in_room(c)
            since = (await c.sync(bob))["next_batch"]
            assert (await put_presence(c, alice, "online", "ignored")) == (200, {})
            await c.sync(alice)
            got = await c.sync(bob, since, timeout=300)
            assert "presence" not in got
            assert "presence" not in await c.sync(bob)
            assert await get_presence(c, bob, alice.user_id) == (200, {"presence": "offline"})
            assert server.hs.presence.current() == 0


async def test_presence_of_new_room_peers_in_incremental_sync(c: Client) -> None:
    """Users who come to share a room since the last sync get each other's current presence,
    though it did not change in the window: the joiner learns the room's members' presence,
    the members learn the joiner's (SyTest 31sync/03joined.pl "Newly joined room includes
    presence", "Get presence for newly joined members"); it is not repeated after."""
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(alice, preset="public_chat")
    for u, msg in ((alice, "here"), (bob, "also here")):
        status, _ = await put_presence(c, u, "online", msg)
        assert status == 200
    alice_since = (await c.sync(alice))["next_batch"]
    bob_since = (await c.sync(bob))["next_batch"]
    assert presence_of(await c.sync(alice), bob.user_id) == []  # no shared room yet
    await c.join(bob, room)
    for viewer, since, peer, msg in ((bob, bob_since, alice, "here"),
                                     (alice, alice_since, bob, "also here")):
        body = await c.sync(viewer, since)
        [content] = presence_of(body, peer.user_id)
        assert content["presence"] == "online" and content["status_msg"] == msg
        again = await c.sync(viewer, body["next_batch"])
        assert presence_of(again, peer.user_id) == []


async def test_a_new_peer_without_presence_comes_as_offline(c: Client) -> None:
    """A user who never had any presence and joins a room shows up to its members as offline
    in their next incremental sync (SyTest "Get presence for newly joined members")."""
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(alice, preset="public_chat")
    since = (await c.sync(alice))["next_batch"]
    await c.join(bob, room)
    [content] = presence_of(await c.sync(alice, since), bob.user_id)
    assert content["presence"] == "offline"
