"""The membership rules RoomService applies before the auth rules (invite, kick, unban, leave),
the profile and is_direct an invite carries, and the directory's permission checks.

Each refusal is checked for its status, errcode and message and for changing nothing."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import pytest

from tests.client_api.unchanged import changed, digest
from tests.conftest import Server
from tests.helpers import Client, User


class Refusals:
    def __init__(self, c: Client, server: Server) -> None:
        self.c = c
        self.db = server.hs.db

    async def refused(self, method: str, path: str, body: Any, user: User, status: int,
                      errcode: str, error: str) -> None:
        before = await digest(self.db)
        got, data = await self.c.request(method, path, body, user.access_token)
        after = await digest(self.db)
        assert (got, data.get("errcode"), data.get("error")) == (status, errcode, error), data
        assert changed(before, after) == []


@pytest.fixture
def check(c: Client, server: Server) -> Refusals:
    return Refusals(c, server)


async def _membership(c: Client, viewer: User, room: str, user: User) -> str | None:
    status, body = await c.request("GET", f"/rooms/{room}/state/m.room.member/{user.user_id}",
                                   token=viewer.access_token)
    if status == 404:
        return None
    assert status == 200, body
    return str(body["membership"])


async def test_invite_kick_unban_leave_prechecks(c: Client, check: Refusals) -> None:
    owner, bob, carol = await c.register(), await c.register(), await c.register()
    room = await c.create_room(owner, preset="public_chat")
    await c.join(bob, room)
    forbidden = (403, "M_FORBIDDEN")

    # Inviting someone already joined is refused, not turned into an invite.
    await check.refused("POST", f"/rooms/{room}/invite", {"user_id": bob.user_id}, owner,
                        *forbidden, f"{bob.user_id} is already in the room or banned")
    # Unbanning someone who is not banned must not kick them (unban is a leave event).
    await check.refused("POST", f"/rooms/{room}/unban", {"user_id": bob.user_id}, owner,
                        *forbidden, "User is not banned")
    await check.refused("POST", f"/rooms/{room}/unban", {"user_id": carol.user_id}, owner,
                        *forbidden, "User is not banned")
    # Nobody to kick, and nothing to leave, for a user never in the room.
    await check.refused("POST", f"/rooms/{room}/kick", {"user_id": carol.user_id}, owner,
                        *forbidden, f"{carol.user_id} is not in the room")
    await check.refused("POST", f"/rooms/{room}/leave", {}, carol,
                        *forbidden, "You are not a member of this room")
    assert await _membership(c, owner, room, bob) == "join"
    assert await _membership(c, owner, room, carol) is None

    # A banned user cannot be invited back; after an unban they can.
    status, body = await c.request("POST", f"/rooms/{room}/ban",
                                   {"user_id": bob.user_id, "reason": "spam"}, owner.access_token)
    assert status == 200, body
    await check.refused("POST", f"/rooms/{room}/invite", {"user_id": bob.user_id}, owner,
                        *forbidden, f"{bob.user_id} is already in the room or banned")
    status, body = await c.request("POST", f"/rooms/{room}/unban", {"user_id": bob.user_id},
                                   owner.access_token)
    assert status == 200, body
    assert await _membership(c, owner, room, bob) == "leave"
    status, body = await c.request("POST", f"/rooms/{room}/invite", {"user_id": bob.user_id},
                                   owner.access_token)
    assert status == 200, body
    assert await _membership(c, owner, room, bob) == "invite"
    # An invite can be withdrawn with a kick.
    status, body = await c.request("POST", f"/rooms/{room}/kick", {"user_id": bob.user_id},
                                   owner.access_token)
    assert status == 200, body
    assert await _membership(c, owner, room, bob) == "leave"


async def test_invite_carries_profile_reason_and_is_direct(c: Client) -> None:
    owner, friend = await c.register(), await c.register()
    name = "Friend " + secrets.token_hex(3)
    status, _ = await c.request("PUT", f"/profile/{friend.user_id}/displayname",
                                {"displayname": name}, friend.access_token)
    assert status == 200
    room = await c.create_room(owner)
    status, body = await c.request("POST", f"/rooms/{room}/invite",
                                   {"user_id": friend.user_id, "reason": "chat?",
                                    "is_direct": True}, owner.access_token)
    assert status == 200, body
    status, member = await c.request(
        "GET", f"/rooms/{room}/state/m.room.member/{friend.user_id}", token=owner.access_token)
    assert member == {"membership": "invite", "displayname": name, "reason": "chat?",
                      "is_direct": True}


async def test_join_by_alias_and_unknown_rooms(c: Client, server: Server) -> None:
    owner, joiner = await c.register(), await c.register()
    local = "pol" + secrets.token_hex(4)
    room = await c.create_room(owner, preset="public_chat", room_alias_name=local)
    alias = f"#{local}:{server.config.server_name}"
    status, body = await c.request("POST", f"/join/{quote(alias)}", {}, joiner.access_token)
    assert (status, body) == (200, {"room_id": room})
    status, body = await c.request("POST", f"/join/{quote('#nope' + local)}:parley.test", {},
                                   joiner.access_token)
    assert (status, body["errcode"], body["error"]) == (404, "M_NOT_FOUND",
                                                        "Room alias not found")
    status, body = await c.request("POST", "/join/!nosuchroom:parley.test", {},
                                   joiner.access_token)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await c.request("POST", "/rooms/!nosuchroom:parley.test/invite",
                                   {"user_id": owner.user_id}, joiner.access_token)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


async def test_directory_visibility_needs_moderator(c: Client, check: Refusals) -> None:
    owner, member = await c.register(), await c.register()
    room = await c.create_room(owner, preset="public_chat")
    await c.join(member, room)
    await check.refused("PUT", f"/directory/list/room/{room}", {"visibility": "public"}, member,
                        403, "M_FORBIDDEN", "You may not change this room's visibility")
    status, body = await c.request("GET", f"/directory/list/room/{room}")
    assert body == {"visibility": "private"}
    status, _ = await c.request("PUT", f"/directory/list/room/{room}", {"visibility": "public"},
                                owner.access_token)
    assert status == 200
    status, body = await c.request("GET", f"/directory/list/room/{room}")
    assert body == {"visibility": "public"}


async def test_a_kick_does_not_lift_a_ban(c: Client) -> None:
    owner, bob = await c.register(), await c.register()
    room = await c.create_room(owner, preset="public_chat")
    await c.join(bob, room)
    status, _ = await c.request("POST", f"/rooms/{room}/ban", {"user_id": bob.user_id},
                                owner.access_token)
    assert status == 200
    status, body = await c.request("POST", f"/rooms/{room}/kick", {"user_id": bob.user_id},
                                   owner.access_token)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN", body
    status, body = await c.request("POST", f"/rooms/{room}/join", {}, bob.access_token)
    assert status == 403, body  # still banned


async def test_redacting_an_event_of_another_room_is_refused(c: Client) -> None:
    alice = await c.register()
    first = await c.create_room(alice)
    second = await c.create_room(alice)
    event_id = await c.send(alice, first, "stays")
    status, body = await c.request("PUT", f"/rooms/{second}/redact/{event_id}/t1", {},
                                   alice.access_token)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM", body
    status, got = await c.request("GET", f"/rooms/{first}/event/{event_id}",
                                  token=alice.access_token)
    assert status == 200 and got["content"]["body"] == "stays"


async def test_a_member_event_can_be_put_as_state(c: Client) -> None:
    """Clients set a per-room display name by PUTting their own m.room.member."""
    alice = await c.register()
    room = await c.create_room(alice)
    path = f"/rooms/{room}/state/m.room.member/{alice.user_id}"
    status, body = await c.request("PUT", path, {"membership": "join", "displayname": "Al"},
                                   alice.access_token)
    assert status == 200, body
    status, got = await c.request("GET", path, token=alice.access_token)
    assert status == 200 and got == {"membership": "join", "displayname": "Al"}
    status, body = await c.request("PUT", path, {"displayname": "no membership"},
                                   alice.access_token)
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    bob = await c.register()
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.member/{bob.user_id}",
                                   {"membership": "join"}, alice.access_token)
    assert status == 403, body  # the auth rules: nobody joins on another's behalf


async def test_state_after_kick_is_readable_after_ban_is_not(c: Client) -> None:
    """A user who was kicked (or left) still reads the state as it was when they left; a banned
    user reads none of it: 403, as Synapse answers."""
    owner, kicked, banned = await c.register(), await c.register(), await c.register()
    room = await c.create_room(owner, preset="public_chat", name="before")
    for u in (kicked, banned):
        await c.join(u, room)
    for action, u in (("kick", kicked), ("ban", banned)):
        status, body = await c.request("POST", f"/rooms/{room}/{action}",
                                       {"user_id": u.user_id}, owner.access_token)
        assert status == 200, body
    status, _ = await c.request("PUT", f"/rooms/{room}/state/m.room.name", {"name": "after"},
                                owner.access_token)
    assert status == 200
    status, body = await c.request("GET", f"/rooms/{room}/state/m.room.name",
                                   token=kicked.access_token)
    assert (status, body.get("name")) == (200, "before"), body
    for path in ("/state", "/state/m.room.name", f"/state/m.room.member/{banned.user_id}"):
        status, body = await c.request("GET", f"/rooms/{room}{path}", token=banned.access_token)
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), (path, body)
