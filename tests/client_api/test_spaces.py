"""GET /_matrix/client/v1/rooms/{roomId}/hierarchy and /room_summary: the walk, its order and
paging, suggested_only, max_depth, and who may see which room."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.conftest import Server
from tests.helpers import Client, User

V1 = "/_matrix/client/v1"


async def add_child(c: Client, u: User, space: str, child: str, sn: str, **extra: Any) -> None:
    status, body = await c.request("PUT", f"/rooms/{space}/state/m.space.child/{child}",
                                   {"via": [sn], **extra}, u.access_token)
    assert status == 200, body


async def hierarchy(c: Client, u: User, space: str, **params: str) -> tuple[int, Any]:
    return await c.request("GET", f"{V1}/rooms/{space}/hierarchy", token=u.access_token,
                           params=params)


async def test_hierarchy_walk_order_and_visibility(c: Client, server: Server) -> None:
    sn = server.config.server_name
    owner = await c.register()
    viewer = await c.register()
    space = await c.create_room(owner, preset="public_chat", name="Space",
                                creation_content={"type": "m.space"})
    sub = await c.create_room(owner, preset="public_chat", name="Sub",
                              creation_content={"type": "m.space"})
    public = await c.create_room(owner, preset="public_chat", name="Public")
    private = await c.create_room(owner, preset="private_chat", name="Private")
    invited = await c.create_room(owner, preset="private_chat", name="Invited")
    readable = await c.create_room(owner, preset="private_chat", initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility":
                                                          "world_readable"}}])
    deep = await c.create_room(owner, preset="public_chat", name="Deep")
    status, _ = await c.request("POST", f"/rooms/{invited}/invite",
                                {"user_id": viewer.user_id}, owner.access_token)
    assert status == 200
    # Order: valid `order` first (lexicographic), then by timestamp.
    await add_child(c, owner, space, public, sn, order="b")
    await add_child(c, owner, space, sub, sn, order="a", suggested=True)
    await add_child(c, owner, space, private, sn)
    await add_child(c, owner, space, invited, sn)
    await add_child(c, owner, space, readable, sn)
    await add_child(c, owner, sub, deep, sn)
    # A removed child (no via) is not a child.
    status, _ = await c.request("PUT", f"/rooms/{space}/state/m.space.child/!gone:{sn}", {},
                                owner.access_token)
    assert status == 200

    status, body = await hierarchy(c, viewer, space)
    assert status == 200, body
    ids = [r["room_id"] for r in body["rooms"]]
    assert ids == [space, sub, deep, public, invited, readable]  # private is hidden
    assert "next_batch" not in body
    top = body["rooms"][0]
    assert top["name"] == "Space" and top["room_type"] == "m.space"
    assert top["join_rule"] == "public" and top["num_joined_members"] == 1
    assert top["room_version"]
    children = [s["state_key"] for s in top["children_state"]]
    assert children == [sub, public, private, invited, readable]
    assert all(s["type"] == "m.space.child" and s["sender"] == owner.user_id
               and isinstance(s["origin_server_ts"], int) for s in top["children_state"])
    assert body["rooms"][3]["children_state"] == []  # not a space
    # The owner sees the private room too.
    status, body = await hierarchy(c, owner, space)
    assert private in [r["room_id"] for r in body["rooms"]]

    status, body = await hierarchy(c, viewer, space, suggested_only="true")
    assert [r["room_id"] for r in body["rooms"]] == [space, sub]
    status, body = await hierarchy(c, viewer, space, max_depth="1")
    assert deep not in [r["room_id"] for r in body["rooms"]]
    status, body = await hierarchy(c, viewer, space, max_depth="0")
    assert [r["room_id"] for r in body["rooms"]] == [space]

    # Paging: limit 2 at a time gives the same walk.
    seen: list[str] = []
    token = None
    for _ in range(10):
        params = {"limit": "2"} | ({"from": token} if token else {})
        status, body = await hierarchy(c, viewer, space, **params)
        assert status == 200, body
        assert len(body["rooms"]) <= 2
        seen += [r["room_id"] for r in body["rooms"]]
        token = body.get("next_batch")
        if token is None:
            break
    assert seen == [space, sub, deep, public, invited, readable]

    # A token cannot change suggested_only or max_depth.
    status, body = await hierarchy(c, viewer, space, limit="1")
    token = body["next_batch"]
    status, body = await hierarchy(c, viewer, space, **{"from": token, "max_depth": "2"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await hierarchy(c, viewer, space, **{"from": token,
                                                         "suggested_only": "true"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await hierarchy(c, viewer, space, **{"from": "garbage!"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await hierarchy(c, viewer, sub, **{"from": token})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_hierarchy_errors_and_restricted(c: Client, server: Server) -> None:
    sn = server.config.server_name
    owner = await c.register()
    viewer = await c.register()
    private_space = await c.create_room(owner, preset="private_chat",
                                        creation_content={"type": "m.space"})
    status, body = await hierarchy(c, viewer, private_space)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await hierarchy(c, viewer, f"!unknown:{sn}")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await hierarchy(c, viewer, "not-a-room")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    for bad in ({"limit": "0"}, {"limit": "x"}, {"max_depth": "-1"},
                {"suggested_only": "yes"}):
        status, body = await hierarchy(c, owner, private_space, **bad)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), bad
    status, body = await c.request("GET", f"{V1}/rooms/{private_space}/hierarchy")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")

    # A restricted room is visible to members of an allowed room only.
    space = await c.create_room(owner, preset="public_chat", creation_content={"type": "m.space"})
    restricted = await c.create_room(owner, preset="private_chat", initial_state=[
        {"type": "m.room.join_rules", "content": {"join_rule": "restricted", "allow": [
            {"type": "m.room_membership", "room_id": space}]}}])
    await add_child(c, owner, space, restricted, sn)
    status, body = await hierarchy(c, viewer, space)
    assert [r["room_id"] for r in body["rooms"]] == [space]
    await c.join(viewer, space)
    status, body = await hierarchy(c, viewer, space)
    assert [r["room_id"] for r in body["rooms"]] == [space, restricted]
    assert body["rooms"][1]["allowed_room_ids"] == [space]
    assert body["rooms"][1]["join_rule"] == "restricted"


async def test_room_summary(c: Client, server: Server) -> None:
    sn = server.config.server_name
    owner = await c.register()
    viewer = await c.register()
    public = await c.create_room(owner, preset="public_chat", name="Pub", topic="T",
                                 room_alias_name="sum" + owner.user_id[2:8],
                                 initial_state=[{"type": "m.room.encryption", "content": {
                                     "algorithm": "m.megolm.v1.aes-sha2"}}])
    private = await c.create_room(owner, preset="private_chat")
    status, body = await c.request("GET", f"{V1}/room_summary/{public}",
                                   token=viewer.access_token)
    assert status == 200, body
    assert body["room_id"] == public and body["name"] == "Pub" and body["topic"] == "T"
    assert body["join_rule"] == "public" and body["num_joined_members"] == 1
    assert body["encryption"] == "m.megolm.v1.aes-sha2"
    assert body["membership"] == "leave" and body["room_version"]
    assert body["world_readable"] is False and body["guest_can_join"] is False
    alias = body["canonical_alias"]
    # By alias, and unauthenticated (no membership then).
    status, body = await c.request("GET", f"{V1}/room_summary/{quote(alias)}")
    assert status == 200 and body["room_id"] == public and "membership" not in body
    status, body = await c.request(
        "GET", f"/_matrix/client/unstable/im.nheko.summary/summary/{public}")
    assert status == 200 and body["room_id"] == public
    status, body = await c.request("GET", f"{V1}/room_summary/{private}",
                                   token=owner.access_token)
    assert status == 200 and body["membership"] == "join"
    # A private room looks like an unknown one to others.
    for token in (viewer.access_token, None):
        status, body = await c.request("GET", f"{V1}/room_summary/{private}", token=token)
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await c.request("GET", f"{V1}/room_summary/!nope:{sn}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await c.request("GET", f"{V1}/room_summary/{quote('#nope:' + sn)}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await c.request("GET", f"{V1}/room_summary/garbage")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await c.request("GET", f"{V1}/room_summary/{public}", token="bogus")
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
