"""Profiles: displayname and avatar_url, mirrored into the member events of joined rooms."""

from __future__ import annotations

from tests.helpers import Client


async def test_profile_get_put(c: Client) -> None:
    u = await c.register()
    local = u.user_id[1:].split(":")[0]
    # A new account's display name defaults to its localpart; it has no avatar.
    status, body = await c.request("GET", f"/profile/{u.user_id}")
    assert status == 200
    assert body == {"displayname": local}
    status, body = await c.request("GET", f"/profile/{u.user_id}/avatar_url")
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("PUT", f"/profile/{u.user_id}/displayname",
                                   {"displayname": "Alice"}, token=u.access_token)
    assert status == 200
    assert body == {}
    status, body = await c.request("PUT", f"/profile/{u.user_id}/avatar_url",
                                   {"avatar_url": "mxc://parley.test/abc"}, token=u.access_token)
    assert status == 200
    status, body = await c.request("GET", f"/profile/{u.user_id}/displayname")
    assert status == 200
    assert body == {"displayname": "Alice"}
    status, body = await c.request("GET", f"/profile/{u.user_id}/avatar_url")
    assert body == {"avatar_url": "mxc://parley.test/abc"}
    status, body = await c.request("GET", f"/profile/{u.user_id}")
    assert body == {"displayname": "Alice", "avatar_url": "mxc://parley.test/abc"}


async def test_profile_errors(c: Client) -> None:
    a = await c.register()
    b = await c.register()
    status, body = await c.request("PUT", f"/profile/{b.user_id}/displayname",
                                   {"displayname": "Mallory"}, token=a.access_token)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    status, body = await c.request("PUT", f"/profile/{a.user_id}/displayname",
                                   {"displayname": "x"})
    assert status == 401
    assert body["errcode"] == "M_MISSING_TOKEN"
    status, body = await c.request("GET", "/profile/@nobody-here:parley.test")
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("PUT", f"/profile/{a.user_id}/displayname",
                                   {"displayname": 5}, token=a.access_token)
    assert status == 400
    assert body["errcode"] == "M_BAD_JSON"


async def test_profile_change_updates_member_events(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    first = await c.sync(bob)
    status, _ = await c.request("PUT", f"/profile/{alice.user_id}/displayname",
                                {"displayname": "Alice Cooper"}, token=alice.access_token)
    assert status == 200
    status, _ = await c.request("PUT", f"/profile/{alice.user_id}/avatar_url",
                                {"avatar_url": "mxc://parley.test/alice"},
                                token=alice.access_token)
    assert status == 200
    status, content = await c.request(
        "GET", f"/rooms/{room}/state/m.room.member/{alice.user_id}", token=bob.access_token)
    assert status == 200
    assert content == {"membership": "join", "displayname": "Alice Cooper",
                       "avatar_url": "mxc://parley.test/alice"}
    status, state = await c.request("GET", f"/rooms/{room}/state", token=bob.access_token)
    members = [e for e in state if e["type"] == "m.room.member"
               and e["state_key"] == alice.user_id]
    assert len(members) == 1
    assert members[0]["content"]["displayname"] == "Alice Cooper"
    status, jm = await c.request("GET", f"/rooms/{room}/joined_members", token=bob.access_token)
    assert jm["joined"][alice.user_id] == {"display_name": "Alice Cooper",
                                           "avatar_url": "mxc://parley.test/alice"}
    nxt = await c.sync(bob, first["next_batch"])
    events = nxt["rooms"]["join"][room]["timeline"]["events"]
    member_events = [e for e in events if e["type"] == "m.room.member"]
    assert [e["content"] for e in member_events] == [
        {"membership": "join", "displayname": "Alice Cooper"},
        {"membership": "join", "displayname": "Alice Cooper",
         "avatar_url": "mxc://parley.test/alice"},
    ]
    assert all(e["state_key"] == alice.user_id for e in member_events)
    # A user who joins later gets the profile in their join event.
    carol = await c.register()
    await c.request("PUT", f"/profile/{carol.user_id}/displayname", {"displayname": "Carol"},
                    token=carol.access_token)
    await c.join(carol, room)
    status, content = await c.request(
        "GET", f"/rooms/{room}/state/m.room.member/{carol.user_id}", token=bob.access_token)
    assert content == {"membership": "join", "displayname": "Carol"}
