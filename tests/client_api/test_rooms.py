"""Room endpoints: createRoom, state, members, redaction, event reads, relations and history
visibility, all over real HTTP."""

from __future__ import annotations

import secrets
from typing import Any

from tests.conftest import Server
from tests.helpers import Client, User


async def _state(c: Client, u: User, room: str, etype: str, key: str = "") -> tuple[int, Any]:
    return await c.request("GET", f"/rooms/{room}/state/{etype}/{key}", token=u.access_token)


async def _send(c: Client, u: User, room: str, etype: str, content: dict[str, Any]) -> str:
    status, body = await c.request(
        "PUT", f"/rooms/{room}/send/{etype}/{secrets.token_hex(6)}", content, u.access_token)
    assert status == 200, body
    return str(body["event_id"])


async def _messages(c: Client, u: User, room: str, **params: str) -> tuple[int, Any]:
    params.setdefault("dir", "b")  # required (spec: GET /rooms/{roomId}/messages)
    return await c.request("GET", f"/rooms/{room}/messages", token=u.access_token,
                           params=params)


# ---------------------------------------------------------------------- createRoom


async def test_create_room_private_chat_defaults(c: Client, server: Server) -> None:
    u = await c.register()
    room = await c.create_room(u, preset="private_chat", name="Name", topic="Topic")
    assert room.startswith("!")
    _, create = await _state(c, u, room, "m.room.create")
    assert create["room_version"] == server.config.default_room_version
    assert (await _state(c, u, room, "m.room.join_rules"))[1] == {"join_rule": "invite"}
    assert (await _state(c, u, room, "m.room.history_visibility"))[1] == {
        "history_visibility": "shared"}
    assert (await _state(c, u, room, "m.room.guest_access"))[1] == {"guest_access": "can_join"}
    assert (await _state(c, u, room, "m.room.name"))[1] == {"name": "Name"}
    assert (await _state(c, u, room, "m.room.topic"))[1] == {"topic": "Topic"}
    status, body = await c.request("GET", f"/rooms/{room}/state/m.room.name",
                                   token=u.access_token, params={"format": "event"})
    assert status == 200
    assert body["type"] == "m.room.name"
    assert body["content"] == {"name": "Name"}
    assert body["sender"] == u.user_id
    assert body["state_key"] == ""
    assert body["room_id"] == room
    # Not in the public directory by default.
    status, body = await c.request("GET", f"/directory/list/room/{room}")
    assert body == {"visibility": "private"}


async def test_create_room_public_chat(c: Client) -> None:
    u = await c.register()
    room = await c.create_room(u, preset="public_chat")
    assert (await _state(c, u, room, "m.room.join_rules"))[1] == {"join_rule": "public"}
    assert (await _state(c, u, room, "m.room.history_visibility"))[1] == {
        "history_visibility": "shared"}
    status, body = await _state(c, u, room, "m.room.guest_access")
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"
    # visibility=public without a preset implies public_chat and lists the room.
    room2 = await c.create_room(u, visibility="public")
    assert (await _state(c, u, room2, "m.room.join_rules"))[1] == {"join_rule": "public"}
    status, body = await c.request("GET", f"/directory/list/room/{room2}")
    assert body == {"visibility": "public"}


async def test_create_room_trusted_private_chat_invites(c: Client) -> None:
    u = await c.register()
    friend = await c.register()
    room = await c.create_room(u, preset="trusted_private_chat", invite=[friend.user_id],
                               is_direct=True, room_version="10")
    _, pl = await _state(c, u, room, "m.room.power_levels")
    assert pl["users"] == {u.user_id: 100, friend.user_id: 100}
    status, member = await _state(c, u, room, "m.room.member", friend.user_id)
    assert status == 200
    assert member["membership"] == "invite"
    assert member["is_direct"] is True
    sync = await c.sync(friend)
    invite_state = sync["rooms"]["invite"][room]["invite_state"]["events"]
    mine = [e for e in invite_state if e["type"] == "m.room.member"
            and e["state_key"] == friend.user_id]
    assert mine[0]["content"]["is_direct"] is True
    assert mine[0]["sender"] == u.user_id


