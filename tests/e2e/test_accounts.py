"""Registration, two devices of one user, whoami and sync through matrix-nio."""

from __future__ import annotations

from collections.abc import Callable

from nio import (
    AsyncClient,
    DevicesResponse,
    RegisterResponse,
    RoomCreateResponse,
    SyncResponse,
    WhoamiResponse,
)

from tests.conftest import Server
from tests.e2e.conftest import PASSWORD, new_name, nio_login


async def test_register_two_devices_whoami_sync(
        server: Server, nio_client: Callable[..., AsyncClient]) -> None:
    localpart = new_name("acct")
    reg = nio_client()
    resp = await reg.register(localpart, PASSWORD, device_name="registering device")
    assert isinstance(resp, RegisterResponse), resp
    user_id = f"@{localpart}:{server.config.server_name}"
    assert resp.user_id == user_id
    assert resp.device_id and resp.access_token
    assert reg.access_token == resp.access_token

    dev_a = await nio_login(nio_client, user_id, "DEVICEA")
    dev_b = await nio_login(nio_client, user_id, "DEVICEB")
    tokens = {resp.access_token, dev_a.access_token, dev_b.access_token}
    assert len(tokens) == 3

    for client, device in ((dev_a, "DEVICEA"), (dev_b, "DEVICEB"),
                           (reg, resp.device_id)):
        who = await client.whoami()
        assert isinstance(who, WhoamiResponse), who
        assert who.user_id == user_id
        assert who.device_id == device
        assert who.is_guest is False

    devices = await dev_a.devices()
    assert isinstance(devices, DevicesResponse), devices
    assert {d.id for d in devices.devices} == {"DEVICEA", "DEVICEB", resp.device_id}

    # Each device syncs on its own; a room made on one device shows up on the other.
    first_a = await dev_a.sync(timeout=0)
    first_b = await dev_b.sync(timeout=0)
    assert isinstance(first_a, SyncResponse), first_a
    assert isinstance(first_b, SyncResponse), first_b
    assert first_a.next_batch and first_b.next_batch
    assert first_a.rooms.join == {} and first_b.rooms.join == {}

    created = await dev_a.room_create(name="mine")
    assert isinstance(created, RoomCreateResponse), created
    nxt_b = await dev_b.sync(timeout=5000, since=first_b.next_batch)
    assert isinstance(nxt_b, SyncResponse), nxt_b
    assert list(nxt_b.rooms.join) == [created.room_id]
    types = [e.source["type"] for e in nxt_b.rooms.join[created.room_id].timeline.events]
    assert types[0] == "m.room.create"
    nxt_a = await dev_a.sync(timeout=0, since=first_a.next_batch)
    assert isinstance(nxt_a, SyncResponse), nxt_a
    assert list(nxt_a.rooms.join) == [created.room_id]
    # Both devices have caught up: a further sync with a short timeout is empty.
    again = await dev_b.sync(timeout=100, since=nxt_b.next_batch)
    assert isinstance(again, SyncResponse), again
    assert again.rooms.join == {}
