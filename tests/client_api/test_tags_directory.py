"""Room tags, the user directory and GET /account/3pid, over real HTTP.

The server is shared by the whole run, so directory tests use random names that no other test's
user can match.
"""

from __future__ import annotations

import secrets
from typing import Any

from tests.helpers import Client, User


def room_account_data(sync: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    room = sync.get("rooms", {}).get("join", {}).get(room_id, {})
    return list(room.get("account_data", {}).get("events", []))


def tags_url(user: User, room_id: str, tag: str | None = None) -> str:
    url = f"/user/{user.user_id}/rooms/{room_id}/tags"
    return url if tag is None else f"{url}/{tag}"


# ------------------------------------------------------------------------------------- tags


async def test_put_get_delete_tags(c: Client) -> None:
    u = await c.register()
    room = await c.create_room(u)
    status, body = await c.request("GET", tags_url(u, room), token=u.access_token)
    assert status == 200
    assert body == {"tags": {}}
    first = await c.sync(u)

    status, body = await c.request("PUT", tags_url(u, room, "m.favourite"), {"order": 0.25},
                                   token=u.access_token)
    assert (status, body) == (200, {})
    status, body = await c.request("PUT", tags_url(u, room, "u.work"), {}, token=u.access_token)
    assert (status, body) == (200, {})
    status, body = await c.request("GET", tags_url(u, room), token=u.access_token)
    assert status == 200
    assert body == {"tags": {"m.favourite": {"order": 0.25}, "u.work": {}}}

    # The tags reach sync as the room's m.tag account data, incrementally and in full.
    nxt = await c.sync(u, first["next_batch"])
    tag_events = [e for e in room_account_data(nxt, room) if e["type"] == "m.tag"]
    assert tag_events == [{"type": "m.tag", "content": {
        "tags": {"m.favourite": {"order": 0.25}, "u.work": {}}}}]
    full = await c.sync(u)
    assert {"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.25},
                                                  "u.work": {}}}} in room_account_data(full, room)

    # Replacing a tag changes its order; the generic account data endpoint sees the same event.
    status, _ = await c.request("PUT", tags_url(u, room, "m.favourite"), {"order": 1},
                                token=u.access_token)
    assert status == 200
    status, body = await c.request("GET", f"/user/{u.user_id}/rooms/{room}/account_data/m.tag",
                                   token=u.access_token)
    assert status == 200
    assert body == {"tags": {"m.favourite": {"order": 1}, "u.work": {}}}

    # Deleting removes the tag, and sync shows the remaining ones.
    status, body = await c.request("DELETE", tags_url(u, room, "m.favourite"),
                                   token=u.access_token)
    assert (status, body) == (200, {})
    after = await c.sync(u, nxt["next_batch"])
    assert [e for e in room_account_data(after, room) if e["type"] == "m.tag"] == [
        {"type": "m.tag", "content": {"tags": {"u.work": {}}}}]
    status, _ = await c.request("DELETE", tags_url(u, room, "u.work"), token=u.access_token)
    assert status == 200
    last = await c.sync(u, after["next_batch"])
    assert [e for e in room_account_data(last, room) if e["type"] == "m.tag"] == [
        {"type": "m.tag", "content": {"tags": {}}}]
    status, body = await c.request("GET", tags_url(u, room), token=u.access_token)
    assert body == {"tags": {}}
    # Deleting a tag that is not there is fine.
    status, body = await c.request("DELETE", tags_url(u, room, "u.none"), token=u.access_token)
    assert (status, body) == (200, {})


async def test_tags_are_per_room(c: Client) -> None:
    u = await c.register()
    a, b = await c.create_room(u), await c.create_room(u)
    await c.request("PUT", tags_url(u, a, "m.lowpriority"), {}, token=u.access_token)
    _, body = await c.request("GET", tags_url(u, b), token=u.access_token)
    assert body == {"tags": {}}
    _, body = await c.request("GET", tags_url(u, a), token=u.access_token)
    assert body == {"tags": {"m.lowpriority": {}}}


