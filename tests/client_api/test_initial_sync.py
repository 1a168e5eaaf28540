"""GET /initialSync (the deprecated global one, still specified) and the presence and receipts
that GET /rooms/{roomId}/initialSync gives with it."""

from __future__ import annotations

from typing import Any

from tests.helpers import Client, User


async def _initial(c: Client, user: User, **params: str) -> dict[str, Any]:
    status, body = await c.request("GET", "/initialSync", token=user.access_token,
                                   params=params)
    assert status == 200, body
    return dict(body)


def _room(body: dict[str, Any], room_id: str) -> dict[str, Any] | None:
    return next((r for r in body["rooms"] if r["room_id"] == room_id), None)


async def test_initial_sync_rooms_receipts_tags_and_account_data(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(alice, preset="public_chat", name="Everything")
    await c.join(bob, room)
    ids = [await c.send(bob, room, f"m{i}") for i in range(3)]
    for path, body in ((f"/rooms/{room}/receipt/m.read/{ids[1]}", {}),):
        status, _ = await c.request("POST", path, body, alice.access_token)
        assert status == 200
    for method, path, body in (
            ("PUT", f"/user/{alice.user_id}/rooms/{room}/tags/u.work", {"order": 0.5}),
            ("PUT", f"/user/{alice.user_id}/rooms/{room}/account_data/x.room", {"r": 1}),
            ("PUT", f"/user/{alice.user_id}/account_data/x.global", {"g": 1})):
        status, _ = await c.request(method, path, body, alice.access_token)
        assert status == 200
    invited_to = await c.create_room(bob, invite=[alice.user_id])

    body = await _initial(c, alice, limit="2")
    assert body["end"].startswith("s")
    r = _room(body, room)
    assert r is not None and r["membership"] == "join" and r["visibility"] == "private"
    assert [e["event_id"] for e in r["messages"]["chunk"]] == ids[1:]
    assert {"start", "end"} <= set(r["messages"])
    assert any(e["type"] == "m.room.name" and e["content"] == {"name": "Everything"}
               for e in r["state"])
    # The v1 form: each event also names its sender `user_id`; presence names its user.
    assert all(e["user_id"] == e["sender"] for e in r["state"] + r["messages"]["chunk"])
    assert [e["content"]["user_id"] for e in body["presence"]
            if e["sender"] == alice.user_id] == [alice.user_id]
    assert {"type": "m.tag", "content": {"tags": {"u.work": {"order": 0.5}}}} \
        in r["account_data"]
    assert {"type": "x.room", "content": {"r": 1}} in r["account_data"]
    assert {"type": "x.global", "content": {"g": 1}} in body["account_data"]
    assert not any(e["type"] == "x.room" for e in body["account_data"])
    receipts = [e for e in body["receipts"] if e["room_id"] == room]
    assert receipts and receipts[0]["type"] == "m.receipt"
    assert alice.user_id in receipts[0]["content"][ids[1]]["m.read"]
    assert isinstance(body["presence"], list)
    # An invite comes as its invite event.
    inv = _room(body, invited_to)
    assert inv is not None and inv["membership"] == "invite"
    assert inv["invite"]["content"]["membership"] == "invite"
    assert inv["invite"]["state_key"] == alice.user_id

    # `end` is where GET /events goes on from: the next message, nothing older.
    later = await c.send(bob, room, "after")
    status, events = await c.request("GET", "/events", token=alice.access_token,
                                     params={"from": body["end"], "timeout": "0"})
    assert status == 200
    assert [e["event_id"] for e in events["chunk"] if "event_id" in e] == [later]


async def test_initial_sync_archived_includes_departed_rooms_as_they_were(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(bob, preset="public_chat")
    await c.join(alice, room)
    before = await c.send(bob, room, "before alice left")
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, alice.access_token)
    assert status == 200
    await c.send(bob, room, "after alice left")
    assert _room(await _initial(c, alice), room) is None
    body = await _initial(c, alice, archived="true", limit="2")
    r = _room(body, room)
    assert r is not None and r["membership"] == "leave"
    chunk = r["messages"]["chunk"]
    assert [e["event_id"] for e in chunk][0] == before
    assert chunk[-1]["type"] == "m.room.member" and chunk[-1]["state_key"] == alice.user_id
    assert not any(e["content"].get("body") == "after alice left" for e in chunk)
    assert not [e for e in body["receipts"] if e["room_id"] == room]
    # Forgotten rooms are gone even from the archive.
    status, _ = await c.request("POST", f"/rooms/{room}/forget", {}, alice.access_token)
    assert status == 200
    assert _room(await _initial(c, alice, archived="true"), room) is None


async def test_initial_sync_bad_parameters(c: Client) -> None:
    alice = await c.register()
    for params in ({"limit": "x"}, {"limit": "-1"}, {"archived": "yes"}):
        status, body = await c.request("GET", "/initialSync", token=alice.access_token,
                                       params=params)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), params
    status, body = await c.request("GET", "/initialSync")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")


async def test_room_initial_sync_has_presence_receipts_and_start(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    status, _ = await c.request("PUT", f"/presence/{bob.user_id}/status",
                                {"presence": "online"}, bob.access_token)
    assert status == 200
    msg = await c.send(bob, room, "hi")
    status, _ = await c.request("POST", f"/rooms/{room}/receipt/m.read/{msg}", {},
                                bob.access_token)
    assert status == 200
    status, body = await c.request("GET", f"/rooms/{room}/initialSync",
                                   token=alice.access_token)
    assert status == 200, body
    assert any(e["sender"] == bob.user_id and e["content"]["presence"] == "online"
               for e in body["presence"])
    assert bob.user_id in body["receipts"][0]["content"][msg]["m.read"]
    # The whole room fits: `start` is still given, and nothing is before it.
    status, page = await c.request("GET", f"/rooms/{room}/messages", token=alice.access_token,
                                   params={"dir": "b", "from": body["messages"]["start"]})
    assert status == 200 and page["chunk"] == []

    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, bob.access_token)
    status, body = await c.request("GET", f"/rooms/{room}/initialSync",
                                   token=bob.access_token)
    assert status == 200 and body["membership"] == "leave"
    assert body["presence"] == [] and body["receipts"] == []