async def test_create_room_initial_state_and_pl_override(c: Client) -> None:
    u = await c.register()
    room = await c.create_room(
        u, preset="public_chat", name="From name",
        initial_state=[
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
            {"type": "org.example.custom", "state_key": "k", "content": {"v": 1}},
        ],
        power_level_content_override={"events_default": 10, "users_default": 5},
        room_version="11")
    assert (await _state(c, u, room, "m.room.history_visibility"))[1] == {
        "history_visibility": "joined"}
    assert (await _state(c, u, room, "org.example.custom", "k"))[1] == {"v": 1}
    _, pl = await _state(c, u, room, "m.room.power_levels")
    assert pl["events_default"] == 10
    assert pl["users_default"] == 5
    assert pl["users"][u.user_id] == 100
    assert pl["state_default"] == 50
    assert (await _state(c, u, room, "m.room.name"))[1] == {"name": "From name"}
    # history_visibility from initial_state is not sent twice.
    status, state = await c.request("GET", f"/rooms/{room}/state", token=u.access_token)
    assert [e["type"] for e in state].count("m.room.history_visibility") == 1
    status, msgs = await _messages(c, u, room, limit="50")
    hv = [e for e in msgs["chunk"] if e["type"] == "m.room.history_visibility"]
    assert len(hv) == 1


async def test_create_room_versions(c: Client, server: Server) -> None:
    u = await c.register()
    for version in ("10", "11", "12"):
        room = await c.create_room(u, room_version=version)
        _, create = await _state(c, u, room, "m.room.create")
        assert create["room_version"] == version
        if version == "12":
            assert ":" not in room
            assert "creator" not in create
        else:
            assert room.endswith(":" + server.config.server_name)
        if version == "10":
            assert create["creator"] == u.user_id
        eid = await c.send(u, room, f"hello v{version}")
        status, ev = await c.request("GET", f"/rooms/{room}/event/{eid}", token=u.access_token)
        assert status == 200
        assert ev["room_id"] == room
        status, joined = await c.request("GET", "/joined_rooms", token=u.access_token)
        assert room in joined["joined_rooms"]
    status, body = await c.request("POST", "/createRoom", {"room_version": "999"},
                                   token=u.access_token)
    assert status == 400
    assert body["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"


async def test_create_room_bad_requests(c: Client) -> None:
    u = await c.register()
    status, body = await c.request("POST", "/createRoom", {"preset": "nope"},
                                   token=u.access_token)
    assert status == 400
    assert body["errcode"] == "M_BAD_JSON"
    status, body = await c.request("POST", "/createRoom", {"invite": ["not-a-user"]},
                                   token=u.access_token)
    assert status == 400
    assert body["errcode"] == "M_BAD_JSON"
    status, body = await c.request("POST", "/createRoom", {})
    assert status == 401
    assert body["errcode"] == "M_MISSING_TOKEN"


# ---------------------------------------------------------------------- state and members


async def test_state_put_get_and_permissions(c: Client) -> None:
    owner = await c.register()
    member = await c.register()
    outsider = await c.register()
    room = await c.create_room(owner, preset="public_chat")
    await c.join(member, room)
    status, body = await c.request("PUT", f"/rooms/{room}/state/org.example.thing/key1",
                                   {"a": 1}, token=owner.access_token)
    assert status == 200
    eid = body["event_id"]
    status, body = await _state(c, member, room, "org.example.thing", "key1")
    assert status == 200
    assert body == {"a": 1}
    # The same content again is idempotent.
    status, body = await c.request("PUT", f"/rooms/{room}/state/org.example.thing/key1",
                                   {"a": 1}, token=owner.access_token)
    assert body["event_id"] == eid
    # A normal member cannot send state needing PL 50.
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.topic",
                                   {"topic": "mine"}, token=member.access_token)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    # Non-members can neither read nor write state.
    status, body = await _state(c, outsider, room, "org.example.thing", "key1")
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    status, body = await c.request("GET", f"/rooms/{room}/state", token=outsider.access_token)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    status, body = await c.request("PUT", f"/rooms/{room}/state/org.example.thing/key1",
                                   {"a": 2}, token=outsider.access_token)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    status, body = await _state(c, owner, room, "org.example.thing", "missing")
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("GET", "/rooms/!nosuchroom:parley.test/state",
                                   token=owner.access_token)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    # Full state lists each (type, state_key) once.
    status, state = await c.request("GET", f"/rooms/{room}/state", token=member.access_token)
    assert status == 200
    keys = [(e["type"], e["state_key"]) for e in state]
    assert len(keys) == len(set(keys))
    assert ("org.example.thing", "key1") in keys
    assert ("m.room.member", member.user_id) in keys
    # A member who left sees the state as it was when they left.
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, token=member.access_token)
    assert status == 200
    await c.request("PUT", f"/rooms/{room}/state/org.example.thing/key1", {"a": 3},
                    token=owner.access_token)
    status, body = await _state(c, member, room, "org.example.thing", "key1")
    assert status == 200
    assert body == {"a": 1}


