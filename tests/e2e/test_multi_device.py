"""One user on two devices through matrix-nio: separate sync positions, messages from one device
seen on the other, to-device messages between them, and logout of one device."""

from __future__ import annotations

from collections.abc import Callable

from nio import (
    AsyncClient,
    LogoutResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
    ToDeviceMessage,
    ToDeviceResponse,
    UnknownToDeviceEvent,
)

from tests.conftest import Server
from tests.e2e.conftest import NioFactory, nio_login
from tests.helpers import Client

TYPE = "org.parley.test.ping"


async def synced(client: AsyncClient, timeout: int = 0) -> SyncResponse:
    resp = await client.sync(timeout=timeout)  # nio continues from the client's own next_batch
    assert isinstance(resp, SyncResponse), resp
    return resp


def texts(resp: SyncResponse, room_id: str) -> list[str]:
    room = resp.rooms.join.get(room_id)
    if room is None:
        return []
    return [e.body for e in room.timeline.events if isinstance(e, RoomMessageText)]


def pings(resp: SyncResponse) -> list[UnknownToDeviceEvent]:
    return [e for e in resp.to_device_events
            if isinstance(e, UnknownToDeviceEvent) and e.type == TYPE]


async def test_each_device_has_its_own_sync_position(
        nio_user: NioFactory, nio_client: Callable[..., AsyncClient]) -> None:
    phone = await nio_user("multi")
    laptop = await nio_login(nio_client, phone.user_id, "LAPTOP")
    assert phone.device_id != laptop.device_id
    created = await phone.room_create(name="notes")
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    await synced(phone)
    await synced(laptop)

    sent = await phone.room_send(room_id, "m.room.message", {"msgtype": "m.text",
                                                             "body": "from the phone"})
    assert isinstance(sent, RoomSendResponse), sent
    # The laptop sees the phone's message, and consuming it there does not move the phone.
    on_laptop = await synced(laptop, timeout=5000)
    assert texts(on_laptop, room_id) == ["from the phone"]
    assert texts(await synced(laptop), room_id) == []
    on_phone = await synced(phone, timeout=5000)
    assert texts(on_phone, room_id) == ["from the phone"]
    assert on_phone.rooms.join[room_id].timeline.events[-1].event_id == sent.event_id

    sent = await laptop.room_send(room_id, "m.room.message", {"msgtype": "m.text",
                                                              "body": "from the laptop"})
    assert isinstance(sent, RoomSendResponse), sent
    assert texts(await synced(phone, timeout=5000), room_id) == ["from the laptop"]
    assert texts(await synced(laptop, timeout=5000), room_id) == ["from the laptop"]


async def test_to_device_between_two_devices_of_one_user(
        nio_user: NioFactory, nio_client: Callable[..., AsyncClient]) -> None:
    phone = await nio_user("td")
    laptop = await nio_login(nio_client, phone.user_id, "LAPTOP")
    await synced(phone)
    await synced(laptop)

    for n in range(3):
        resp = await phone.to_device(ToDeviceMessage(TYPE, phone.user_id, "LAPTOP", {"n": n}))
        assert isinstance(resp, ToDeviceResponse), resp
    got = pings(await synced(laptop, timeout=5000))
    assert [e.source["content"] for e in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(e.sender == phone.user_id for e in got)
    # Exactly once, and only to the device it was addressed to.
    assert pings(await synced(laptop)) == []
    assert pings(await synced(phone)) == []

    # `*` reaches both devices, the sender's own included.
    resp = await laptop.to_device(ToDeviceMessage(TYPE, phone.user_id, "*", {"all": True}))
    assert isinstance(resp, ToDeviceResponse), resp
    for device in (phone, laptop):
        assert [e.source["content"] for e in pings(await synced(device, timeout=5000))] == [
            {"all": True}]


async def test_logout_kills_the_token_and_pending_messages(
        server: Server, raw: Client, nio_user: NioFactory,
        nio_client: Callable[..., AsyncClient]) -> None:
    phone = await nio_user("bye")
    laptop = await nio_login(nio_client, phone.user_id, "LAPTOP")
    await synced(phone)
    await synced(laptop)
    old_token = laptop.access_token
    resp = await phone.to_device(ToDeviceMessage(TYPE, phone.user_id, "LAPTOP", {"n": 1}))
    assert isinstance(resp, ToDeviceResponse), resp

    out = await laptop.logout()
    assert isinstance(out, LogoutResponse), out
    status, body = await raw.request("GET", "/account/whoami", token=old_token)
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert await server.hs.db.fetchval(
        "SELECT count(*) FROM to_device_inbox WHERE user_id = $1 AND device_id = 'LAPTOP'",
        phone.user_id) == 0
    # The phone is untouched, and a new login as LAPTOP starts with an empty inbox.
    assert isinstance(await synced(phone), SyncResponse)
    again = await nio_login(nio_client, phone.user_id, "LAPTOP")
    assert pings(await synced(again)) == []
