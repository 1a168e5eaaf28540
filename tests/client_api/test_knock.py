"""Knocking (POST /knock/{roomIdOrAlias}) and the sync `knock` section, over real HTTP."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from tests.helpers import Client, User

KNOCK_RULE = [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]


async def _knock_room(c: Client, admin: User, **body: Any) -> str:
    return await c.create_room(admin, preset="private_chat", name="Knock here",
                               initial_state=KNOCK_RULE, **body)


async def _knock(c: Client, u: User, room: str, body: Any = None,
                 **params: str) -> tuple[int, Any]:
    return await c.request("POST", f"/knock/{quote(room)}", {} if body is None else body,
                           u.access_token, params=params or None)


async def _membership(c: Client, u: User, room: str, user_id: str) -> str:
    status, body = await c.request("GET", f"/rooms/{room}/state/m.room.member/{user_id}",
                                   token=u.access_token)
    assert status == 200, body
    return str(body["membership"])


async def test_knock_by_id_shows_in_sync_and_admin_timeline(c: Client) -> None:
    admin, bob = await c.register(), await c.register()
    room = await _knock_room(c, admin)
    first_admin = await c.sync(admin)
    first_bob = await c.sync(bob)
    assert "knock" not in first_bob.get("rooms", {})

    status, body = await _knock(c, bob, room, {"reason": "let me in"}, via="example.org")
    assert status == 200, body
    assert body == {"room_id": room}

    synced = await c.sync(bob, first_bob["next_batch"])
    knock = synced["rooms"]["knock"][room]
    events = knock["knock_state"]["events"]
    own = [e for e in events if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert len(own) == 1
    assert own[0]["content"]["membership"] == "knock"
    assert own[0]["content"]["reason"] == "let me in"
    assert own[0]["sender"] == bob.user_id
    types = {e["type"] for e in events}
    assert {"m.room.create", "m.room.join_rules", "m.room.name"} <= types
    rules = [e for e in events if e["type"] == "m.room.join_rules"]
    assert rules[0]["content"] == {"join_rule": "knock"}
    assert room not in synced["rooms"].get("join", {})
    # Not shown again when nothing changed; shown on an initial sync.
    again = await c.sync(bob, synced["next_batch"])
    assert room not in again.get("rooms", {}).get("knock", {})
    assert room in (await c.sync(bob))["rooms"]["knock"]

    # The admin sees the knock in the room timeline (a state event).
    admin_sync = await c.sync(admin, first_admin["next_batch"])
    timeline = admin_sync["rooms"]["join"][room]["timeline"]["events"]
    knocks = [e for e in timeline if e["type"] == "m.room.member"
              and e["state_key"] == bob.user_id]
    assert knocks and knocks[-1]["content"]["membership"] == "knock"
    assert await _membership(c, admin, room, bob.user_id) == "knock"


async def test_knock_by_alias(c: Client) -> None:
    admin, bob = await c.register(), await c.register()
    local = "knock" + secrets.token_hex(4)
    room = await _knock_room(c, admin, room_alias_name=local)
    alias = f"#{local}:{admin.user_id.split(':', 1)[1]}"
    status, body = await _knock(c, bob, alias, server_name="elsewhere.example")
    assert status == 200, body
    assert body == {"room_id": room}
    assert await _membership(c, admin, room, bob.user_id) == "knock"


async def test_knock_on_knock_restricted_room(c: Client) -> None:
    admin, bob = await c.register(), await c.register()
    room = await c.create_room(admin, preset="private_chat", initial_state=[
        {"type": "m.room.join_rules", "state_key": "",
         "content": {"join_rule": "knock_restricted", "allow": []}}])
    status, body = await _knock(c, bob, room)
    assert status == 200, body


async def test_knock_after_join_rule_change(c: Client) -> None:
    admin, bob = await c.register(), await c.register()
    room = await c.create_room(admin, preset="private_chat")
    status, body = await _knock(c, bob, room)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN", body
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.join_rules",
                                   {"join_rule": "knock"}, admin.access_token)
    assert status == 200, body
    status, body = await _knock(c, bob, room)
    assert status == 200, body


async def test_knock_forbidden_on_public_and_invite_rooms(c: Client) -> None:
    admin, bob = await c.register(), await c.register()
    for preset in ("public_chat", "private_chat"):
        room = await c.create_room(admin, preset=preset)
        status, body = await _knock(c, bob, room)
        assert status == 403 and body["errcode"] == "M_FORBIDDEN", (preset, body)
    assert "knock" not in (await c.sync(bob)).get("rooms", {})


async def test_knock_forbidden_when_joined_or_invited(c: Client) -> None:
    admin, carol = await c.register(), await c.register()
    room = await _knock_room(c, admin)
    status, body = await _knock(c, admin, room)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN", body
    status, body = await c.request("POST", f"/rooms/{room}/invite", {"user_id": carol.user_id},
                                   admin.access_token)
    assert status == 200, body
    status, body = await _knock(c, carol, room)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN", body


async def test_banned_user_cannot_knock(c: Client) -> None:
    admin, bob = await c.register(), await c.register()
    room = await _knock_room(c, admin)
    status, body = await c.request("POST", f"/rooms/{room}/ban",
                                   {"user_id": bob.user_id, "reason": "no"}, admin.access_token)
    assert status == 200, body
    status, body = await _knock(c, bob, room)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN", body
    assert await _membership(c, admin, room, bob.user_id) == "ban"


async def test_knock_accepted_by_invite_then_join(c: Client) -> None:
    admin, bob = await c.register(), await c.register()
    room = await _knock_room(c, admin)
    status, body = await _knock(c, bob, room)
    assert status == 200, body
    token = (await c.sync(bob))["next_batch"]

    status, body = await c.request("POST", f"/rooms/{room}/invite", {"user_id": bob.user_id},
                                   admin.access_token)
    assert status == 200, body
    synced = await c.sync(bob, token)
    assert room in synced["rooms"]["invite"]
    assert room not in synced["rooms"].get("knock", {})
    invite_state = synced["rooms"]["invite"][room]["invite_state"]["events"]
    assert any(e["type"] == "m.room.member" and e["state_key"] == bob.user_id
               and e["content"]["membership"] == "invite" for e in invite_state)

    await c.join(bob, room)
    synced = await c.sync(bob, synced["next_batch"])
    assert room in synced["rooms"]["join"]
    assert await _membership(c, admin, room, bob.user_id) == "join"


async def test_knock_rejected_by_kick(c: Client) -> None:
    admin, bob = await c.register(), await c.register()
    room = await _knock_room(c, admin)
    status, body = await _knock(c, bob, room)
    assert status == 200, body
    token = (await c.sync(bob))["next_batch"]

    status, body = await c.request("POST", f"/rooms/{room}/kick",
                                   {"user_id": bob.user_id, "reason": "not now"},
                                   admin.access_token)
    assert status == 200, body
    synced = await c.sync(bob, token)
    assert room in synced["rooms"]["leave"]
    assert room not in synced["rooms"].get("knock", {})
    assert await _membership(c, admin, room, bob.user_id) == "leave"
    # A rejected knocker may knock again.
    status, body = await _knock(c, bob, room)
    assert status == 200, body


async def test_knocker_rescinds_with_leave(c: Client) -> None:
    admin, bob = await c.register(), await c.register()
    room = await _knock_room(c, admin)
    status, body = await _knock(c, bob, room)
    assert status == 200, body
    token = (await c.sync(bob))["next_batch"]

    status, body = await c.request("POST", f"/rooms/{room}/leave", {}, bob.access_token)
    assert status == 200, body
    synced = await c.sync(bob, token)
    assert room in synced["rooms"]["leave"]
    assert room not in synced["rooms"].get("knock", {})
    assert await _membership(c, admin, room, bob.user_id) == "leave"


async def test_knocker_cannot_send_or_read(c: Client) -> None:
    admin, bob = await c.register(), await c.register()
    room = await _knock_room(c, admin)
    assert (await _knock(c, bob, room))[0] == 200
    status, body = await c.request("PUT", f"/rooms/{room}/send/m.room.message/t1",
                                   {"msgtype": "m.text", "body": "hi"}, bob.access_token)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN", body


async def test_knock_unknown_room_or_alias(c: Client) -> None:
    bob = await c.register()
    server = bob.user_id.split(":", 1)[1]
    status, body = await _knock(c, bob, f"!nosuchroom{secrets.token_hex(4)}:{server}")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND", body
    status, body = await _knock(c, bob, f"#nosuchalias{secrets.token_hex(4)}:{server}")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND", body


async def test_knock_bad_bodies(c: Client) -> None:
    admin, bob = await c.register(), await c.register()
    room = await _knock_room(c, admin)
    status, body = await c.request("POST", f"/knock/{room}", raw=b"{not json",
                                   token=bob.access_token)
    assert status == 400 and body["errcode"] == "M_NOT_JSON", body
    status, body = await c.request("POST", f"/knock/{room}", raw=b"[1, 2]",
                                   token=bob.access_token)
    assert status == 400 and body["errcode"] in ("M_BAD_JSON", "M_NOT_JSON"), body
    status, body = await _knock(c, bob, room, {"reason": 5})
    assert status == 400 and body["errcode"] == "M_BAD_JSON", body
    # Nothing was written by the failed attempts; an empty body is fine.
    status, body = await c.request("POST", f"/knock/{room}", raw=b"", token=bob.access_token)
    assert status == 200, body


async def test_knock_requires_auth(c: Client) -> None:
    admin = await c.register()
    room = await _knock_room(c, admin)
    status, body = await c.request("POST", f"/knock/{room}", {})
    assert status == 401 and body["errcode"] == "M_MISSING_TOKEN", body