async def test_members_and_joined(c: Client) -> None:
    owner = await c.register()
    joiner = await c.register()
    invitee = await c.register()
    leaver = await c.register()
    room = await c.create_room(owner, preset="public_chat")
    await c.join(joiner, room)
    marker = await c.send(owner, room, "marker")
    tl = (await c.sync(owner, filter='{"room": {"timeline": {"limit": 1}}}')
          )["rooms"]["join"][room]["timeline"]
    assert [e["event_id"] for e in tl["events"]] == [marker]
    early = tl["prev_batch"]
    await c.join(leaver, room)
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, token=leaver.access_token)
    assert status == 200
    status, _ = await c.request("POST", f"/rooms/{room}/invite", {"user_id": invitee.user_id},
                                token=owner.access_token)
    assert status == 200

    def memberships(body: Any) -> dict[str, str]:
        return {e["state_key"]: e["content"]["membership"] for e in body["chunk"]}

    status, body = await c.request("GET", f"/rooms/{room}/members", token=joiner.access_token)
    assert status == 200
    assert memberships(body) == {owner.user_id: "join", joiner.user_id: "join",
                                 invitee.user_id: "invite", leaver.user_id: "leave"}
    status, body = await c.request("GET", f"/rooms/{room}/members", token=joiner.access_token,
                                   params={"membership": "join"})
    assert memberships(body) == {owner.user_id: "join", joiner.user_id: "join"}
    status, body = await c.request("GET", f"/rooms/{room}/members", token=joiner.access_token,
                                   params={"not_membership": "leave"})
    assert memberships(body) == {owner.user_id: "join", joiner.user_id: "join",
                                 invitee.user_id: "invite"}
    status, body = await c.request("GET", f"/rooms/{room}/members", token=joiner.access_token,
                                   params={"membership": "invite"})
    assert memberships(body) == {invitee.user_id: "invite"}
    # `at` a point before the leaver and invitee showed up.
    status, body = await c.request("GET", f"/rooms/{room}/members", token=joiner.access_token,
                                   params={"at": early})
    assert status == 200, body
    assert memberships(body) == {owner.user_id: "join", joiner.user_id: "join"}

    outsider = await c.register()
    status, body = await c.request("GET", f"/rooms/{room}/members", token=outsider.access_token)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"

    status, body = await c.request("GET", f"/rooms/{room}/joined_members",
                                   token=joiner.access_token)
    assert status == 200
    owner_local = owner.user_id[1:].split(":")[0]
    assert set(body["joined"]) == {owner.user_id, joiner.user_id}
    assert body["joined"][owner.user_id]["display_name"] == owner_local
    status, body = await c.request("GET", f"/rooms/{room}/joined_members",
                                   token=outsider.access_token)
    assert status == 403

    status, body = await c.request("GET", "/joined_rooms", token=leaver.access_token)
    assert room not in body["joined_rooms"]
    status, body = await c.request("GET", "/joined_rooms", token=invitee.access_token)
    assert room not in body["joined_rooms"]
    status, body = await c.request("GET", "/joined_rooms", token=joiner.access_token)
    assert room in body["joined_rooms"]


# ---------------------------------------------------------------------- redaction and reads


async def test_members_at_prev_batch_is_state_before_first_timeline_event(c: Client) -> None:
    """A prev_batch (and a backwards /messages end) points just before its event: `at` such a
    token gives the membership before that event, not after it."""
    owner, joiner = await c.register(), await c.register()
    room = await c.create_room(owner, preset="public_chat")
    await c.join(joiner, room)

    def memberships(body: Any) -> dict[str, str]:
        return {e["state_key"]: e["content"]["membership"] for e in body["chunk"]}

    # The owner's timeline of one event is the join: prev_batch points just before it.
    tl = (await c.sync(owner, filter='{"room": {"timeline": {"limit": 1}}}')
          )["rooms"]["join"][room]["timeline"]
    assert tl["events"][0]["type"] == "m.room.member"
    assert tl["events"][0]["state_key"] == joiner.user_id
    status, body = await c.request("GET", f"/rooms/{room}/members", token=owner.access_token,
                                   params={"at": tl["prev_batch"]})
    assert status == 200, body
    assert memberships(body) == {owner.user_id: "join"}
    # /messages backwards: `end` points before the oldest event returned (the join).
    status, page = await c.request("GET", f"/rooms/{room}/messages", token=owner.access_token,
                                   params={"dir": "b", "limit": "1"})
    assert status == 200, page
    assert page["chunk"][0]["state_key"] == joiner.user_id
    status, body = await c.request("GET", f"/rooms/{room}/members", token=owner.access_token,
                                   params={"at": page["end"]})
    assert status == 200, body
    assert memberships(body) == {owner.user_id: "join"}
    # The joiner's own first prev_batch sits just before their join: theirs to read.
    tl = (await c.sync(joiner, filter='{"room": {"timeline": {"limit": 1}}}')
          )["rooms"]["join"][room]["timeline"]
    status, body = await c.request("GET", f"/rooms/{room}/members", token=joiner.access_token,
                                   params={"at": tl["prev_batch"]})
    assert status == 200, body
    assert memberships(body) == {owner.user_id: "join"}
    # A sync token means "after everything up to its position".
    now = (await c.sync(owner))["next_batch"]
    status, body = await c.request("GET", f"/rooms/{room}/members", token=owner.access_token,
                                   params={"at": now})
    assert memberships(body) == {owner.user_id: "join", joiner.user_id: "join"}