async def test_tag_validation(c: Client) -> None:
    u = await c.register()
    room = await c.create_room(u)
    for bad in ("high", True, None, [0.5], {"x": 1}):
        status, body = await c.request("PUT", tags_url(u, room, "u.x"), {"order": bad},
                                       token=u.access_token)
        assert status == 400, bad
        assert body["errcode"] == "M_BAD_JSON", bad
    for out_of_range in (-0.1, 1.5, 7):
        status, body = await c.request("PUT", tags_url(u, room, "u.x"), {"order": out_of_range},
                                       token=u.access_token)
        assert status == 400, out_of_range
        assert body["errcode"] == "M_INVALID_PARAM", out_of_range
    for edge in (0, 1, 0.0, 0.999):
        status, _ = await c.request("PUT", tags_url(u, room, "u.x"), {"order": edge},
                                    token=u.access_token)
        assert status == 200, edge
    # Names: up to 255 bytes (counted in UTF-8), no more.
    status, _ = await c.request("PUT", tags_url(u, room, "u." + "a" * 253), {},
                                token=u.access_token)
    assert status == 200
    status, body = await c.request("PUT", tags_url(u, room, "u." + "a" * 254), {},
                                   token=u.access_token)
    assert status == 400
    assert body["errcode"] == "M_INVALID_PARAM"
    status, body = await c.request("PUT", tags_url(u, room, "é" * 128), {},
                                   token=u.access_token)
    assert status == 400
    assert body["errcode"] == "M_INVALID_PARAM"
    status, body = await c.request("PUT", tags_url(u, room, "u.x"), raw=b"not json",
                                   token=u.access_token)
    assert status == 400
    assert body["errcode"] == "M_NOT_JSON"
    status, body = await c.request("PUT", tags_url(u, room, "u.x"), [1], token=u.access_token)
    assert status == 400
    assert body["errcode"] == "M_BAD_JSON"
    status, body = await c.request("GET", f"/user/{u.user_id}/rooms/not-a-room/tags",
                                   token=u.access_token)
    assert status == 400
    assert body["errcode"] == "M_INVALID_PARAM"
    # The failed requests changed nothing.
    _, body = await c.request("GET", tags_url(u, room), token=u.access_token)
    assert set(body["tags"]) == {"u.x", "u." + "a" * 253}
    assert body["tags"]["u.x"] == {"order": 0.999}


async def test_other_users_tags_are_forbidden(c: Client) -> None:
    u = await c.register()
    other = await c.register()
    room = await c.create_room(u)
    await c.request("PUT", tags_url(u, room, "m.favourite"), {}, token=u.access_token)
    for method, url, body in (("GET", tags_url(u, room), None),
                              ("PUT", tags_url(u, room, "u.evil"), {}),
                              ("DELETE", tags_url(u, room, "m.favourite"), None)):
        status, resp = await c.request(method, url, body, token=other.access_token)
        assert status == 403, method
        assert resp["errcode"] == "M_FORBIDDEN", method
    status, resp = await c.request("GET", tags_url(u, room))
    assert status == 401
    assert resp["errcode"] == "M_MISSING_TOKEN"
    _, resp = await c.request("GET", tags_url(u, room), token=u.access_token)
    assert resp == {"tags": {"m.favourite": {}}}


# ------------------------------------------------------------------------- user directory


async def named_user(c: Client, displayname: str, localpart: str | None = None) -> User:
    u = await c.register(localpart)
    status, body = await c.request("PUT", f"/profile/{u.user_id}/displayname",
                                   {"displayname": displayname}, token=u.access_token)
    assert status == 200, body
    return u


async def search(c: Client, user: User, term: str, limit: int | None = None
                 ) -> dict[str, Any]:
    body: dict[str, Any] = {"search_term": term}
    if limit is not None:
        body["limit"] = limit
    status, resp = await c.request("POST", "/user_directory/search", body,
                                   token=user.access_token)
    assert status == 200, resp
    return dict(resp)


