"""Threads over HTTP: GET /_matrix/client/v1/rooms/{roomId}/threads (include all and
participated, paging, visibility) and the m.thread bundled aggregation on the roots it returns
and on search results."""

from __future__ import annotations

import secrets
from typing import Any

from tests.helpers import Client, User


async def reply(c: Client, user: User, room: str, root: str, body: str) -> str:
    status, data = await c.request(
        "PUT", f"/rooms/{room}/send/m.room.message/{secrets.token_hex(6)}",
        {"msgtype": "m.text", "body": body,
         "m.relates_to": {"rel_type": "m.thread", "event_id": root}}, user.access_token)
    assert status == 200, data
    return str(data["event_id"])


async def threads(c: Client, user: User, room: str, **params: str) -> tuple[int, Any]:
    return await c.request("GET", f"/_matrix/client/v1/rooms/{room}/threads",
                           token=user.access_token, params=params)


async def test_thread_list_bundles_and_pages(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    root1 = await c.send(alice, room, "first thread")
    root2 = await c.send(bob, room, "second thread")
    await reply(c, bob, room, root1, "r1")
    last1 = await reply(c, bob, room, root1, "r2")
    last2 = await reply(c, bob, room, root2, "in two")
    await c.send(alice, room, "not a thread")

    status, data = await threads(c, alice, room)
    assert status == 200, data
    chunk = data["chunk"]
    assert [e["event_id"] for e in chunk] == [root2, root1]  # most recent activity first
    t1 = chunk[1]["unsigned"]["m.relations"]["m.thread"]
    assert t1["count"] == 2 and t1["latest_event"]["event_id"] == last1
    assert t1["current_user_participated"] is True  # alice sent the root
    t2 = chunk[0]["unsigned"]["m.relations"]["m.thread"]
    assert t2["latest_event"]["event_id"] == last2 and t2["current_user_participated"] is False
    assert "next_batch" not in data

    status, data = await threads(c, alice, room, include="participated")
    assert [e["event_id"] for e in data["chunk"]] == [root1]
    status, data = await threads(c, bob, room, include="participated")
    assert [e["event_id"] for e in data["chunk"]] == [root2, root1]

    status, page = await threads(c, alice, room, limit="1")
    assert [e["event_id"] for e in page["chunk"]] == [root2]
    status, page2 = await threads(c, alice, room, limit="1", **{"from": page["next_batch"]})
    assert [e["event_id"] for e in page2["chunk"]] == [root1]

    # The root as search finds it carries the same aggregation.
    status, found = await c.request("POST", "/search", {"search_categories": {"room_events": {
        "search_term": "first thread"}}}, alice.access_token)
    assert status == 200
    (hit,) = [r for r in found["search_categories"]["room_events"]["results"]
              if r["result"]["event_id"] == root1]
    assert hit["result"]["unsigned"]["m.relations"]["m.thread"]["count"] == 2
    # /event, /context and /messages bundle too, per reader: alice sent the root, carol did
    # not take part (asked in turn, so an aggregation kept in a shared cache would show).
    carol = await c.register()
    await c.join(carol, room)
    for who, took_part in ((alice, True), (carol, False), (alice, True)):
        status, ev = await c.request("GET", f"/rooms/{room}/event/{root1}",
                                     token=who.access_token)
        assert status == 200, ev
        agg = ev["unsigned"]["m.relations"]["m.thread"]
        assert agg["count"] == 2 and agg["current_user_participated"] is took_part
    status, ctx = await c.request("GET", f"/rooms/{room}/context/{root1}",
                                  token=alice.access_token, params={"limit": "2"})
    assert status == 200
    assert ctx["event"]["unsigned"]["m.relations"]["m.thread"]["count"] == 2
    status, msgs = await c.request("GET", f"/rooms/{room}/messages", token=alice.access_token,
                                   params={"dir": "b", "limit": "20"})
    assert status == 200
    roots = {e["event_id"]: e["unsigned"]["m.relations"]["m.thread"]["count"]
             for e in msgs["chunk"] if "m.relations" in e.get("unsigned", {})}
    assert roots == {root1: 2, root2: 1}


async def test_threads_access_and_bad_input(c: Client) -> None:
    alice = await c.register()
    stranger = await c.register()
    room = await c.create_room(alice, preset="private_chat")
    root = await c.send(alice, room, "private root")
    await reply(c, alice, room, root, "private reply")
    status, data = await threads(c, stranger, room)
    assert status == 403 and data["errcode"] == "M_FORBIDDEN"
    status, data = await threads(c, stranger, "!nope:parley.test")
    assert status == 403
    for params in ({"include": "mine"}, {"limit": "x"}, {"from": "abc"}):
        status, data = await threads(c, alice, room, **params)
        assert status == 400 and data["errcode"] == "M_INVALID_PARAM", (params, data)
    status, data = await c.request("GET", f"/_matrix/client/v1/rooms/{room}/threads")
    assert status == 401


async def test_history_visibility_hides_earlier_threads(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.request("PUT", f"/rooms/{room}/state/m.room.history_visibility",
                    {"history_visibility": "joined"}, alice.access_token)
    old = await c.send(alice, room, "before bob")
    await reply(c, alice, room, old, "still before bob")
    await c.join(bob, room)
    new = await c.send(alice, room, "after bob")
    await reply(c, alice, room, new, "reply after bob")
    status, data = await threads(c, bob, room)
    assert status == 200 and [e["event_id"] for e in data["chunk"]] == [new]


async def test_sync_timelines_bundle_thread_roots(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    root = await c.send(alice, room, "root")
    await reply(c, bob, room, root, "one")
    last = await reply(c, bob, room, root, "two")
    sync = await c.sync(alice, filter='{"room": {"timeline": {"limit": 5}}}')
    events = {e["event_id"]: e for e in sync["rooms"]["join"][room]["timeline"]["events"]}
    agg = events[root]["unsigned"]["m.relations"]["m.thread"]
    assert agg["count"] == 2 and agg["latest_event"]["event_id"] == last
    assert agg["current_user_participated"] is True
    assert "m.relations" not in events[last].get("unsigned", {})
    # Sliding sync timelines too, for bob (who replied).
    status, r = await c.request("POST", "/_matrix/client/v4/sync", {"room_subscriptions": {
        room: {"timeline_limit": 5, "required_state": {}}}}, bob.access_token)
    assert status == 200
    tl = {e["event_id"]: e for e in r["rooms"][room]["timeline"]}
    agg = tl[root]["unsigned"]["m.relations"]["m.thread"]
    assert agg["count"] == 2 and agg["current_user_participated"] is True


async def test_sync_bundles_a_root_older_than_the_rooms_memory(c: Client) -> None:
    # RoomData keeps the last 200 events in memory; a root before them is bundled from the
    # database (the same answer as from memory).
    alice = await c.register()
    room = await c.create_room(alice)
    root = await c.send(alice, room, "old root")
    last = await reply(c, alice, room, root, "old reply")
    for i in range(201):
        await c.send(alice, room, f"filler {i}")
    sync = await c.sync(alice, filter='{"room": {"timeline": {"limit": 220}}}')
    events = {e["event_id"]: e for e in sync["rooms"]["join"][room]["timeline"]["events"]}
    agg = events[root]["unsigned"]["m.relations"]["m.thread"]
    assert agg == {"latest_event": agg["latest_event"], "count": 1,
                   "current_user_participated": True}
    assert agg["latest_event"]["event_id"] == last