async def test_redaction(c: Client) -> None:
    owner = await c.register()
    member = await c.register()
    room = await c.create_room(owner, preset="public_chat")
    await c.join(member, room)
    eid = await _send(c, member, room, "m.room.message",
                      {"msgtype": "m.text", "body": "oops", "extra": "x"})
    own = await _send(c, owner, room, "m.room.message", {"msgtype": "m.text", "body": "mine"})
    # A normal member may not redact someone else's event...
    status, body = await c.request("PUT", f"/rooms/{room}/redact/{own}/t1", {},
                                   token=member.access_token)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    status, ev = await c.request("GET", f"/rooms/{room}/event/{own}", token=member.access_token)
    assert ev["content"]["body"] == "mine"
    # ...but the owner (PL 100) may, with a reason.
    status, body = await c.request("PUT", f"/rooms/{room}/redact/{eid}/t2",
                                   {"reason": "spam"}, token=owner.access_token)
    assert status == 200, body
    redaction_id = body["event_id"]
    # Idempotent per transaction id.
    status, body = await c.request("PUT", f"/rooms/{room}/redact/{eid}/t2",
                                   {"reason": "spam"}, token=owner.access_token)
    assert body["event_id"] == redaction_id
    status, ev = await c.request("GET", f"/rooms/{room}/event/{eid}", token=member.access_token)
    assert status == 200
    assert ev["content"] == {}
    assert ev["type"] == "m.room.message"
    assert ev["unsigned"]["redacted_because"]["event_id"] == redaction_id
    assert ev["unsigned"]["redacted_by"] == redaction_id
    assert ev["unsigned"]["redacted_because"]["type"] == "m.room.redaction"
    assert ev["unsigned"]["redacted_because"]["content"]["reason"] == "spam"
    status, msgs = await _messages(c, member, room, limit="10")
    by_id = {e["event_id"]: e for e in msgs["chunk"]}
    assert by_id[eid]["content"] == {}
    assert by_id[eid]["unsigned"]["redacted_because"]["event_id"] == redaction_id
    assert by_id[own]["content"]["body"] == "mine"
    redaction = by_id[redaction_id]
    assert redaction["type"] == "m.room.redaction"
    # A member may redact their own event.
    eid2 = await _send(c, member, room, "m.room.message", {"msgtype": "m.text", "body": "x"})
    status, body = await c.request("PUT", f"/rooms/{room}/redact/{eid2}/t3", {},
                                   token=member.access_token)
    assert status == 200, body
    status, ev = await c.request("GET", f"/rooms/{room}/event/{eid2}", token=owner.access_token)
    assert ev["content"] == {}


