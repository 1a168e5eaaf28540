"""Room tags through matrix-nio: nio has no call to set tags, so they are set over raw HTTP with
the nio client's own token, and nio's sync must parse them into `TagEvent` and `MatrixRoom.tags`."""

from __future__ import annotations

from nio import RoomCreateResponse, SyncResponse, TagEvent

from tests.e2e.conftest import NioFactory
from tests.helpers import Client, User


async def test_nio_sees_room_tags(nio_user: NioFactory, raw: Client) -> None:
    alice = await nio_user("alice")
    created = await alice.room_create(name="tagged")
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    assert isinstance(await alice.sync(timeout=0), SyncResponse)
    assert alice.rooms[room_id].tags == {}

    me = User(alice.user_id, alice.access_token, alice.device_id)
    url = f"/user/{me.user_id}/rooms/{room_id}/tags"
    status, _ = await raw.request("PUT", url + "/m.favourite", {"order": 0.5}, me.access_token)
    assert status == 200
    status, _ = await raw.request("PUT", url + "/u.work", {}, me.access_token)
    assert status == 200

    resp = await alice.sync(timeout=0)
    assert isinstance(resp, SyncResponse), resp
    tag_events = [e for e in resp.rooms.join[room_id].account_data if isinstance(e, TagEvent)]
    assert [e.tags for e in tag_events] == [{"m.favourite": {"order": 0.5}, "u.work": {}}]
    assert alice.rooms[room_id].tags == {"m.favourite": {"order": 0.5}, "u.work": {}}

    status, _ = await raw.request("DELETE", url + "/m.favourite", token=me.access_token)
    assert status == 200
    assert isinstance(await alice.sync(timeout=0), SyncResponse)
    assert alice.rooms[room_id].tags == {"u.work": {}}
