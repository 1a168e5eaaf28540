"""Knocking through matrix-nio: enable knocking, knock, get invited, join."""

from __future__ import annotations

from nio import (
    JoinedRoomsResponse,
    JoinResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomKnockError,
    RoomKnockResponse,
    RoomPreset,
    RoomPutStateResponse,
    SyncResponse,
)

from tests.e2e.conftest import NioFactory


async def test_knock_invite_join(nio_user: NioFactory) -> None:
    alice, bob = await nio_user("alice"), await nio_user("bob")
    created = await alice.room_create(preset=RoomPreset.private_chat, name="Knockable")
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id

    # An invite-only room refuses knocks until knocking is enabled.
    refused = await bob.room_knock(room_id, reason="hello?")
    assert isinstance(refused, RoomKnockError), refused
    assert refused.status_code == "M_FORBIDDEN"
    enabled = await alice.room_enable_knocking(room_id)
    assert isinstance(enabled, RoomPutStateResponse), enabled

    mark = await bob.sync(timeout=0)
    assert isinstance(mark, SyncResponse), mark
    knocked = await bob.room_knock(room_id, reason="please")
    assert isinstance(knocked, RoomKnockResponse), knocked
    assert knocked.room_id == room_id
    # nio does not model the `knock` section, but the response with one still parses.
    after = await bob.sync(timeout=0, since=mark.next_batch)
    assert isinstance(after, SyncResponse), after
    assert room_id not in after.rooms.join and room_id not in after.rooms.invite

    invited = await alice.room_invite(room_id, bob.user_id)
    assert isinstance(invited, RoomInviteResponse), invited
    got_invite = await bob.sync(timeout=0, since=after.next_batch)
    assert isinstance(got_invite, SyncResponse), got_invite
    assert room_id in got_invite.rooms.invite
    joined = await bob.join(room_id)
    assert isinstance(joined, JoinResponse), joined
    rooms = await bob.joined_rooms()
    assert isinstance(rooms, JoinedRoomsResponse), rooms
    assert room_id in rooms.rooms
