"""POST /search over HTTP: full-text matches in joined rooms, rank and recent order, filters,
history visibility, event_context with profiles, groupings, include_state, next_batch paging,
highlights, and bad input."""

from __future__ import annotations

from typing import Any

from tests.helpers import Client, User


async def search(c: Client, user: User, term: str, params: dict[str, str] | None = None,
                 **room_events: Any) -> dict[str, Any]:
    status, data = await c.request(
        "POST", "/search", {"search_categories": {"room_events": {
            "search_term": term, **room_events}}}, user.access_token, params=params)
    assert status == 200, data
    return dict(data["search_categories"]["room_events"])


async def test_matches_ranked_and_recent(c: Client) -> None:
    u = await c.register()
    room = await c.create_room(u, name="Gardening club", topic="tomatoes and beans")
    e1 = await c.send(u, room, "The tomatoes are ripening nicely")
    e2 = await c.send(u, room, "Nothing to report")
    e3 = await c.send(u, room, "tomato soup, tomato salad, tomato everything")
    r = await search(c, u, "tomatoes", order_by="recent", keys=["content.body"])
    ids = [x["result"]["event_id"] for x in r["results"]]
    assert ids == [e3, e1]  # stemmed: "tomato" matches "tomatoes"; newest first
    assert e2 not in ids and r["count"] == 2
    assert "tomatoes" in r["highlights"]
    assert r["results"][0]["result"]["room_id"] == room
    ranked = await search(c, u, "tomato")
    assert [x["result"]["event_id"] for x in ranked["results"]][0] == e3  # 3 hits rank first
    assert all(isinstance(x["rank"], float) for x in ranked["results"])
    # The topic and the name are searchable by their keys.
    topic = await search(c, u, "beans", keys=["content.topic"])
    assert [x["result"]["type"] for x in topic["results"]] == ["m.room.topic"]
    name = await search(c, u, "gardening", keys=["content.name"])
    assert [x["result"]["type"] for x in name["results"]] == ["m.room.name"]


async def test_only_joined_rooms_and_visibility(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    eve = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    status, _ = await c.request("PUT", f"/rooms/{room}/state/m.room.history_visibility",
                                {"history_visibility": "joined"}, alice.access_token)
    assert status == 200
    before = await c.send(alice, room, "secret walrus plans")
    await c.join(bob, room)
    after = await c.send(alice, room, "public walrus news")
    r = await search(c, bob, "walrus", order_by="recent")
    assert [x["result"]["event_id"] for x in r["results"]] == [after]  # not before he joined
    r = await search(c, eve, "walrus")  # never joined: nothing
    assert r["results"] == [] and r["count"] == 0
    r = await search(c, alice, "walrus", order_by="recent")
    assert [x["result"]["event_id"] for x in r["results"]] == [after, before]
    # A redacted message is no longer found.
    status, _ = await c.request("PUT", f"/rooms/{room}/redact/{after}/t1", {},
                                alice.access_token)
    assert status == 200
    r = await search(c, alice, "walrus", order_by="recent")
    assert [x["result"]["event_id"] for x in r["results"]] == [before]


async def test_filters_paging_context_groups_state(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    r1 = await c.create_room(alice, preset="public_chat")
    r2 = await c.create_room(alice, preset="public_chat")
    await c.join(bob, r1)
    await c.join(bob, r2)
    await c.request("PUT", f"/profile/{bob.user_id}/displayname", {"displayname": "Bobby"},
                    bob.access_token)
    sent = []
    for i in range(5):
        sent.append(await c.send(alice, r1, f"otter number {i}"))
    bob_msg = await c.send(bob, r2, "an otter from bob")
    # filters: rooms and senders
    r = await search(c, alice, "otter", filter={"rooms": [r2]})
    assert [x["result"]["event_id"] for x in r["results"]] == [bob_msg]
    r = await search(c, alice, "otter", filter={"senders": [alice.user_id]}, order_by="recent")
    assert [x["result"]["event_id"] for x in r["results"]] == sent[::-1]
    r = await search(c, alice, "otter", filter={"not_senders": [alice.user_id]})
    assert [x["result"]["event_id"] for x in r["results"]] == [bob_msg]
    r = await search(c, alice, "otter", filter={"types": ["m.room.topic"]})
    assert r["results"] == []
    # paging, recent order and rank order
    for order in ("recent", "rank"):
        seen: list[str] = []
        params: dict[str, str] | None = None
        for _ in range(5):
            page = await search(c, alice, "otter", params=params, order_by=order,
                                filter={"limit": 2})
            seen += [x["result"]["event_id"] for x in page["results"]]
            if "next_batch" not in page:
                break
            params = {"next_batch": page["next_batch"]}
        assert sorted(seen) == sorted(sent + [bob_msg]) and len(seen) == 6, order
    # event_context with profiles, groups, include_state
    r = await search(c, alice, "bob", event_context={"before_limit": 1, "after_limit": 1,
                                                     "include_profile": True},
                     groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]},
                     include_state=True)
    (hit,) = r["results"]
    ctx = hit["context"]
    assert len(ctx["events_before"]) == 1 and ctx["events_after"] == []
    assert ctx["profile_info"][bob.user_id]["displayname"] == "Bobby"
    assert isinstance(ctx["start"], str) and isinstance(ctx["end"], str)
    assert r["groups"]["room_id"][r2]["results"] == [bob_msg]
    assert r["groups"]["sender"][bob.user_id]["order"] == 1
    assert any(e["type"] == "m.room.create" for e in r["state"][r2])


async def test_encrypted_messages_are_not_found(c: Client) -> None:
    u = await c.register()
    room = await c.create_room(u, initial_state=[{
        "type": "m.room.encryption", "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    status, _ = await c.request("PUT", f"/rooms/{room}/send/m.room.encrypted/t1", {
        "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "narwhal", "sender_key": "k",
        "session_id": "s", "device_id": "D"}, u.access_token)
    assert status == 200
    assert (await search(c, u, "narwhal"))["results"] == []


async def test_bad_input(c: Client) -> None:
    u = await c.register()
    for body, code in (({}, "M_BAD_JSON"),
                       ({"search_categories": {"room_events": {}}}, "M_BAD_JSON"),
                       ({"search_categories": {"room_events": {"search_term": ""}}},
                        "M_BAD_JSON"),
                       ({"search_categories": {"room_events": {"search_term": "x",
                                                               "order_by": "best"}}},
                        "M_BAD_JSON"),
                       ({"search_categories": {"room_events": {"search_term": "x",
                                                               "keys": ["content.url"]}}},
                        "M_BAD_JSON"),
                       ({"search_categories": {"room_events": {"search_term": "x",
                                                               "filter": {"limit": "3"}}}},
                        "M_BAD_JSON")):
        status, data = await c.request("POST", "/search", body, u.access_token)
        assert status == 400 and data["errcode"] == code, (body, data)
    status, data = await c.request(
        "POST", "/search", {"search_categories": {"room_events": {"search_term": "x"}}},
        u.access_token, params={"next_batch": "zzz"})
    assert status == 400 and data["errcode"] == "M_INVALID_PARAM"
    # Query syntax never reaches SQL as syntax: odd input is just words.
    r = await search(c, u, "a & | ! ( ) : * ' \" <-> \\")
    assert r["results"] == []
    status, _ = await c.request("POST", "/search", {"search_categories": {}})
    assert status == 401
    status, data = await c.request("POST", "/search", {"search_categories": {}},
                                   u.access_token)
    assert status == 200 and data == {"search_categories": {}}
