"""Idempotent sends: a repeated (device, txn id) returns the first event id and stores one event."""

from __future__ import annotations

import asyncio

from nio import RoomCreateResponse, RoomMessagesResponse, RoomSendResponse

from tests.e2e.conftest import PASSWORD, NioFactory
from tests.helpers import Client


async def test_idempotent_send(raw: Client, nio_user: NioFactory) -> None:
    alice = await nio_user("alice")
    created = await alice.room_create()
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    content = {"msgtype": "m.text", "body": "once"}
    first = await alice.room_send(room_id, "m.room.message", content, tx_id="same-txn")
    again = await alice.room_send(room_id, "m.room.message", content, tx_id="same-txn")
    assert isinstance(first, RoomSendResponse) and isinstance(again, RoomSendResponse)
    assert first.event_id == again.event_id

    # Two requests racing with one new txn id also give one event.
    token = alice.access_token
    path = f"/rooms/{room_id}/send/m.room.message/race-txn"
    results = await asyncio.gather(*(raw.request("PUT", path, {"msgtype": "m.text",
                                                              "body": "raced"}, token)
                                     for _ in range(5)))
    assert all(s == 200 for s, _ in results), results
    raced = {d["event_id"] for _, d in results}
    assert len(raced) == 1

    # The txn id is per device: the same id from another device is a new event.
    other = await raw.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": PASSWORD, "device_id": "OTHERDEV"})
    assert other[0] == 200, other
    status, data = await raw.request("PUT", f"/rooms/{room_id}/send/m.room.message/same-txn",
                                     content, other[1]["access_token"])
    assert status == 200, data
    assert data["event_id"] != first.event_id

    msgs = await alice.room_messages(room_id, limit=50)
    assert isinstance(msgs, RoomMessagesResponse), msgs
    texts = [(e.event_id, e.source["content"]["body"]) for e in msgs.chunk
             if e.source["type"] == "m.room.message"]
    assert texts == [(data["event_id"], "once"), (raced.pop(), "raced"), (first.event_id, "once")]
