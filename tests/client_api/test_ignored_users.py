"""Ignored users (spec "Ignoring Users"): once in m.ignored_user_list, a user's messages and
invites are left out of /sync at once; their state events still come (SyTest 49ignore.pl)."""

from __future__ import annotations

from typing import Any

from tests.helpers import Client, User


async def _ignore(c: Client, user: User, *others: User) -> None:
    status, body = await c.request(
        "PUT", f"/user/{user.user_id}/account_data/m.ignored_user_list",
        {"ignored_users": {o.user_id: {} for o in others}}, user.access_token)
    assert status == 200, body


def _timeline(body: dict[str, Any], room: str) -> list[tuple[str, str]]:
    events = body["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", [])
    return [(e["sender"], e["type"]) for e in events]


async def test_messages_of_an_ignored_user_are_left_out(c: Client) -> None:
    alice, bob, carol = await c.register(), await c.register(), await c.register()
    room = await c.create_room(alice, preset="public_chat")
    for u in (bob, carol):
        await c.join(u, room)
    for u in (alice, bob, carol):
        await c.send(u, room, "hello")
    flt = '{"room": {"timeline": {"types": ["m.room.message"]}}}'
    body = await c.sync(alice, filter=flt)
    assert [s for s, _ in _timeline(body, room)] == [alice.user_id, bob.user_id, carol.user_id]

    await _ignore(c, alice, bob)
    body = await c.sync(alice, filter=flt)
    assert [s for s, _ in _timeline(body, room)] == [alice.user_id, carol.user_id]
    since = body["next_batch"]
    # An incremental sync with only the ignored user's message has nothing for the room...
    await c.send(bob, room, "ignored")
    body = await c.sync(alice, since, filter=flt)
    assert room not in body.get("rooms", {}).get("join", {})
    since = body["next_batch"]
    # ...but their state events still come: the room must not look different.
    status, _ = await c.request("PUT", f"/rooms/{room}/state/m.room.member/{bob.user_id}",
                                {"membership": "join", "displayname": "Bob"}, bob.access_token)
    assert status == 200
    await c.send(carol, room, "seen")
    body = await c.sync(alice, since)
    got = _timeline(body, room)
    assert (bob.user_id, "m.room.member") in got and (carol.user_id, "m.room.message") in got
    assert (bob.user_id, "m.room.message") not in got
    # Un-ignoring resumes their messages.
    since = body["next_batch"]
    await _ignore(c, alice)
    await c.send(bob, room, "back")
    body = await c.sync(alice, since, filter=flt)
    assert _timeline(body, room) == [(bob.user_id, "m.room.message")]


async def test_invites_from_an_ignored_user_are_not_sent(c: Client) -> None:
    alice, bob, carol = await c.register(), await c.register(), await c.register()
    await _ignore(c, alice, bob)
    since = (await c.sync(alice))["next_batch"]
    from_bob = await c.create_room(bob)
    from_carol = await c.create_room(carol)
    for inviter, room in ((bob, from_bob), (carol, from_carol)):
        status, body = await c.request("POST", f"/rooms/{room}/invite",
                                       {"user_id": alice.user_id}, inviter.access_token)
        assert status == 200, body
    for body in (await c.sync(alice, since), await c.sync(alice)):
        assert set(body["rooms"]["invite"]) == {from_carol}
