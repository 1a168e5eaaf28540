"""Account data (global and per room) and filters."""

from __future__ import annotations

import asyncio

from tests.helpers import Client


async def test_global_account_data(c: Client) -> None:
    u = await c.register()
    other = await c.register()
    status, body = await c.request("GET", f"/user/{u.user_id}/account_data/org.example.x",
                                   token=u.access_token)
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"
    first = await c.sync(u)
    status, body = await c.request("PUT", f"/user/{u.user_id}/account_data/org.example.x",
                                   {"a": 1}, token=u.access_token)
    assert status == 200
    assert body == {}
    status, body = await c.request("GET", f"/user/{u.user_id}/account_data/org.example.x",
                                   token=u.access_token)
    assert status == 200
    assert body == {"a": 1}
    status, body = await c.request("PUT", f"/user/{u.user_id}/account_data/org.example.x",
                                   {"a": 2}, token=u.access_token)
    assert status == 200
    status, body = await c.request("GET", f"/user/{u.user_id}/account_data/org.example.x",
                                   token=u.access_token)
    assert body == {"a": 2}
    # Another user's account data is off limits, both ways.
    status, body = await c.request("GET", f"/user/{u.user_id}/account_data/org.example.x",
                                   token=other.access_token)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    status, body = await c.request("PUT", f"/user/{u.user_id}/account_data/org.example.x",
                                   {"a": 3}, token=other.access_token)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    # Incremental sync shows the latest content once.
    nxt = await c.sync(u, first["next_batch"])
    assert nxt["account_data"]["events"] == [{"type": "org.example.x", "content": {"a": 2}}]
    again = await c.sync(u, nxt["next_batch"])
    assert "account_data" not in again or again["account_data"]["events"] == []
    full = await c.sync(u)
    assert {"type": "org.example.x", "content": {"a": 2}} in full["account_data"]["events"]


async def test_m_direct(c: Client) -> None:
    u = await c.register()
    friend = await c.register()
    room = await c.create_room(u, preset="trusted_private_chat", invite=[friend.user_id],
                               is_direct=True)
    direct = {friend.user_id: [room]}
    status, _ = await c.request("PUT", f"/user/{u.user_id}/account_data/m.direct", direct,
                                token=u.access_token)
    assert status == 200
    status, body = await c.request("GET", f"/user/{u.user_id}/account_data/m.direct",
                                   token=u.access_token)
    assert body == direct
    full = await c.sync(u)
    assert {"type": "m.direct", "content": direct} in full["account_data"]["events"]


async def test_room_account_data(c: Client) -> None:
    u = await c.register()
    other = await c.register()
    room = await c.create_room(u)
    first = await c.sync(u)
    path = f"/user/{u.user_id}/rooms/{room}/account_data/m.tag.like"
    status, body = await c.request("GET", path, token=u.access_token)
    assert status == 404
    status, body = await c.request("PUT", path, {"tags": {"fav": {}}}, token=u.access_token)
    assert status == 200
    assert body == {}
    status, body = await c.request("GET", path, token=u.access_token)
    assert body == {"tags": {"fav": {}}}
    # Room data is not global data.
    status, body = await c.request("GET", f"/user/{u.user_id}/account_data/m.tag.like",
                                   token=u.access_token)
    assert status == 404
    status, body = await c.request("GET", path, token=other.access_token)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    nxt = await c.sync(u, first["next_batch"])
    assert nxt["rooms"]["join"][room]["account_data"]["events"] == [
        {"type": "m.tag.like", "content": {"tags": {"fav": {}}}}]
    assert all(e["type"] != "m.tag.like" for e in nxt.get("account_data", {}).get("events", []))
    full = await c.sync(u)
    assert {"type": "m.tag.like", "content": {"tags": {"fav": {}}}} in \
        full["rooms"]["join"][room]["account_data"]["events"]