async def test_get_event_and_context(c: Client) -> None:
    u = await c.register()
    outsider = await c.register()
    room = await c.create_room(u, preset="private_chat", name="ctx")
    ids = [await c.send(u, room, f"m{i}") for i in range(7)]
    status, ev = await c.request("GET", f"/rooms/{room}/event/{ids[3]}", token=u.access_token)
    assert status == 200
    assert ev["event_id"] == ids[3]
    assert ev["content"] == {"msgtype": "m.text", "body": "m3"}
    assert ev["sender"] == u.user_id
    assert ev["room_id"] == room
    assert isinstance(ev["origin_server_ts"], int)
    assert "transaction_id" in ev.get("unsigned", {})
    status, body = await c.request("GET", f"/rooms/{room}/event/$nope", token=u.access_token)
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("GET", f"/rooms/{room}/event/{ids[3]}",
                                   token=outsider.access_token)
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"

    status, ctx = await c.request("GET", f"/rooms/{room}/context/{ids[3]}",
                                  token=u.access_token, params={"limit": "4"})
    assert status == 200, ctx
    assert ctx["event"]["event_id"] == ids[3]
    # events_before is newest first, events_after oldest first.
    assert [e["event_id"] for e in ctx["events_before"]] == [ids[2], ids[1]]
    assert [e["event_id"] for e in ctx["events_after"]] == [ids[4], ids[5]]
    state_types = {e["type"] for e in ctx["state"]}
    assert {"m.room.create", "m.room.member", "m.room.name"} <= state_types
    # The tokens continue pagination on both sides.
    status, back = await _messages(c, u, room, **{"from": ctx["start"], "dir": "b",
                                                  "limit": "1"})
    assert [e["event_id"] for e in back["chunk"]] == [ids[0]]
    status, fwd = await _messages(c, u, room, **{"from": ctx["end"], "dir": "f", "limit": "1"})
    assert [e["event_id"] for e in fwd["chunk"]] == [ids[6]]
    # /context on a room the user may not read is 403 (Synapse, SyTest), not 404.
    status, body = await c.request("GET", f"/rooms/{room}/context/{ids[3]}",
                                   token=outsider.access_token)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"


async def test_messages_paging(c: Client) -> None:
    u = await c.register()
    room = await c.create_room(u)
    ids = [await c.send(u, room, f"p{i}") for i in range(5)]
    status, page1 = await _messages(c, u, room, dir="b", limit="2")
    assert status == 200
    assert [e["event_id"] for e in page1["chunk"]] == [ids[4], ids[3]]
    status, page2 = await _messages(c, u, room, dir="b", limit="2", **{"from": page1["end"]})
    assert [e["event_id"] for e in page2["chunk"]] == [ids[2], ids[1]]
    status, fwd = await _messages(c, u, room, dir="f", limit="3", **{"from": page2["end"]})
    assert [e["event_id"] for e in fwd["chunk"]] == [ids[1], ids[2], ids[3]]
    status, body = await _messages(c, u, room, dir="x")
    assert status == 400
    status, filtered = await _messages(c, u, room, dir="b", limit="50",
                                       filter='{"types": ["m.room.message"]}')
    assert [e["event_id"] for e in filtered["chunk"]] == ids[::-1]


async def test_relations(c: Client) -> None:
    u = await c.register()
    other = await c.register()
    room = await c.create_room(u, preset="public_chat")
    await c.join(other, room)
    parent = await c.send(u, room, "parent")
    reactions = []
    for key in ("👍", "🎉", "❤️"):
        reactions.append(await _send(c, other, room, "m.reaction", {"m.relates_to": {
            "rel_type": "m.annotation", "event_id": parent, "key": key}}))
    edit = await _send(c, u, room, "m.room.message", {
        "msgtype": "m.text", "body": "* edited", "m.new_content": {"msgtype": "m.text",
                                                                  "body": "edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": parent}})
    # An annotation sent as a different event type, to check the type filter.
    odd = await _send(c, other, room, "org.example.reaction", {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": parent, "key": "x"}})
    base = f"/_matrix/client/v1/rooms/{room}/relations/{parent}"

    status, body = await c.request("GET", base, token=u.access_token)
    assert status == 200, body
    assert [e["event_id"] for e in body["chunk"]] == [odd, edit, *reversed(reactions)]
    assert "next_batch" not in body
    status, body = await c.request("GET", base + "/m.annotation", token=u.access_token)
    assert [e["event_id"] for e in body["chunk"]] == [odd, *reversed(reactions)]
    status, body = await c.request("GET", base + "/m.annotation/m.reaction",
                                   token=u.access_token)
    assert [e["event_id"] for e in body["chunk"]] == list(reversed(reactions))
    status, body = await c.request("GET", base + "/m.replace", token=u.access_token)
    assert [e["event_id"] for e in body["chunk"]] == [edit]
    assert body["chunk"][0]["content"]["m.new_content"] == {"msgtype": "m.text",
                                                            "body": "edited"}
    # Paginate two at a time.
    status, p1 = await c.request("GET", base + "/m.annotation/m.reaction",
                                 token=u.access_token, params={"limit": "2"})
    assert [e["event_id"] for e in p1["chunk"]] == [reactions[2], reactions[1]]
    assert isinstance(p1["next_batch"], str)
    status, p2 = await c.request("GET", base + "/m.annotation/m.reaction",
                                 token=u.access_token,
                                 params={"limit": "2", "from": p1["next_batch"]})
    assert status == 200, p2
    assert [e["event_id"] for e in p2["chunk"]] == [reactions[0]]
    assert "next_batch" not in p2
    # Forwards.
    status, fw = await c.request("GET", base + "/m.annotation/m.reaction",
                                 token=u.access_token, params={"dir": "f"})
    assert [e["event_id"] for e in fw["chunk"]] == reactions
    outsider = await c.register()
    status, body = await c.request("GET", base, token=outsider.access_token)
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"


# ---------------------------------------------------------------------- history visibility


async def _room_with_history(c: Client, owner: User, visibility: str) -> tuple[str, str]:
    room = await c.create_room(owner, preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility",
         "content": {"history_visibility": visibility}}])
    early = await c.send(owner, room, "before anyone came")
    return room, early


