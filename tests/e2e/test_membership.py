"""Kick, ban, unban, leave and forget rules through matrix-nio's membership calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nio import (
    AsyncClient,
    ErrorResponse,
    JoinedMembersResponse,
    JoinedRoomsResponse,
    JoinError,
    JoinResponse,
    RoomBanResponse,
    RoomCreateResponse,
    RoomForgetResponse,
    RoomGetStateResponse,
    RoomKickResponse,
    RoomLeaveResponse,
    RoomMessagesResponse,
    RoomPreset,
    RoomSendResponse,
    RoomUnbanResponse,
    RoomVisibility,
    SyncResponse,
)

from tests.e2e.conftest import NioFactory


def forbidden(resp: Any) -> None:
    assert isinstance(resp, ErrorResponse), resp
    assert resp.status_code == "M_FORBIDDEN", resp


async def joined(c: AsyncClient, room_id: str) -> set[str]:
    resp = await c.joined_members(room_id)
    assert isinstance(resp, JoinedMembersResponse), resp
    return {m.user_id for m in resp.members}


async def membership_of(c: AsyncClient, room_id: str, user_id: str) -> str:
    state = await c.room_get_state(room_id)
    assert isinstance(state, RoomGetStateResponse), state
    [ev] = [e for e in state.events
            if e["type"] == "m.room.member" and e["state_key"] == user_id]
    return str(ev["content"]["membership"])


async def setup_room(nio_user: NioFactory, n: int) -> tuple[str, list[AsyncClient]]:
    clients = [await nio_user(p) for p in ("alice", "bob", "carol", "dave")[:n]]
    created = await clients[0].room_create(visibility=RoomVisibility.public,
                                           preset=RoomPreset.public_chat)
    assert isinstance(created, RoomCreateResponse), created
    for c in clients[1:]:
        assert isinstance(await c.join(created.room_id), JoinResponse)
    return created.room_id, clients


async def test_kick_and_ban_power(nio_user: NioFactory) -> None:
    room_id, (alice, bob, carol) = await setup_room(nio_user, 3)
    assert await joined(alice, room_id) == {alice.user_id, bob.user_id, carol.user_id}

    # A normal member (power 0) may neither kick nor ban; nothing changes.
    forbidden(await bob.room_kick(room_id, carol.user_id, reason="no"))
    forbidden(await bob.room_ban(room_id, carol.user_id))
    forbidden(await bob.room_ban(room_id, alice.user_id))
    assert await joined(alice, room_id) == {alice.user_id, bob.user_id, carol.user_id}

    # The creator (power 100) can kick; the kicked user may rejoin a public room.
    bob_mark = await bob.sync(timeout=0)
    assert isinstance(bob_mark, SyncResponse)
    kicked = await alice.room_kick(room_id, bob.user_id, reason="behave")
    assert isinstance(kicked, RoomKickResponse), kicked
    assert await joined(alice, room_id) == {alice.user_id, carol.user_id}
    assert await membership_of(alice, room_id, bob.user_id) == "leave"
    after_kick = await bob.sync(timeout=0, since=bob_mark.next_batch)
    assert isinstance(after_kick, SyncResponse), after_kick
    assert room_id in after_kick.rooms.leave and room_id not in after_kick.rooms.join
    [kick_ev] = [e.source for e in after_kick.rooms.leave[room_id].timeline.events
                 if e.source["type"] == "m.room.member"]
    assert kick_ev["sender"] == alice.user_id and kick_ev["state_key"] == bob.user_id
    assert kick_ev["content"]["membership"] == "leave"
    assert kick_ev["content"]["reason"] == "behave"
    # Bob can no longer send.
    forbidden(await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "x"}))
    rejoined = await bob.join(room_id)
    assert isinstance(rejoined, JoinResponse), rejoined
    assert await joined(alice, room_id) == {alice.user_id, bob.user_id, carol.user_id}

    # A banned user cannot join until unbanned.
    banned = await alice.room_ban(room_id, carol.user_id, reason="spam")
    assert isinstance(banned, RoomBanResponse), banned
    assert await membership_of(alice, room_id, carol.user_id) == "ban"
    refused = await carol.join(room_id)
    assert isinstance(refused, JoinError), refused
    assert refused.status_code == "M_FORBIDDEN"
    assert await membership_of(alice, room_id, carol.user_id) == "ban"
    # Only a user with ban power may unban.
    forbidden(await bob.room_unban(room_id, carol.user_id))
    unbanned = await alice.room_unban(room_id, carol.user_id)
    assert isinstance(unbanned, RoomUnbanResponse), unbanned
    assert await membership_of(alice, room_id, carol.user_id) == "leave"
    assert isinstance(await carol.join(room_id), JoinResponse)
    assert await joined(alice, room_id) == {alice.user_id, bob.user_id, carol.user_id}


async def initial_sync(nio_client: Callable[..., AsyncClient], c: AsyncClient,
                       sync_filter: dict[str, Any]) -> SyncResponse:
    """A sync without `since` (nio reuses its own next_batch, so use a second client object
    on the same session)."""
    fresh = nio_client()
    fresh.restore_login(c.user_id, c.device_id, c.access_token)
    resp = await fresh.sync(timeout=0, sync_filter=sync_filter)
    assert isinstance(resp, SyncResponse), resp
    return resp


async def test_leave_stops_delivery_then_forget(
        nio_user: NioFactory, nio_client: Callable[..., AsyncClient]) -> None:
    room_id, (alice, bob) = await setup_room(nio_user, 2)
    mark = await bob.sync(timeout=0)
    assert isinstance(mark, SyncResponse), mark
    before = await alice.room_send(room_id, "m.room.message",
                                   {"msgtype": "m.text", "body": "before leave"})
    assert isinstance(before, RoomSendResponse)

    # Forgetting a room one is still in is refused.
    still_in = await bob.room_forget(room_id)
    assert isinstance(still_in, ErrorResponse), still_in

    left = await bob.room_leave(room_id)
    assert isinstance(left, RoomLeaveResponse), left
    after = await alice.room_send(room_id, "m.room.message",
                                  {"msgtype": "m.text", "body": "after leave"})
    assert isinstance(after, RoomSendResponse)

    resp = await bob.sync(timeout=0, since=mark.next_batch)
    assert isinstance(resp, SyncResponse), resp
    assert room_id not in resp.rooms.join
    assert list(resp.rooms.leave) == [room_id]
    events = [e.source for e in resp.rooms.leave[room_id].timeline.events]
    assert [e["event_id"] for e in events][-1] == \
        [e["event_id"] for e in events if e["type"] == "m.room.member"][-1]
    assert events[-1]["state_key"] == bob.user_id
    assert events[-1]["content"]["membership"] == "leave"
    bodies = [e["content"].get("body") for e in events if e["type"] == "m.room.message"]
    assert bodies == ["before leave"]

    # New messages never reach bob again, and the room does not come back.
    await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "later"})
    nxt = await bob.sync(timeout=200, since=resp.next_batch)
    assert isinstance(nxt, SyncResponse), nxt
    assert room_id not in nxt.rooms.join and room_id not in nxt.rooms.leave
    rooms = await bob.joined_rooms()
    assert isinstance(rooms, JoinedRoomsResponse) and room_id not in rooms.rooms
    forbidden(await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "x"}))

    # With include_leave, a fresh sync lists the left room until it is forgotten.
    with_leave = {"room": {"include_leave": True}}
    full = await initial_sync(nio_client, bob, with_leave)
    assert room_id in full.rooms.leave and room_id not in full.rooms.join
    assert [e.source["content"].get("body") for e in full.rooms.leave[room_id].timeline.events
            if e.source["type"] == "m.room.message"] == ["before leave"]
    plain = await initial_sync(nio_client, bob, {})
    assert room_id not in plain.rooms.leave and room_id not in plain.rooms.join
    # Before forgetting, bob may still read the history he was allowed to see.
    hist = await bob.room_messages(room_id, start=resp.next_batch, limit=50)
    assert isinstance(hist, RoomMessagesResponse), hist
    bodies = [e.source["content"].get("body") for e in hist.chunk
              if e.source["type"] == "m.room.message"]
    assert bodies == ["before leave"]
    forgot = await bob.room_forget(room_id)
    assert isinstance(forgot, RoomForgetResponse), forgot
    full = await initial_sync(nio_client, bob, with_leave)
    assert room_id not in full.rooms.leave and room_id not in full.rooms.join
    # ...and he can no longer retrieve its history.
    forbidden(await bob.room_messages(room_id, start=resp.next_batch, limit=50))
    # Alice still sees bob's leave; the room itself is unaffected.
    assert await joined(alice, room_id) == {alice.user_id}
    assert await membership_of(alice, room_id, bob.user_id) == "leave"
