"""MSC2228 ephemeral messages (enable_ephemeral_messages): an event whose content has
org.matrix.self_destruct_after is served pruned (content {}) once that time has passed, with no
redaction event; nothing expires when the option is off; a restart before the expiry still
expires it (the row is in the database, the new process's task catches up)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests import conftest
from tests.conftest import Server, start_server
from tests.helpers import Client, User

FIELD = "org.matrix.self_destruct_after"
MESSAGES = {"filter": '{"types":["m.room.message"]}', "dir": "b"}


@pytest.fixture
async def enabled(fresh_database: str, tmp_path: Path) -> AsyncIterator[Client]:
    config = conftest.test_config(tmp_path, enable_ephemeral_messages=True)
    async for s in start_server(config, fresh_database):
        async with aiohttp.ClientSession() as session:
            yield Client(s.url, session)


def now_ms() -> int:
    return int(time.time() * 1000)


async def send_ephemeral(c: Client, user: User, room: str, after_ms: int,
                         body: str = "This is a message") -> str:
    status, data = await c.request(
        "PUT", f"/rooms/{room}/send/m.room.message/{secrets.token_hex(6)}",
        {"msgtype": "m.text", "body": body, FIELD: now_ms() + after_ms}, user.access_token)
    assert status == 200, data
    return str(data["event_id"])


async def get_event(c: Client, user: User, room: str, event_id: str) -> dict[str, Any]:
    status, data = await c.request("GET", f"/rooms/{room}/event/{event_id}",
                                   token=user.access_token)
    assert status == 200, data
    return dict(data)


async def messages(c: Client, user: User, room: str) -> list[dict[str, Any]]:
    status, data = await c.request("GET", f"/rooms/{room}/messages", token=user.access_token,
                                   params=MESSAGES)
    assert status == 200, data
    return list(data["chunk"])


async def wait_expired(c: Client, user: User, room: str, event_id: str,
                       timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        ev = await get_event(c, user, room, event_id)
        if ev["content"] == {} or time.monotonic() > deadline:
            return ev
        await asyncio.sleep(0.1)


async def test_message_is_pruned_after_its_time(enabled: Client) -> None:
    c = enabled
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    keep = await c.send(alice, room, "not ephemeral")
    eid = await send_ephemeral(c, alice, room, 1500)
    # Readable before its time, everywhere.
    ev = await get_event(c, bob, room, eid)
    assert ev["content"]["body"] == "This is a message"
    chunk = await messages(c, bob, room)
    assert [e["event_id"] for e in chunk] == [eid, keep]
    assert chunk[0]["content"]["body"] == "This is a message"

    ev = await wait_expired(c, bob, room, eid)
    assert ev["content"] == {}, ev
    assert ev["event_id"] == eid and ev["type"] == "m.room.message"
    assert ev["sender"] == alice.user_id
    assert "redacted_because" not in ev.get("unsigned", {})  # no redaction event
    chunk = await messages(c, alice, room)
    assert [e["event_id"] for e in chunk] == [eid, keep]  # the event itself stays
    assert chunk[0]["content"] == {}
    assert chunk[1]["content"]["body"] == "not ephemeral"
    status, ctx = await c.request("GET", f"/rooms/{room}/context/{eid}",
                                  token=bob.access_token)
    assert status == 200, ctx
    assert ctx["event"]["content"] == {}
    sync = await c.sync(bob)
    timeline = sync["rooms"]["join"][room]["timeline"]["events"]
    mine = [e for e in timeline if e["event_id"] == eid]
    assert mine and mine[0]["content"] == {}, timeline
    # No redaction event was sent.
    assert not [e for e in timeline if e["type"] == "m.room.redaction"]


async def test_future_expiry_is_not_applied_early(enabled: Client) -> None:
    c = enabled
    alice = await c.register()
    room = await c.create_room(alice)
    later = await send_ephemeral(c, alice, room, 60_000, body="later")
    soon = await send_ephemeral(c, alice, room, 300, body="soon")
    assert (await wait_expired(c, alice, room, soon))["content"] == {}
    assert (await get_event(c, alice, room, later))["content"]["body"] == "later"


async def test_bad_values_are_ignored(enabled: Client) -> None:
    c = enabled
    alice = await c.register()
    room = await c.create_room(alice)
    ids = []
    for value in [True, -5, "1", None, {"at": 1}]:  # (floats are refused as bad JSON)
        status, data = await c.request(
            "PUT", f"/rooms/{room}/send/m.room.message/{secrets.token_hex(6)}",
            {"msgtype": "m.text", "body": "kept", FIELD: value}, alice.access_token)
        assert status == 200, data
        ids.append(data["event_id"])
    # A due one after them: once it is pruned, the task has looked at everything due.
    due = await send_ephemeral(c, alice, room, 0)
    assert (await wait_expired(c, alice, room, due))["content"] == {}
    for eid in ids:
        assert (await get_event(c, alice, room, eid))["content"]["body"] == "kept"


async def test_off_by_default(c: Client, server: Server) -> None:
    assert server.config.enable_ephemeral_messages is False
    alice = await c.register()
    room = await c.create_room(alice)
    eid = await send_ephemeral(c, alice, room, 100)
    await asyncio.sleep(1.0)
    ev = await get_event(c, alice, room, eid)
    assert ev["content"]["body"] == "This is a message"
    assert ev["content"][FIELD] > 0


async def test_expiry_survives_a_restart(fresh_database: str, tmp_path: Path) -> None:
    config = conftest.test_config(tmp_path, enable_ephemeral_messages=True)
    async for s in start_server(config, fresh_database):
        async with aiohttp.ClientSession() as session:
            c = Client(s.url, session)
            alice = await c.register()
            room = await c.create_room(alice)
            eid = await send_ephemeral(c, alice, room, 1500)
            assert (await get_event(c, alice, room, eid))["content"]["body"]
    # Down while it falls due; the next process expires it when it starts.
    await asyncio.sleep(2.0)
    config = replace(config, listen_port=conftest.test_config(tmp_path).listen_port)
    async for s in start_server(config, fresh_database):
        async with aiohttp.ClientSession() as session:
            c = Client(s.url, session)
            ev = await wait_expired(c, alice, room, eid)
            assert ev["content"] == {}, ev


async def test_two_expirers_expire_each_event_once(fresh_database: str, tmp_path: Path) -> None:
    """Two processes on one database (here two expiry tasks with caches of their own, as two
    processes have) racing over the same due rows: each event is expired by exactly one."""
    from homeserver.events.store import EventStore, StateGroupStore
    from homeserver.rooms.expiry import EventExpiry
    from homeserver.rooms.expiry_store import ExpiryStore
    from homeserver.rooms.state import EventCache, RoomRegistry, StateGroups
    from homeserver.rooms.store import RoomStore
    from homeserver.storage.database import Database

    config = conftest.test_config(tmp_path, enable_ephemeral_messages=True)
    async for s in start_server(config, fresh_database):
        async with aiohttp.ClientSession() as session:
            c = Client(s.url, session)
            alice = await c.register()
            room = await c.create_room(alice)
            # Due in a minute: the server's own task leaves them alone meanwhile.
            ids = {await send_ephemeral(c, alice, room, 60_000, body=f"m{i}")
                   for i in range(250)}
        db = s.hs.db

        def expirer(db: Database = db) -> EventExpiry:
            cache = EventCache(db, EventStore(), RoomStore())
            rooms = RoomRegistry(db, RoomStore(), EventStore(), cache,
                                 StateGroups(db, StateGroupStore()))
            return EventExpiry(db, ExpiryStore(), cache, rooms,
                               clock=lambda: time.time() + 120)

        one, two = await asyncio.gather(expirer().expire_due(), expirer().expire_due())
        assert not set(one) & set(two)
        assert set(one) | set(two) == ids
        rows = await db.pool.fetch(
            "SELECT json::jsonb -> 'content' AS content FROM events"
            " WHERE event_id = ANY($1::text[])", list(ids))
        assert len(rows) == len(ids) and all(r["content"] == "{}" for r in rows)
        assert await db.pool.fetchval("SELECT count(*) FROM event_expiry") == 0