async def test_history_joined(c: Client) -> None:
    owner = await c.register()
    late = await c.register()
    room, early = await _room_with_history(c, owner, "joined")
    await c.join(late, room)
    after = await c.send(owner, room, "after the join")
    status, msgs = await _messages(c, late, room, limit="50")
    assert status == 200
    ids = [e["event_id"] for e in msgs["chunk"]]
    assert after in ids
    assert early not in ids
    status, body = await c.request("GET", f"/rooms/{room}/event/{early}",
                                   token=late.access_token)
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("GET", f"/rooms/{room}/context/{early}",
                                   token=late.access_token)
    assert status == 404
    status, ctx = await c.request("GET", f"/rooms/{room}/context/{after}",
                                  token=late.access_token, params={"limit": "20"})
    assert status == 200
    assert early not in [e["event_id"] for e in ctx["events_before"]]
    # The owner still sees everything.
    status, msgs = await _messages(c, owner, room, limit="50")
    assert early in [e["event_id"] for e in msgs["chunk"]]
    # Nor does the late joiner's sync show it.
    sync = await c.sync(late)
    ids = [e["event_id"] for e in sync["rooms"]["join"][room]["timeline"]["events"]]
    assert after in ids
    assert early not in ids


async def test_history_shared(c: Client) -> None:
    owner = await c.register()
    late = await c.register()
    room, early = await _room_with_history(c, owner, "shared")
    await c.join(late, room)
    status, msgs = await _messages(c, late, room, limit="50")
    assert early in [e["event_id"] for e in msgs["chunk"]]
    status, ev = await c.request("GET", f"/rooms/{room}/event/{early}", token=late.access_token)
    assert status == 200
    assert ev["content"]["body"] == "before anyone came"
    status, ctx = await c.request("GET", f"/rooms/{room}/context/{early}",
                                  token=late.access_token)
    assert status == 200
    assert ctx["event"]["event_id"] == early


async def test_history_invited(c: Client) -> None:
    owner = await c.register()
    guest = await c.register()
    room, early = await _room_with_history(c, owner, "invited")
    status, _ = await c.request("POST", f"/rooms/{room}/invite", {"user_id": guest.user_id},
                                token=owner.access_token)
    assert status == 200
    while_invited = await c.send(owner, room, "while invited")
    await c.join(guest, room)
    after = await c.send(owner, room, "after join")
    status, msgs = await _messages(c, guest, room, limit="50")
    ids = [e["event_id"] for e in msgs["chunk"]]
    assert while_invited in ids
    assert after in ids
    assert early not in ids
    status, _ = await c.request("GET", f"/rooms/{room}/event/{early}", token=guest.access_token)
    assert status == 404
    status, _ = await c.request("GET", f"/rooms/{room}/event/{while_invited}",
                                token=guest.access_token)
    assert status == 200


async def test_history_after_leaving(c: Client) -> None:
    owner = await c.register()
    member = await c.register()
    room, early = await _room_with_history(c, owner, "shared")
    await c.join(member, room)
    during = await c.send(owner, room, "while there")
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, token=member.access_token)
    assert status == 200
    later = await c.send(owner, room, "after leaving")
    status, msgs = await _messages(c, member, room, limit="50")
    assert status == 200
    ids = [e["event_id"] for e in msgs["chunk"]]
    assert during in ids
    assert later not in ids
    status, _ = await c.request("GET", f"/rooms/{room}/event/{later}", token=member.access_token)
    assert status == 404
    status, _ = await c.request("GET", f"/rooms/{room}/event/{during}",
                                token=member.access_token)
    assert status == 200


