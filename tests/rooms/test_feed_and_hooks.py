"""Background consumers of the event stream, and work that commits inside the persist
transaction, against the session's real server and database."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import pytest

from homeserver.rooms.feed import EventConsumer
from homeserver.rooms.writer import PersistEvent
from homeserver.storage.database import Conn
from tests.conftest import Server
from tests.helpers import Client


def _consumer(server: Server, name: str) -> EventConsumer:
    hs = server.hs
    return EventConsumer(name, hs.db, hs.writer._events, hs.rooms._cache, hs.event_stream,
                         batch_size=7)


async def test_a_consumer_reads_in_order_and_resumes_where_it_saved(c: Client,
                                                                    server: Server) -> None:
    alice = await c.register()
    room = await c.create_room(alice)
    name = "test-consumer-" + secrets.token_hex(4)
    first = _consumer(server, name)
    start = await first.position()  # a new consumer starts at the current position
    sent = [await c.send(alice, room, f"m{i}") for i in range(10)]
    seen: list[str] = []
    batch, upto = await first.next_batch()
    assert len(batch) == 7  # batch_size
    seen += [e.event_id for e in batch if e.room_id == room]
    await first.save(upto)
    # "Restart": a new consumer object with the same name resumes after the saved position.
    second = _consumer(server, name)
    assert await second.position() == upto > start
    while True:
        batch, upto = await second.next_batch()
        if not batch:
            break
        seen += [e.event_id for e in batch if e.room_id == room]
        await second.save(upto)
    assert seen == sent


async def test_a_consumer_waits_for_new_events(c: Client, server: Server) -> None:
    import asyncio

    alice = await c.register()
    room = await c.create_room(alice)
    consumer = _consumer(server, "waiter-" + secrets.token_hex(4))
    _, upto = await consumer.next_batch()
    while upto > await consumer.position():
        await consumer.save(upto)
        _, upto = await consumer.next_batch()
    waiting = asyncio.create_task(consumer.wait(timeout=5))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    event_id = await c.send(alice, room, "wake up")
    await asyncio.wait_for(waiting, 5)
    batch, _ = await consumer.next_batch()
    assert event_id in [e.event_id for e in batch]


async def test_a_persist_hook_commits_with_the_event_or_not_at_all(c: Client,
                                                                   server: Server) -> None:
    alice = await c.register()
    room_id = await c.create_room(alice)
    writer = server.hs.writer
    calls: list[str] = []
    ends: list[tuple[list[str], bool]] = []

    class Record:
        def wants(self, room: object, ev: PersistEvent) -> bool:
            return True

        async def write(self, conn: Conn, room: object,
                        events: Sequence[PersistEvent]) -> list[str]:
            calls.extend(ev.event_id for ev in events)
            await conn.execute("CREATE TEMP TABLE IF NOT EXISTS hook_probe (id TEXT)")
            if any(ev.pdu.get("content", {}).get("body") == "refuse" for ev in events):
                raise RuntimeError("the hook refuses this one")
            return [ev.event_id for ev in events]

        def finished(self, room: object, written: list[str], committed: bool) -> None:
            ends.append((written, committed))

    record = Record()
    writer._on_persist.append(record)
    try:
        ok = await c.send(alice, room_id, "fine")
        assert calls == [ok]
        assert ends == [([ok], True)]  # told after the commit
        status, body = await c.request(
            "PUT", f"/rooms/{room_id}/send/m.room.message/{secrets.token_hex(4)}",
            {"msgtype": "m.text", "body": "refuse"}, alice.access_token)
        assert status == 500 and len(calls) == 2
        refused = calls[1]
        assert len(ends) == 1  # a write that raised returned nothing to finish
    finally:
        writer._on_persist.remove(record)
    got = await server.hs.rooms._cache.get_many([refused])
    assert refused not in got  # rolled back with the hook's transaction
    status, page = await c.request("GET", f"/rooms/{room_id}/messages",
                                   token=alice.access_token, params={"dir": "b"})
    bodies = [e["content"].get("body") for e in page["chunk"]]
    assert "fine" in bodies and "refuse" not in bodies
    # The room keeps working after the failed write.
    assert await c.send(alice, room_id, "after")


@pytest.mark.parametrize("n", [3])
async def test_rooms_not_used_are_evicted_and_reload(c: Client, server: Server, n: int) -> None:
    registry = server.hs.rooms.rooms
    alice = await c.register()
    rooms = [await c.create_room(alice, name=f"r{i}") for i in range(n)]
    old = registry.size
    try:
        registry.size = 1
        registry._evict()
        assert sum(registry.loaded(r) is not None for r in rooms) <= 1
        for r in rooms:  # each reloads from the database, state intact
            status, name = await c.request("GET", f"/rooms/{r}/state/m.room.name",
                                           token=alice.access_token)
            assert status == 200 and name["name"] == f"r{rooms.index(r)}"
            await c.send(alice, r, "still works")
        before = len(registry._loaded)
        status, _ = await c.request("GET", "/rooms/!nope:parley.test/state",
                                    token=alice.access_token)
        assert status in (403, 404)
        assert len(registry._loaded) <= before and not registry._loading
    finally:
        registry.size = old
