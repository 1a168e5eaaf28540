"""Invite blocking (spec v1.18, m.invite_permission_config): refused invites, createRoom
leaving the blocked user out, and invites not served by /sync or sliding sync."""

from __future__ import annotations

from tests.helpers import Client, User

CONFIG = "m.invite_permission_config"


async def set_config(c: Client, u: User, content: dict[str, str]) -> None:
    status, body = await c.request("PUT", f"/user/{u.user_id}/account_data/{CONFIG}", content,
                                   u.access_token)
    assert status == 200, body


async def test_blocked_invites_are_refused(c: Client) -> None:
    inviter = await c.register()
    blocker = await c.register()
    friend = await c.register()
    room = await c.create_room(inviter, preset="private_chat")
    await set_config(c, blocker, {"default_action": "block"})
    status, body = await c.request("POST", f"/rooms/{room}/invite",
                                   {"user_id": blocker.user_id}, inviter.access_token)
    assert (status, body["errcode"]) == (403, "M_INVITE_BLOCKED")
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.member/{blocker.user_id}",
                                   {"membership": "invite"}, inviter.access_token)
    assert (status, body["errcode"]) == (403, "M_INVITE_BLOCKED")
    status, body = await c.request("GET", f"/rooms/{room}/members", token=inviter.access_token)
    assert blocker.user_id not in {e["state_key"] for e in body["chunk"]}
    # createRoom succeeds, without the blocked user.
    status, body = await c.request("POST", "/createRoom",
                                   {"invite": [blocker.user_id, friend.user_id]},
                                   inviter.access_token)
    assert status == 200, body
    new = body["room_id"]
    status, body = await c.request("GET", f"/rooms/{new}/members", token=inviter.access_token)
    members = {e["state_key"]: e["content"]["membership"] for e in body["chunk"]}
    assert members == {inviter.user_id: "join", friend.user_id: "invite"}
    # Without default_action, invites work again.
    await set_config(c, blocker, {})
    status, body = await c.request("POST", f"/rooms/{room}/invite",
                                   {"user_id": blocker.user_id}, inviter.access_token)
    assert status == 200, body


async def test_existing_invites_are_not_served(c: Client) -> None:
    inviter = await c.register()
    blocker = await c.register()
    room = await c.create_room(inviter, preset="private_chat")
    status, _ = await c.request("POST", f"/rooms/{room}/invite", {"user_id": blocker.user_id},
                                inviter.access_token)
    assert status == 200
    sync = await c.sync(blocker)
    assert room in sync["rooms"]["invite"]
    await set_config(c, blocker, {"default_action": "block"})
    sync = await c.sync(blocker)
    assert room not in sync.get("rooms", {}).get("invite", {})
    status, data = await c.request("POST", "/_matrix/client/v4/sync",
                                   {"lists": {"all": {"range": [0, 10], "timeline_limit": 1}}},
                                   blocker.access_token)
    assert status == 200, data
    assert room not in data.get("rooms", {}) and data["lists"]["all"]["count"] == 0
    # Other endpoints are not affected: the invite is in the room's state.
    status, body = await c.request("GET", f"/rooms/{room}/state/m.room.member/{blocker.user_id}",
                                   token=inviter.access_token)
    assert body["membership"] == "invite"
    # Blocking off: an initial sync shows the invite again.
    await set_config(c, blocker, {})
    sync = await c.sync(blocker)
    assert room in sync["rooms"]["invite"]