def ids(resp: dict[str, Any]) -> set[str]:
    return {r["user_id"] for r in resp["results"]}


async def test_directory_finds_co_members_by_name_and_id(c: Client) -> None:
    tag = secrets.token_hex(4)
    me = await c.register()
    friend = await named_user(c, f"Zelda Q{tag}", f"zelda{tag}")
    # A private room both are in: the friend becomes findable to me.
    room = await c.create_room(me, preset="private_chat", invite=[friend.user_id])
    await c.join(friend, room)

    resp = await search(c, me, f"zelda{tag}")  # localpart
    assert resp["limited"] is False
    assert resp["results"] == [{"user_id": friend.user_id, "display_name": f"Zelda Q{tag}"}]
    assert ids(await search(c, me, f"ZELDA{tag[:3]}")) == {friend.user_id}  # id prefix, any case
    assert ids(await search(c, me, f"q{tag}")) == {friend.user_id}  # second word of the name
    assert ids(await search(c, me, f"zelda q{tag}")) == {friend.user_id}  # every word matches
    assert ids(await search(c, me, friend.user_id)) == {friend.user_id}  # the full user id
    assert ids(await search(c, me, f"zelda x{tag}")) == set()  # one word does not
    assert ids(await search(c, me, f"elda{tag}")) == set()  # not a word prefix
    assert ids(await search(c, me, "   ")) == set()


async def test_directory_finds_public_room_members(c: Client) -> None:
    tag = secrets.token_hex(4)
    me = await c.register()
    owner = await c.register()
    pub = await named_user(c, f"Publicus {tag}")
    room = await c.create_room(owner, preset="public_chat")
    await c.join(pub, room)
    # I share no room with them, but the room's join rule is public.
    assert ids(await search(c, me, f"publicus {tag}")) == {pub.user_id}
    # Once they leave, they are no longer visible.
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, token=pub.access_token)
    assert status == 200
    assert ids(await search(c, me, f"publicus {tag}")) == set()


async def test_directory_finds_world_readable_room_members(c: Client) -> None:
    tag = secrets.token_hex(4)
    me = await c.register()
    owner = await named_user(c, f"Reader {tag}")
    await c.create_room(owner, preset="private_chat", initial_state=[{
        "type": "m.room.history_visibility", "state_key": "",
        "content": {"history_visibility": "world_readable"}}])
    assert ids(await search(c, me, f"reader {tag}")) == {owner.user_id}


async def test_directory_hides_private_rooms_of_others(c: Client) -> None:
    tag = secrets.token_hex(4)
    me = await c.register()
    hidden_a = await named_user(c, f"Hidden {tag} A")
    hidden_b = await named_user(c, f"Hidden {tag} B")
    room = await c.create_room(hidden_a, preset="private_chat", invite=[hidden_b.user_id])
    await c.join(hidden_b, room)
    assert ids(await search(c, me, f"hidden {tag}")) == set()
    # An invite is not a shared room either.
    status, _ = await c.request("POST", f"/rooms/{room}/invite", {"user_id": me.user_id},
                                token=hidden_a.access_token)
    assert status == 200
    assert ids(await search(c, me, f"hidden {tag}")) == set()
    # Joining it makes both findable, and they find me (by my id) and each other.
    await c.join(me, room)
    assert ids(await search(c, me, f"hidden {tag}")) == {hidden_a.user_id, hidden_b.user_id}
    assert me.user_id in ids(await search(c, hidden_a, me.user_id))
    # Leaving hides them again.
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, token=me.access_token)
    assert status == 200
    assert ids(await search(c, me, f"hidden {tag}")) == set()