async def test_filters(c: Client) -> None:
    u = await c.register()
    other = await c.register()
    flt = {"room": {"timeline": {"limit": 2, "types": ["m.room.message"]},
                    "state": {"lazy_load_members": True}},
           "account_data": {"not_types": ["*"]}}
    status, body = await c.request("POST", f"/user/{u.user_id}/filter", flt,
                                   token=u.access_token)
    assert status == 200
    filter_id = body["filter_id"]
    assert isinstance(filter_id, str)
    status, body = await c.request("GET", f"/user/{u.user_id}/filter/{filter_id}",
                                   token=u.access_token)
    assert status == 200
    assert body == flt
    status, body = await c.request("GET", f"/user/{u.user_id}/filter/{filter_id}",
                                   token=other.access_token)
    assert status == 403
    status, body = await c.request("GET", f"/user/{other.user_id}/filter/{filter_id}",
                                   token=other.access_token)
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("GET", f"/user/{u.user_id}/filter/99999999",
                                   token=u.access_token)
    assert status == 404
    status, body = await c.request("POST", f"/user/{u.user_id}/filter",
                                   {"room": {"timeline": {"limit": "ten"}}}, token=u.access_token)
    assert status == 400
    assert body["errcode"] == "M_BAD_JSON"
    status, body = await c.request("POST", f"/user/{u.user_id}/filter",
                                   {"room": {"timeline": {"types": "m.room.message"}}},
                                   token=u.access_token)
    assert status == 400
    assert body["errcode"] == "M_BAD_JSON"
    status, body = await c.request("POST", f"/user/{other.user_id}/filter", {},
                                   token=u.access_token)
    assert status == 403

    # The filter applies to /sync.
    bob = await c.register()
    room = await c.create_room(u, preset="public_chat")
    await c.join(bob, room)
    await c.request("PUT", f"/user/{u.user_id}/account_data/org.example.hidden", {"x": 1},
                    token=u.access_token)
    ids = [await c.send(u, room, f"m{i}") for i in range(3)]
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.topic", {"topic": "t"},
                                   token=u.access_token)
    assert status == 200
    sync = await c.sync(u, filter=filter_id)
    tl = sync["rooms"]["join"][room]["timeline"]
    # The limit counts the events the filter lets through.
    assert [e["event_id"] for e in tl["events"]] == ids[1:]
    assert all(e["type"] == "m.room.message" for e in tl["events"])
    assert tl["limited"] is True
    assert sync.get("account_data", {}).get("events", []) == []
    # Lazy loading: only the members of the timeline's senders (and the user) are sent.
    members = {e["state_key"] for e in sync["rooms"]["join"][room]["state"]["events"]
               if e["type"] == "m.room.member"}
    assert members == {u.user_id}
    nolazy = await c.sync(u, filter='{"room": {"timeline": {"limit": 1}}}')
    members = {e["state_key"] for e in nolazy["rooms"]["join"][room]["state"]["events"]
               if e["type"] == "m.room.member"}
    assert members == {u.user_id, bob.user_id}
    # An inline filter works as well; a malformed one is rejected.
    sync = await c.sync(u, filter='{"room": {"timeline": {"limit": 1}}}')
    assert len(sync["rooms"]["join"][room]["timeline"]["events"]) == 1
    status, body = await c.request("GET", "/sync", token=u.access_token,
                                   params={"filter": "{not json"})
    assert status == 400
    assert body["errcode"] == "M_NOT_JSON"


async def test_concurrent_filter_uploads_get_distinct_ids(c: Client) -> None:
    """Uploads at once by one user (SyTest's 80torture/10filters sends 14) once raced for the
    same next id and one got a 500."""
    u = await c.register()
    flts = [{"room": {"timeline": {"limit": i + 1}}} for i in range(12)]
    results = await asyncio.gather(*(
        c.request("POST", f"/user/{u.user_id}/filter", f, token=u.access_token) for f in flts))
    assert [s for s, _ in results] == [200] * len(flts), results
    ids = [b["filter_id"] for _, b in results]
    assert len(set(ids)) == len(ids)
    for f, fid in zip(flts, ids, strict=True):
        status, body = await c.request("GET", f"/user/{u.user_id}/filter/{fid}",
                                       token=u.access_token)
        assert (status, body) == (200, f)


async def test_filter_ids_must_look_like_ids(c: Client) -> None:
    """The spec's filter schema: senders are user ids (^@), rooms are room ids (^!)."""
    u = await c.register()
    for flt in [{"room": {"timeline": {"rooms": ["not_a_room_id"]}}},
                {"room": {"timeline": {"senders": ["not_a_sender_id"]}}},
                {"room": {"not_rooms": ["#alias:x"]}},
                {"presence": {"not_senders": ["bob"]}}]:
        status, body = await c.request("POST", f"/user/{u.user_id}/filter", flt,
                                       token=u.access_token)
        assert (status, body["errcode"]) == (400, "M_BAD_JSON"), (flt, body)
    ok = {"room": {"rooms": ["!r:x"], "timeline": {"senders": ["@a:x"], "not_rooms": ["!s:x"]}}}
    status, body = await c.request("POST", f"/user/{u.user_id}/filter", ok, token=u.access_token)
    assert status == 200, body
