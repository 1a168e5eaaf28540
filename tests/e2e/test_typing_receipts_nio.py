"""Typing notices, receipts and read markers through matrix-nio: what nio sends is accepted, and
what the server syncs back is parsed by nio into its own event classes and room state."""

from __future__ import annotations

import asyncio
import time

from nio import (
    AsyncClient,
    JoinResponse,
    ReceiptEvent,
    RoomCreateResponse,
    RoomPreset,
    RoomReadMarkersResponse,
    RoomSendResponse,
    RoomTypingResponse,
    SyncResponse,
    TypingNoticeEvent,
    UpdateReceiptMarkerResponse,
)
from nio.api import ReceiptType

from tests.e2e.conftest import NioFactory

TEXT = "m.room.message"


async def setup_room(nio_user: NioFactory) -> tuple[AsyncClient, AsyncClient, str]:
    alice = await nio_user("alice")
    bob = await nio_user("bob")
    created = await alice.room_create(preset=RoomPreset.public_chat)
    assert isinstance(created, RoomCreateResponse), created
    joined = await bob.join(created.room_id)
    assert isinstance(joined, JoinResponse), joined
    for c in (alice, bob):
        assert isinstance(await c.sync(timeout=0), SyncResponse)
    return alice, bob, created.room_id


def ephemeral(resp: SyncResponse | object, room_id: str) -> list[object]:
    assert isinstance(resp, SyncResponse), resp
    room = resp.rooms.join.get(room_id)
    return list(room.ephemeral) if room is not None else []


async def send_text(c: AsyncClient, room_id: str, body: str,
                    thread_root: str | None = None) -> str:
    content: dict[str, object] = {"msgtype": "m.text", "body": body}
    if thread_root is not None:
        content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread_root}
    resp = await c.room_send(room_id, TEXT, content)
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


async def test_typing_through_nio(nio_user: NioFactory) -> None:
    alice, bob, room_id = await setup_room(nio_user)

    async def type_later() -> None:
        await asyncio.sleep(0.3)
        resp = await alice.room_typing(room_id, typing_state=True, timeout=800)
        assert isinstance(resp, RoomTypingResponse), resp

    task = asyncio.create_task(type_later())
    started = time.monotonic()
    woke = await bob.sync(timeout=10000, since=bob.next_batch)
    await task
    assert time.monotonic() - started < 2.0  # the notice woke bob's parked long-poll
    notices = [e for e in ephemeral(woke, room_id) if isinstance(e, TypingNoticeEvent)]
    assert [n.users for n in notices] == [[alice.user_id]]
    assert bob.rooms[room_id].typing_users == [alice.user_id]

    # It runs out by itself (0.8 s) and bob's next long-poll hears of it.
    expired = await bob.sync(timeout=5000, since=bob.next_batch)
    notices = [e for e in ephemeral(expired, room_id) if isinstance(e, TypingNoticeEvent)]
    assert [n.users for n in notices] == [[]]
    assert bob.rooms[room_id].typing_users == []

    # Explicit stop.
    assert isinstance(await alice.room_typing(room_id, True, 30000), RoomTypingResponse)
    await bob.sync(timeout=5000, since=bob.next_batch)
    assert bob.rooms[room_id].typing_users == [alice.user_id]
    assert isinstance(await alice.room_typing(room_id, False), RoomTypingResponse)
    await bob.sync(timeout=5000, since=bob.next_batch)
    assert bob.rooms[room_id].typing_users == []


async def test_receipts_and_read_markers_through_nio(nio_user: NioFactory) -> None:
    alice, bob, room_id = await setup_room(nio_user)
    first = await send_text(alice, room_id, "first")
    second = await send_text(alice, room_id, "second")
    await alice.sync(timeout=0, since=alice.next_batch)

    # nio's default receipt is threaded on "main".
    resp = await bob.update_receipt_marker(room_id, first)
    assert isinstance(resp, UpdateReceiptMarkerResponse), resp
    got = await alice.sync(timeout=5000, since=alice.next_batch)
    receipts = [r for e in ephemeral(got, room_id) if isinstance(e, ReceiptEvent)
                for r in e.receipts]
    assert [(r.event_id, r.receipt_type, r.user_id, r.thread_id) for r in receipts] == [
        (first, "m.read", bob.user_id, "main")]
    assert receipts[0].timestamp > 0

    # Read markers: m.fully_read lands in bob's room account data, m.read.private only in
    # bob's own sync.
    resp2 = await bob.room_read_markers(room_id, fully_read_event=second,
                                        private_read_event=second)
    assert isinstance(resp2, RoomReadMarkersResponse), resp2
    mine = await bob.sync(timeout=5000, since=bob.next_batch)
    own = [r for e in ephemeral(mine, room_id) if isinstance(e, ReceiptEvent)
           for r in e.receipts]
    assert (second, "m.read.private", bob.user_id) in [
        (r.event_id, r.receipt_type, r.user_id) for r in own]
    assert bob.rooms[room_id].fully_read_marker == second
    theirs = await alice.sync(timeout=0, since=alice.next_batch)
    assert not [e for e in ephemeral(theirs, room_id) if isinstance(e, ReceiptEvent)]

    # A receipt inside a thread carries the thread root.
    reply = await send_text(alice, room_id, "in thread", thread_root=first)
    resp3 = await bob.update_receipt_marker(room_id, reply, ReceiptType.read, thread_id=first)
    assert isinstance(resp3, UpdateReceiptMarkerResponse), resp3
    threaded = await alice.sync(timeout=5000, since=alice.next_batch)
    receipts = [r for e in ephemeral(threaded, room_id) if isinstance(e, ReceiptEvent)
                for r in e.receipts]
    assert [(r.event_id, r.user_id, r.thread_id) for r in receipts] == [
        (reply, bob.user_id, first)]