async def test_directory_limit_and_ranking(c: Client) -> None:
    tag = secrets.token_hex(4)
    me = await named_user(c, f"Limiter {tag} me")
    room = await c.create_room(me, preset="private_chat")
    members = [await named_user(c, f"Limiter {tag} {i}") for i in range(4)]
    for m in members:
        await c.request("POST", f"/rooms/{room}/invite", {"user_id": m.user_id},
                        token=me.access_token)
        await c.join(m, room)
    everyone = {m.user_id for m in members}
    full = await search(c, me, f"limiter {tag}")
    assert ids(full) == everyone  # not my own entry: the room is private
    assert full["limited"] is False
    assert all(r["display_name"].startswith("Limiter") for r in full["results"])
    two = await search(c, me, f"limiter {tag}", limit=2)
    assert len(two["results"]) == 2
    assert two["limited"] is True
    assert two["results"] == full["results"][:2]  # a stable order
    four = await search(c, me, f"limiter {tag}", limit=4)
    assert four["limited"] is False and len(four["results"]) == 4
    zero = await search(c, me, f"limiter {tag}", limit=0)
    assert zero == {"results": [], "limited": True}
    # The default limit is 10.
    status, body = await c.request("POST", "/user_directory/search",
                                   {"search_term": f"limiter {tag}"}, token=me.access_token)
    assert status == 200 and len(body["results"]) == 4
    # An exact display name ranks first.
    exact = await search(c, me, f"Limiter {tag} 3")
    assert exact["results"][0]["user_id"] == members[3].user_id


async def test_directory_bad_requests(c: Client) -> None:
    me = await c.register()
    for body, code in (({}, "M_MISSING_PARAM"), ({"search_term": 5}, "M_BAD_JSON"),
                       ({"search_term": "x", "limit": "3"}, "M_BAD_JSON"),
                       ({"search_term": "x", "limit": 2.5}, "M_BAD_JSON"),
                       ({"search_term": "x", "limit": -1}, "M_INVALID_PARAM")):
        status, resp = await c.request("POST", "/user_directory/search", body,
                                       token=me.access_token)
        assert status == 400, body
        assert resp["errcode"] == code, body
    status, resp = await c.request("POST", "/user_directory/search", {"search_term": "x"})
    assert status == 401
    assert resp["errcode"] == "M_MISSING_TOKEN"
    # Regex and LIKE metacharacters are just text.
    for term in ("%", "_", ".*", "\\", "(", "[a-z]", "a'b"):
        resp = await search(c, me, term)
        assert isinstance(resp["results"], list)


# ----------------------------------------------------------------------------- 3pid


async def test_account_3pid_is_empty(c: Client) -> None:
    me = await c.register()
    status, body = await c.request("GET", "/account/3pid", token=me.access_token)
    assert (status, body) == (200, {"threepids": []})
    status, body = await c.request("GET", "/account/3pid")
    assert status == 401
    # Adding one needs a validated session (tests/client_api/test_threepids.py).
    status, body = await c.request("POST", "/account/3pid/add", {}, token=me.access_token)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_directory_finds_oneself_only_through_a_public_room(c: Client) -> None:
    """Sharing a private room with oneself is not sharing it (the reference server's rule):
    the searcher appears to themself while a room they are in is public or world-readable."""
    tag = secrets.token_hex(4)
    owner = await c.register()
    me = await named_user(c, f"Selfie {tag}")
    room = await c.create_room(owner, preset="private_chat", invite=[me.user_id])
    await c.join(me, room)
    assert ids(await search(c, me, f"selfie {tag}")) == set()
    assert ids(await search(c, owner, f"selfie {tag}")) == {me.user_id}
    for etype, content, found in (
            ("m.room.join_rules", {"join_rule": "public"}, {me.user_id}),
            ("m.room.join_rules", {"join_rule": "invite"}, set()),
            ("m.room.history_visibility", {"history_visibility": "world_readable"},
             {me.user_id}),
            ("m.room.history_visibility", {"history_visibility": "shared"}, set())):
        status, _ = await c.request("PUT", f"/rooms/{room}/state/{etype}/", content,
                                    owner.access_token)
        assert status == 200
        assert ids(await search(c, me, f"selfie {tag}")) == found, (etype, content)
