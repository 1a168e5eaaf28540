"""Offline delivery with a since token, and /messages paging back to the room's creation and
forward again to the newest event, through matrix-nio."""

from __future__ import annotations

from typing import Any

from nio import (
    AsyncClient,
    JoinResponse,
    MessageDirection,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
)

from tests.e2e.conftest import NioFactory

BIG = {"room": {"timeline": {"limit": 100}}}


async def send_text(c: AsyncClient, room_id: str, body: str) -> str:
    resp = await c.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


async def test_offline_delivery_in_order(nio_user: NioFactory) -> None:
    alice = await nio_user("alice")
    bob = await nio_user("bob")
    created = await alice.room_create(preset=RoomPreset.public_chat)
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    assert isinstance(await bob.join(room_id), JoinResponse)
    mark = await bob.sync(timeout=0, sync_filter=BIG)
    assert isinstance(mark, SyncResponse), mark
    assert room_id in mark.rooms.join

    # Bob is offline (no sync running) while alice sends five messages.
    sent = [await send_text(alice, room_id, f"offline {i}") for i in range(5)]

    caught_up = await bob.sync(timeout=0, since=mark.next_batch, sync_filter=BIG)
    assert isinstance(caught_up, SyncResponse), caught_up
    tl = caught_up.rooms.join[room_id].timeline
    assert [e.event_id for e in tl.events] == sent
    assert [e.source["content"]["body"] for e in tl.events] == [f"offline {i}" for i in range(5)]
    assert all(e.sender == alice.user_id for e in tl.events)
    assert tl.limited is False

    # With a small limit he gets the newest ones and is told the timeline was cut.
    small = await bob.sync(timeout=0, since=mark.next_batch,
                           sync_filter={"room": {"timeline": {"limit": 2}}})
    assert isinstance(small, SyncResponse), small
    tl = small.rooms.join[room_id].timeline
    assert [e.event_id for e in tl.events] == sent[-2:]
    assert tl.limited is True

    # Nothing new after catching up.
    again = await bob.sync(timeout=0, since=caught_up.next_batch, sync_filter=BIG)
    assert isinstance(again, SyncResponse), again
    assert room_id not in again.rooms.join


def ids(events: list[Any]) -> list[str]:
    return [e.event_id for e in events]


async def page(c: AsyncClient, room_id: str, start: str,
               direction: MessageDirection) -> RoomMessagesResponse:
    resp = await c.room_messages(room_id, start=start, direction=direction, limit=10)
    assert isinstance(resp, RoomMessagesResponse), resp
    assert len(resp.chunk) <= 10
    return resp


async def test_history_paging_both_directions(nio_user: NioFactory) -> None:
    alice = await nio_user("alice")
    created = await alice.room_create(name="history", topic="paging",
                                      preset=RoomPreset.private_chat)
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    sent = [await send_text(alice, room_id, f"msg {i}") for i in range(60)]

    synced = await alice.sync(timeout=0, sync_filter={"room": {"timeline": {"limit": 10}}})
    assert isinstance(synced, SyncResponse), synced
    tl = synced.rooms.join[room_id].timeline
    assert ids(tl.events) == sent[-10:]
    assert tl.limited is True

    # Backwards from the sync's prev_batch, 10 at a time, until the server says there is no more.
    back: list[Any] = []
    token = tl.prev_batch
    last_end = None
    seen_at_last_end = 0
    pages = 0
    while True:
        resp = await page(alice, room_id, token, MessageDirection.back)
        pages += 1
        assert pages < 20, "pagination does not terminate"
        back.extend(resp.chunk)
        if resp.end is None:
            break
        assert resp.chunk, "a page with an end token must not be empty"
        last_end = resp.end
        seen_at_last_end = len(back)
        token = resp.end
    assert pages >= 6

    back_ids = ids(back)
    assert len(back_ids) == len(set(back_ids)), "an event was returned twice"
    messages = [e.event_id for e in back if e.source["type"] == "m.room.message"]
    assert messages == list(reversed(sent[:-10])), "messages missing or out of order"
    # The history reaches the room's creation: the create event is the oldest of all.
    assert back[-1].source["type"] == "m.room.create"
    assert back[-1].source["content"].get("room_version")
    state_types = {e.source["type"] for e in back[-10:]}
    assert {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules",
            "m.room.name", "m.room.topic"} <= state_types
    # Newest first, every page: origin_server_ts never increases going back.
    ts = [e.server_timestamp for e in back]
    assert ts == sorted(ts, reverse=True)

    # Forwards from the last `end` token back up to the newest event.
    assert last_end is not None
    forward: list[Any] = []
    token = last_end
    pages = 0
    while True:
        resp = await page(alice, room_id, token, MessageDirection.front)
        pages += 1
        assert pages < 20, "pagination does not terminate"
        forward.extend(resp.chunk)
        if resp.end is None:
            break
        assert resp.chunk, "a page with an end token must not be empty"
        token = resp.end
    fwd_ids = ids(forward)
    assert len(fwd_ids) == len(set(fwd_ids))
    # A token is a position between events: forwards from the last page's `end` starts with
    # that page's oldest event, then walks everything we paged back over, then the sync's
    # timeline, oldest first.
    expected = list(reversed(back_ids[:seen_at_last_end])) + sent[-10:]
    assert fwd_ids == expected
    assert fwd_ids[-1] == sent[-1]
    # From the sync's next_batch (the newest position) there is nothing further forwards,
    # and backwards from it the newest messages come first.
    tail = await page(alice, room_id, synced.next_batch, MessageDirection.front)
    assert tail.chunk == []
    head = await page(alice, room_id, synced.next_batch, MessageDirection.back)
    assert ids(head.chunk) == list(reversed(sent[-10:]))
