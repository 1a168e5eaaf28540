"""POST /rooms/{roomId}/upgrade: tombstone, replacement room with copied state, aliases moved,
the old room's power levels restricted; errors per the spec."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from tests.conftest import Server
from tests.helpers import Client, User


async def state(c: Client, u: User, room: str, etype: str, key: str = "") -> Any:
    status, body = await c.request("GET", f"/rooms/{room}/state/{etype}/{key}",
                                   token=u.access_token)
    return body if status == 200 else None


async def test_upgrade_copies_state_and_tombstones(c: Client, server: Server) -> None:
    sn = server.config.server_name
    u = await c.register()
    bad = await c.register()
    local = "up" + secrets.token_hex(4)
    room = await c.create_room(u, preset="public_chat", name="Old name", topic="A topic",
                               room_version="10", room_alias_name=local,
                               visibility="public",
                               initial_state=[{"type": "m.room.encryption", "content": {
                                   "algorithm": "m.megolm.v1.aes-sha2"}}])
    alias = f"#{local}:{sn}"
    await c.join(bad, room)
    status, _ = await c.request("POST", f"/rooms/{room}/ban", {"user_id": bad.user_id},
                                u.access_token)
    assert status == 200
    status, body = await c.request("POST", f"/rooms/{room}/upgrade", {"new_version": "11"},
                                   u.access_token)
    assert status == 200, body
    new = body["replacement_room"]
    assert new != room

    tomb = await state(c, u, room, "m.room.tombstone")
    assert tomb["replacement_room"] == new
    create = await state(c, u, new, "m.room.create")
    assert create["room_version"] == "11"
    assert create["predecessor"]["room_id"] == room
    # The tombstone, built before the new room so that its create event can name it.
    status, tomb_ev = await c.request(
        "GET", f"/rooms/{room}/state/m.room.tombstone/", token=u.access_token,
        params={"format": "event"})
    assert status == 200, tomb_ev
    assert create["predecessor"]["event_id"] == tomb_ev["event_id"]
    status, ev = await c.request("GET", f"/rooms/{room}/event/{tomb_ev['event_id']}",
                                 token=u.access_token)
    assert status == 200 and ev["content"]["replacement_room"] == new
    assert (await state(c, u, new, "m.room.name")) == {"name": "Old name"}
    assert (await state(c, u, new, "m.room.topic"))["topic"] == "A topic"
    assert (await state(c, u, new, "m.room.join_rules"))["join_rule"] == "public"
    assert (await state(c, u, new, "m.room.encryption"))["algorithm"] == "m.megolm.v1.aes-sha2"
    assert (await state(c, u, new, "m.room.member", bad.user_id))["membership"] == "ban"
    old_pl = await state(c, u, room, "m.room.power_levels")
    new_pl = await state(c, u, new, "m.room.power_levels")
    assert new_pl["users"] == {u.user_id: 100}
    assert new_pl["events"] == old_pl["events"]
    # The old room is restricted: sending and inviting need max(50, users_default + 1).
    assert old_pl["events_default"] == 50 and old_pl["invite"] == 50
    # The alias moved with the canonical alias and the directory listing.
    status, body = await c.request("GET", f"/directory/room/{quote(alias)}")
    assert body["room_id"] == new
    assert (await state(c, u, new, "m.room.canonical_alias"))["alias"] == alias
    assert "alias" not in (await state(c, u, room, "m.room.canonical_alias") or {})
    status, body = await c.request("GET", "/publicRooms")
    ids = {r["room_id"] for r in body["chunk"]}
    assert new in ids and room not in ids
    # The upgrader is in the new room; nobody else was joined for them.
    status, body = await c.request("GET", f"/rooms/{new}/joined_members", token=u.access_token)
    assert list(body["joined"]) == [u.user_id]


async def test_upgrade_to_v12_unlists_creator(c: Client) -> None:
    u = await c.register()
    other = await c.register()
    room = await c.create_room(u, room_version="11", preset="public_chat")
    status, body = await c.request("POST", f"/rooms/{room}/upgrade",
                                   {"new_version": "12",
                                    "additional_creators": [other.user_id]}, u.access_token)
    assert status == 200, body
    new = body["replacement_room"]
    create = await state(c, u, new, "m.room.create")
    assert create["room_version"] == "12"
    assert create["additional_creators"] == [other.user_id]
    # A v12 room id is its create event's hash: the predecessor is the last event before the
    # tombstone, which could only be made once the new room's id was known.
    status, tomb_ev = await c.request(
        "GET", f"/rooms/{room}/state/m.room.tombstone/", token=u.access_token,
        params={"format": "event"})
    assert create["predecessor"]["room_id"] == room
    assert create["predecessor"]["event_id"] != tomb_ev["event_id"]
    pl = await state(c, u, new, "m.room.power_levels")
    assert u.user_id not in pl.get("users", {})
    # A space keeps its type.
    space = await c.create_room(u, creation_content={"type": "m.space"})
    status, body = await c.request("POST", f"/rooms/{space}/upgrade", {"new_version": "12"},
                                   u.access_token)
    assert status == 200
    assert (await state(c, u, body["replacement_room"], "m.room.create"))["type"] == "m.space"


async def test_upgrade_by_admin_keeps_old_creator_powerful(c: Client) -> None:
    creator = await c.register()
    admin = await c.register()
    room = await c.create_room(creator, room_version="12", preset="public_chat")
    await c.join(admin, room)
    pl = await state(c, creator, room, "m.room.power_levels")
    pl["users"] = {admin.user_id: 100}
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.power_levels/", pl,
                                   creator.access_token)
    assert status == 200, body
    status, body = await c.request("POST", f"/rooms/{room}/upgrade", {"new_version": "12"},
                                   admin.access_token)
    assert status == 200, body
    new = body["replacement_room"]
    assert (await state(c, admin, new, "m.room.create"))["predecessor"]["room_id"] == room
    new_pl = await state(c, admin, new, "m.room.power_levels")
    assert new_pl["users"] == {creator.user_id: 100}  # admin is the new room's creator
    # And to an older version: both listed at 100.
    status, body = await c.request("POST", f"/rooms/{new}/upgrade", {"new_version": "10"},
                                   admin.access_token)
    assert status == 200, body
    pl10 = await state(c, admin, body["replacement_room"], "m.room.power_levels")
    assert pl10["users"] == {creator.user_id: 100, admin.user_id: 100}


async def test_upgrade_errors(c: Client) -> None:
    u = await c.register()
    member = await c.register()
    outsider = await c.register()
    room = await c.create_room(u, preset="public_chat")
    await c.join(member, room)
    path = f"/rooms/{room}/upgrade"
    status, body = await c.request("POST", path, {"new_version": "999"}, u.access_token)
    assert (status, body["errcode"]) == (400, "M_UNSUPPORTED_ROOM_VERSION")
    status, body = await c.request("POST", path, {}, u.access_token)
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await c.request("POST", path, {"new_version": 12}, u.access_token)
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await c.request("POST", path, raw=b"{nope", token=u.access_token)
    assert (status, body["errcode"]) == (400, "M_NOT_JSON")
    status, body = await c.request("POST", path, {"new_version": "12",
                                                  "additional_creators": ["bob"]},
                                   u.access_token)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await c.request("POST", path, {"new_version": "12"}, member.access_token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await c.request("POST", path, {"new_version": "12"}, outsider.access_token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await c.request("POST", "/rooms/!nope:x/upgrade", {"new_version": "12"},
                                   u.access_token)
    assert status == 404
    status, body = await c.request("POST", path, {"new_version": "12"})
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    # Nothing happened to the room.
    assert await state(c, u, room, "m.room.tombstone") is None


async def test_upgrade_carries_tags_and_direct_of_local_users(c: Client) -> None:
    u, friend = await c.register(), await c.register()
    room = await c.create_room(u, preset="public_chat", room_version="10")
    await c.join(friend, room)
    for who, tag in ((u, "u.mine"), (friend, "m.favourite")):
        status, _ = await c.request("PUT", f"/user/{who.user_id}/rooms/{room}/tags/{tag}",
                                    {"order": 0.25}, who.access_token)
        assert status == 200
    status, _ = await c.request("PUT", f"/user/{u.user_id}/account_data/m.direct",
                                {friend.user_id: [room, "!other:parley.test"]}, u.access_token)
    assert status == 200
    status, body = await c.request("POST", f"/rooms/{room}/upgrade", {"new_version": "11"},
                                   u.access_token)
    assert status == 200, body
    new = body["replacement_room"]

    async def tags(who: User) -> dict[str, Any]:
        status, body = await c.request("GET", f"/user/{who.user_id}/rooms/{new}/tags",
                                       token=who.access_token)
        assert status == 200
        return dict(body["tags"])
    # The upgrader at once; the other member when they follow the tombstone.
    assert await tags(u) == {"u.mine": {"order": 0.25}}
    status, direct = await c.request("GET", f"/user/{u.user_id}/account_data/m.direct",
                                     token=u.access_token)
    assert direct == {friend.user_id: [room, "!other:parley.test", new]}
    assert await tags(friend) == {}
    await c.join(friend, new)
    assert await tags(friend) == {"m.favourite": {"order": 0.25}}
    # Joining again (a profile change) copies nothing over what they changed since.
    status, _ = await c.request("DELETE", f"/user/{friend.user_id}/rooms/{new}/tags/m.favourite",
                                None, friend.access_token)
    await c.join(friend, new)
    assert await tags(friend) == {}
