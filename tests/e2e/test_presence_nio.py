"""Presence through matrix-nio: set_presence/get_presence, and PresenceEvent in sync for a
co-member (and the presence callback nio offers applications)."""

from __future__ import annotations

from nio import (
    AsyncClient,
    JoinResponse,
    PresenceEvent,
    PresenceGetError,
    PresenceGetResponse,
    PresenceSetResponse,
    RoomCreateResponse,
    RoomPreset,
    SyncResponse,
)

from tests.e2e.conftest import NioFactory


async def shared_room(alice: AsyncClient, bob: AsyncClient) -> str:
    created = await alice.room_create(preset=RoomPreset.public_chat)
    assert isinstance(created, RoomCreateResponse), created
    joined = await bob.join(created.room_id)
    assert isinstance(joined, JoinResponse), joined
    return created.room_id


async def test_set_and_get_presence(nio_user: NioFactory) -> None:
    alice = await nio_user("alice")
    bob = await nio_user("bob")
    carol = await nio_user("carol")
    await shared_room(alice, bob)

    resp = await alice.set_presence("unavailable", "lunch")
    assert isinstance(resp, PresenceSetResponse), resp
    got = await bob.get_presence(alice.user_id)
    assert isinstance(got, PresenceGetResponse), got
    assert (got.presence, got.status_msg, got.currently_active) == ("unavailable", "lunch", False)
    assert got.last_active_ago is not None and got.last_active_ago >= 0

    assert isinstance(await alice.set_presence("online"), PresenceSetResponse)
    got = await alice.get_presence(alice.user_id)
    assert isinstance(got, PresenceGetResponse), got
    assert (got.presence, got.currently_active, got.status_msg) == ("online", True, None)

    # carol shares no room with alice: not allowed to look.
    denied = await carol.get_presence(alice.user_id)
    assert isinstance(denied, PresenceGetError), denied
    assert denied.status_code == "M_FORBIDDEN"


async def test_presence_event_in_sync(nio_user: NioFactory) -> None:
    alice = await nio_user("alice")
    bob = await nio_user("bob")
    await shared_room(alice, bob)
    first = await bob.sync(timeout=0)
    assert isinstance(first, SyncResponse), first

    seen: list[PresenceEvent] = []

    async def on_presence(event: PresenceEvent) -> None:
        seen.append(event)

    bob.add_presence_callback(on_presence, PresenceEvent)
    assert isinstance(await alice.set_presence("online", "coding"), PresenceSetResponse)
    resp = await bob.sync(timeout=5_000)
    assert isinstance(resp, SyncResponse), resp
    mine = [e for e in resp.presence_events if e.user_id == alice.user_id]
    assert [(e.presence, e.status_msg, e.currently_active) for e in mine] == [
        ("online", "coding", True)]
    assert any(e.user_id == alice.user_id and e.status_msg == "coding" for e in seen)

    # alice's own sync carries her own presence on an initial sync.
    own = await alice.sync(timeout=0)
    assert isinstance(own, SyncResponse), own
    assert any(e.user_id == alice.user_id and e.presence == "online"
               for e in own.presence_events)