async def test_world_readable(c: Client) -> None:
    owner = await c.register()
    reader = await c.register()
    room, early = await _room_with_history(c, owner, "world_readable")
    status, msgs = await _messages(c, reader, room, limit="50")
    assert status == 200
    assert early in [e["event_id"] for e in msgs["chunk"]]
    status, ev = await c.request("GET", f"/rooms/{room}/event/{early}", token=reader.access_token)
    assert status == 200
    # A non-member of a room that is not world readable is refused.
    private, _ = await _room_with_history(c, owner, "shared")
    status, body = await _messages(c, reader, private)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"


async def test_redacting_state_events_keeps_protected_keys(c: Client) -> None:
    owner = await c.register()
    member = await c.register()
    room = await c.create_room(owner, preset="public_chat", room_version="11")
    await c.join(member, room)
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.topic",
                                   {"topic": "secret"}, token=owner.access_token)
    topic_id = body["event_id"]
    status, member_ev = await c.request("GET", f"/rooms/{room}/state/m.room.member/"
                                        f"{member.user_id}", token=owner.access_token,
                                        params={"format": "event"})
    for eid in (topic_id, member_ev["event_id"]):
        status, body = await c.request("PUT", f"/rooms/{room}/redact/{eid}/{eid[1:9]}", {},
                                       token=owner.access_token)
        assert status == 200, body
    status, ev = await c.request("GET", f"/rooms/{room}/event/{topic_id}",
                                 token=member.access_token)
    assert ev["content"] == {}
    status, ev = await c.request("GET", f"/rooms/{room}/event/{member_ev['event_id']}",
                                 token=member.access_token)
    assert ev["content"] == {"membership": "join"}
    # The redacted topic is what /state returns now.
    status, body = await _state(c, member, room, "m.room.topic")
    assert status == 200
    assert body == {}
    # A later initial sync serves the pruned event as well.
    sync = await c.sync(member)
    tl = sync["rooms"]["join"][room]["timeline"]["events"]
    topic = [e for e in tl if e["event_id"] == topic_id]
    assert topic[0]["content"] == {}
    assert topic[0]["unsigned"]["redacted_because"]["type"] == \
        "m.room.redaction"


async def test_failed_create_room_leaves_nothing_behind(c: Client) -> None:
    """A createRoom whose later events are refused (here: state_default above the creator's
    power) fails as a whole: no room, no events, no alias, no membership."""
    alice = await c.register()
    status, body = await c.request("POST", "/createRoom", {
        "room_alias_name": "doomed" + alice.user_id[2:8],
        "name": "doomed",
        "power_level_content_override": {"state_default": 1000, "users": {alice.user_id: 100}},
        "room_version": "11",
    }, alice.access_token)
    assert status == 400, body
    assert body["errcode"] == "M_INVALID_PARAM"
    status, joined = await c.request("GET", "/joined_rooms", token=alice.access_token)
    assert joined == {"joined_rooms": []}
    status, alias = await c.request(
        "GET", f"/directory/room/%23doomed{alice.user_id[2:8]}:parley.test")
    assert status == 404 and alias["errcode"] == "M_NOT_FOUND"
    sync = await c.sync(alice)
    assert "rooms" not in sync or not sync["rooms"].get("join")
    # The same alias can be used afterwards: nothing was reserved by the failed attempt.
    room = await c.create_room(alice, room_alias_name="doomed" + alice.user_id[2:8])
    status, alias = await c.request(
        "GET", f"/directory/room/%23doomed{alice.user_id[2:8]}:parley.test")
    assert status == 200 and alias["room_id"] == room


async def test_identical_rooms_created_at_once_get_distinct_ids(c: Client) -> None:
    """A v12 room id is its create event's hash: the same user creating the same room many
    times in one millisecond must still get a new room each time (not a 500)."""
    import asyncio

    alice = await c.register()
    ids = await asyncio.gather(*(c.create_room(alice) for _ in range(20)))
    assert len(set(ids)) == 20


