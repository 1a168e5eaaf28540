"""A guest through matrix-nio: nio has no guest registration, so the guest registers over raw
HTTP and nio restores that session; then it joins a room that allows guests, talks, syncs and
sets its display name, and is refused what guests may not do."""

from __future__ import annotations

from collections.abc import Callable

from nio import (
    AsyncClient,
    JoinError,
    JoinResponse,
    ProfileSetDisplayNameResponse,
    RoomCreateError,
    RoomMessagesResponse,
    RoomPreset,
    RoomPutStateResponse,
    RoomSendResponse,
    SyncResponse,
)

from tests.e2e.conftest import NioFactory
from tests.helpers import Client


async def test_guest_with_nio(raw: Client, nio_user: NioFactory,
                              nio_client: Callable[..., AsyncClient]) -> None:
    alice = await nio_user("alice")
    status, reg = await raw.request("POST", "/register", {}, params={"kind": "guest"})
    assert status == 200, reg
    guest = nio_client(reg["user_id"], reg["device_id"])
    guest.restore_login(reg["user_id"], reg["device_id"], reg["access_token"])

    created = await alice.room_create(preset=RoomPreset.public_chat, name="Lobby")
    room_id = created.room_id
    refused = await guest.join(room_id)
    assert isinstance(refused, JoinError) and refused.status_code == "M_FORBIDDEN", refused
    opened = await alice.room_put_state(room_id, "m.room.guest_access",
                                        {"guest_access": "can_join"})
    assert isinstance(opened, RoomPutStateResponse), opened
    joined = await guest.join(room_id)
    assert isinstance(joined, JoinResponse), joined

    sent = await guest.room_send(room_id, "m.room.message",
                                 {"msgtype": "m.text", "body": "hello as a guest"})
    assert isinstance(sent, RoomSendResponse), sent
    named = await guest.set_displayname("Visitor")
    assert isinstance(named, ProfileSetDisplayNameResponse), named
    synced = await guest.sync(timeout=0)
    assert isinstance(synced, SyncResponse), synced
    assert room_id in synced.rooms.join
    bodies = [getattr(e, "body", None) for e in synced.rooms.join[room_id].timeline.events]
    assert "hello as a guest" in bodies
    history = await alice.room_messages(room_id, start="", limit=10)
    assert isinstance(history, RoomMessagesResponse), history
    assert any(getattr(e, "sender", None) == guest.user_id for e in history.chunk)

    denied = await guest.room_create(name="mine")
    assert isinstance(denied, RoomCreateError), denied
    assert denied.status_code == "M_GUEST_ACCESS_FORBIDDEN"
