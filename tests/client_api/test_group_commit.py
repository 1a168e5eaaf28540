"""Messages sent to one room at the same time are written as one group commit; each must still
get its own event, in one linear DAG, with per-message failures kept to that message."""

from __future__ import annotations

import asyncio
import secrets

from tests.conftest import Server
from tests.helpers import Client


async def _room_pdus(server: Server, room_id: str) -> list[dict[str, object]]:
    room = await server.hs.rooms.get_room(room_id)
    return [e.pdu for e in room.recent]


async def test_concurrent_sends_form_one_linear_dag(c: Client, server: Server) -> None:
    users = [await c.register() for _ in range(5)]
    room = await c.create_room(users[0], preset="public_chat")
    for u in users[1:]:
        await c.join(u, room)
    texts = [f"m{i}" for i in range(60)]
    ids = await asyncio.gather(*(c.send(users[i % 5], room, t) for i, t in enumerate(texts)))
    assert len(set(ids)) == 60

    pdus = await _room_pdus(server, room)
    messages = [p for p in pdus if p["type"] == "m.room.message"]
    assert sorted(str(p["content"]["body"]) for p in messages) == sorted(texts)  # type: ignore[index]
    # One chain: every event's only parent is the event before it, depth +1 each step.
    for prev, ev in zip(pdus, pdus[1:], strict=False):
        assert ev["depth"] == prev["depth"] + 1  # type: ignore[operator]
    room_data = await server.hs.rooms.get_room(room)
    assert room_data.extremities == [room_data.recent[-1].event_id]

    status, page = await c.request("GET", f"/rooms/{room}/messages",
                                   params={"dir": "b", "limit": "60"},
                                   token=users[0].access_token)
    assert status == 200
    assert {e["event_id"] for e in page["chunk"]} == set(ids)


async def test_duplicate_txn_and_oversized_message_fail_alone(c: Client) -> None:
    alice = await c.register()
    room = await c.create_room(alice)
    path = f"/rooms/{room}/send/m.room.message/"
    dup = "dup" + secrets.token_hex(4)
    big = {"msgtype": "m.text", "body": "x" * 70_000}

    async def send(txn: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
        return await c.request("PUT", path + txn, body, alice.access_token)

    calls = [send(f"ok{i}", {"msgtype": "m.text", "body": f"ok{i}"}) for i in range(20)]
    calls += [send(dup, {"msgtype": "m.text", "body": "dup"}) for _ in range(4)]
    calls.append(send("big", big))
    results = await asyncio.gather(*calls)

    ok = results[:20]
    assert all(s == 200 for s, _ in ok)
    dups = results[20:24]
    assert all(s == 200 for s, _ in dups)
    assert len({b["event_id"] for _, b in dups}) == 1
    status, body = results[24]
    assert status == 413 and body["errcode"] == "M_TOO_LARGE"

    status, page = await c.request("GET", f"/rooms/{room}/messages",
                                   params={"dir": "b", "limit": "100",
                                           "filter": '{"types":["m.room.message"]}'},
                                   token=alice.access_token)
    bodies = sorted(e["content"]["body"] for e in page["chunk"])
    assert bodies == sorted([f"ok{i}" for i in range(20)] + ["dup"])