async def test_post_send_without_a_transaction_id(c: Client) -> None:
    """POST /rooms/{id}/send/{type} (the r0-era form SyTest and older bots use): each request is
    its own event; its content is checked as PUT's is (NaN, Infinity: M_NOT_JSON; floats:
    M_BAD_JSON; past 65,536 bytes: 413 M_TOO_LARGE) and a refusal sends nothing."""
    u = await c.register()
    room = await c.create_room(u)
    path = f"/rooms/{room}/send/m.room.message"
    ids = []
    for _ in range(2):
        status, body = await c.request("POST", path, {"msgtype": "m.text", "body": "same"},
                                       u.access_token)
        assert status == 200, body
        ids.append(body["event_id"])
    assert ids[0] != ids[1]
    for raw in (b'{"msgtype": "m.text", "body": NaN}', b'{"msgtype": "m.text", "body": Infinity}',
                b'{"msgtype": "m.text", "body": -Infinity}'):
        status, body = await c.request("POST", path, raw=raw, token=u.access_token)
        assert status == 400 and body["errcode"] == "M_NOT_JSON", (raw, body)
    status, body = await c.request("POST", path, {"msgtype": "m.text", "body": 1.1},
                                   u.access_token)
    assert status == 400 and body["errcode"] == "M_BAD_JSON", body
    status, body = await c.request("POST", path, {"msgtype": "m.text", "body": "A" * 70000},
                                   u.access_token)
    assert status == 413 and body["errcode"] == "M_TOO_LARGE", body
    status, body = await c.request("PUT", f"/rooms/{room}/state/oooooooh",
                                   {"key": "O" * 70000}, u.access_token)
    assert status == 413 and body["errcode"] == "M_TOO_LARGE", body
    status, msgs = await _messages(c, u, room, dir="b", limit="5")
    assert [e["event_id"] for e in msgs["chunk"]][:2] == [ids[1], ids[0]]


async def test_messages_of_a_departed_room_page_back_from_the_leave(c: Client) -> None:
    """A former member's /messages without `from` starts where they left: the page holds
    what they saw, not an empty page of what came after (SyTest SPEC-216)."""
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    await c.send(alice, room, "before")
    await c.send(bob, room, "bob's before leaving")
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, bob.access_token)
    assert status == 200
    for i in range(3):
        await c.send(alice, room, f"after {i}")
    status, body = await _messages(c, bob, room, dir="b", limit="2")
    assert status == 200, body
    got = [(e["type"], e["content"].get("body", e["content"].get("membership")))
           for e in body["chunk"]]
    assert got == [("m.room.member", "leave"), ("m.room.message", "bob's before leaving")]
    # From a token of now (a sync's next_batch) too.
    since = (await c.sync(bob))["next_batch"]
    status, body = await _messages(c, bob, room, dir="b", limit="2", **{"from": since})
    assert status == 200, body
    assert [e["type"] for e in body["chunk"]] == ["m.room.member", "m.room.message"]
    # A member still pages from the newest event.
    status, body = await _messages(c, alice, room, dir="b", limit="1")
    assert body["chunk"][0]["content"]["body"] == "after 2"


async def test_messages_forwards_from_a_sync_token_to_the_live_end(c: Client) -> None:
    """Paging forwards from a sync's next_batch gives what came after it and an `end` to go
    on from when more comes (SyTest "A next_batch token can be used in the v1 messages API");
    an empty page, and backwards to the room's start, have no `end`."""
    u = await c.register()
    room = await c.create_room(u)
    await c.send(u, room, "1")
    since = (await c.sync(u))["next_batch"]
    second = await c.send(u, room, "2")
    status, body = await _messages(c, u, room, dir="f", **{"from": since})
    assert status == 200, body
    assert [e["event_id"] for e in body["chunk"]] == [second]
    status, again = await _messages(c, u, room, dir="f", **{"from": body["end"]})
    assert again["chunk"] == [] and "end" not in again  # nothing further: a pager stops
    third = await c.send(u, room, "3")
    status, more = await _messages(c, u, room, dir="f", **{"from": body["end"]})
    assert [e["event_id"] for e in more["chunk"]] == [third]
    status, back = await _messages(c, u, room, dir="b", limit="100")
    assert "end" not in back


async def test_post_redact_without_a_transaction_id(c: Client) -> None:
    """POST /rooms/{id}/redact/{eventId} (the r0-era form, as SyTest's federation tests use):
    the event is redacted; a bad reason is refused and redacts nothing."""
    u = await c.register()
    room = await c.create_room(u)
    kept = await c.send(u, room, "kept")
    gone = await c.send(u, room, "gone")
    status, body = await c.request("POST", f"/rooms/{room}/redact/{kept}", {"reason": 5},
                                   u.access_token)
    assert status == 400 and body["errcode"] == "M_BAD_JSON", body
    status, body = await c.request("POST", f"/rooms/{room}/redact/{gone}", {"reason": "oops"},
                                   u.access_token)
    assert status == 200 and body["event_id"].startswith("$"), body
    for event_id, has_body in ((kept, True), (gone, False)):
        status, ev = await c.request("GET", f"/rooms/{room}/event/{event_id}",
                                     token=u.access_token)
        assert status == 200, ev
        assert ("body" in ev["content"]) is has_body, ev
