"""GET /rooms/{roomId}/initialSync: members, former members, peekers of world-readable rooms,
and everyone else."""

from __future__ import annotations

from tests.helpers import Client


async def test_room_initial_sync(c: Client) -> None:
    u = await c.register()
    other = await c.register()
    outsider = await c.register()
    room = await c.create_room(u, preset="public_chat", name="Snap")
    await c.join(other, room)
    ids = [await c.send(u, room, f"m{i}") for i in range(4)]
    status, _ = await c.request("PUT", f"/user/{u.user_id}/rooms/{room}/account_data/x.test",
                                {"a": 1}, u.access_token)
    assert status == 200
    status, body = await c.request("GET", f"/rooms/{room}/initialSync", token=u.access_token,
                                   params={"limit": "3"})
    assert status == 200, body
    assert body["room_id"] == room and body["membership"] == "join"
    assert body["visibility"] == "private"
    assert [e["event_id"] for e in body["messages"]["chunk"]] == ids[1:]
    assert {"type": "x.test", "content": {"a": 1}} in body["account_data"]
    names = [e for e in body["state"] if e["type"] == "m.room.name"]
    assert names[0]["content"] == {"name": "Snap"}
    # start pages back to the earlier messages.
    status, page = await c.request("GET", f"/rooms/{room}/messages", token=u.access_token,
                                   params={"dir": "b", "from": body["messages"]["start"],
                                           "limit": "1"})
    assert [e["event_id"] for e in page["chunk"]] == [ids[0]]
    # end pages forward to what comes next.
    later = await c.send(u, room, "later")
    status, page = await c.request("GET", f"/rooms/{room}/messages", token=u.access_token,
                                   params={"dir": "f", "from": body["messages"]["end"]})
    assert [e["event_id"] for e in page["chunk"]] == [later]

    # A former member sees the room as it was when they left.
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, other.access_token)
    await c.send(u, room, "after leaving")
    status, _ = await c.request("PUT", f"/rooms/{room}/state/m.room.name/",
                                {"name": "Renamed"}, u.access_token)
    status, body = await c.request("GET", f"/rooms/{room}/initialSync",
                                   token=other.access_token)
    assert status == 200, body
    assert body["membership"] == "leave"
    assert body["messages"]["chunk"][-1]["type"] == "m.room.member"
    assert body["messages"]["chunk"][-1]["state_key"] == other.user_id
    names = [e for e in body["state"] if e["type"] == "m.room.name"]
    assert names[0]["content"] == {"name": "Snap"}

    status, body = await c.request("GET", f"/rooms/{room}/initialSync",
                                   token=outsider.access_token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await c.request("GET", "/rooms/!nope:parley.test/initialSync",
                                   token=u.access_token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await c.request("GET", "/rooms/nope/initialSync", token=u.access_token)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await c.request("GET", f"/rooms/{room}/initialSync", token=u.access_token,
                                   params={"limit": "x"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_peek_world_readable(c: Client) -> None:
    u = await c.register()
    peeker = await c.register()
    room = await c.create_room(u, preset="public_chat", visibility="public", initial_state=[
        {"type": "m.room.history_visibility",
         "content": {"history_visibility": "world_readable"}}])
    msg = await c.send(u, room, "hello")
    status, body = await c.request("GET", f"/rooms/{room}/initialSync",
                                   token=peeker.access_token)
    assert status == 200, body
    assert "membership" not in body and body["visibility"] == "public"
    assert body["messages"]["chunk"][-1]["event_id"] == msg
