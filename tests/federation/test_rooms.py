"""Two Parley servers on loopback over TLS: joining a room on the other server (by alias and by
invite), messages both ways, leaving, invites both ways and their rejection."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import quote

import pytest

from tests.federation.conftest import Factory, FedServer
from tests.helpers import Client, User


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """Poll until `check` returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def messages(c: Client, user: User, room_id: str) -> list[str]:
    status, body = await c.request("GET", f"/rooms/{room_id}/messages", token=user.access_token,
                                   params={"dir": "b", "limit": "50"})
    assert status == 200, body
    return [e["content"].get("body") for e in reversed(body["chunk"])
            if e["type"] == "m.room.message"]


async def members(c: Client, user: User, room_id: str) -> dict[str, str]:
    status, body = await c.request("GET", f"/rooms/{room_id}/members", token=user.access_token)
    if status != 200:
        return {}
    return {e["state_key"]: e["content"]["membership"] for e in body["chunk"]}


async def membership_of(server: FedServer, room_id: str, user_id: str) -> str | None:
    room = await server.hs.rooms.rooms.get(room_id)
    return room.membership(user_id) if room is not None else None


async def test_join_remote_room_by_alias_chat_and_leave(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice = await a.client.register("alice")
    bob = await b.client.register("bob")
    room_id = await b.client.create_room(bob, preset="public_chat", room_alias_name="lobby",
                                         name="Lobby")
    await b.client.send(bob, room_id, "before alice")
    # Alice joins through B by its alias; A learns the room from B's send_join answer.
    await a.client.join(alice, quote(f"#lobby:{b.name}", safe=""))
    assert await membership_of(b, room_id, alice.user_id) == "join"
    status, name = await a.client.request("GET", f"/rooms/{room_id}/state/m.room.name",
                                          token=alice.access_token)
    assert (status, name) == (200, {"name": "Lobby"})
    assert (await members(a.client, alice, room_id)) == {bob.user_id: "join",
                                                        alice.user_id: "join"}
    # A second user of A joins by the alias: A is in the room, so the join is local, and B
    # learns it through A's sender.
    dave = await a.client.register("dave")
    await a.client.join(dave, quote(f"#lobby:{b.name}", safe=""))
    await eventually(lambda: _is(b, room_id, dave.user_id, "join"))
    status, body = await a.client.request("POST", "/join/" + quote("#nope:" + b.name, safe=""),
                                          {}, dave.access_token)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # Messages both ways, seen in /sync and /messages.
    await a.client.send(alice, room_id, "hello from A")
    await eventually(lambda: _has(b.client, bob, room_id, "hello from A"))
    await b.client.send(bob, room_id, "hello from B")
    await eventually(lambda: _has(a.client, alice, room_id, "hello from B"))
    sync = await a.client.sync(alice)
    timeline = [e.get("content", {}).get("body")
                for e in sync["rooms"]["join"][room_id]["timeline"]["events"]]
    assert "hello from B" in timeline
    # Many messages keep their order on the other side.
    for i in range(12):
        await a.client.send(alice, room_id, f"burst {i}")
    await eventually(lambda: _has(b.client, bob, room_id, "burst 11"))
    got = [m for m in await messages(b.client, bob, room_id) if m.startswith("burst")]
    assert got == [f"burst {i}" for i in range(12)]
    # Alice leaves: B sees it, and messages after it no longer reach A.
    status, _ = await a.client.request("POST", f"/rooms/{room_id}/leave", {},
                                       alice.access_token)
    assert status == 200
    await eventually(lambda: _is(b, room_id, alice.user_id, "leave"))
    # Both servers agree on the room's state.
    ra, rb = await a.hs.rooms.rooms.get(room_id), await b.hs.rooms.rooms.get(room_id)
    assert {k: e.event_id for k, e in ra.state.items()} == {
        k: e.event_id for k, e in rb.state.items()}


async def _has(c: Client, user: User, room_id: str, text: str) -> bool:
    return text in await messages(c, user, room_id)


async def _is(server: FedServer, room_id: str, user_id: str, membership: str) -> bool:
    return await membership_of(server, room_id, user_id) == membership


async def test_third_server_learns_of_a_join_through_the_resident(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server()
    c: FedServer = await make_server(host="localhost")
    alice, bob, carol = (await a.client.register("alice"), await b.client.register("bob"),
                         await c.client.register("carol"))
    room_id = await b.client.create_room(bob, preset="public_chat")
    status, _ = await a.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                       params={"via": b.name})
    assert status == 200
    status, _ = await c.client.request("POST", f"/join/{room_id}", {}, carol.access_token,
                                       params={"via": b.name})
    assert status == 200
    # B forwarded carol's join to A (carol's server sent it only to B).
    await eventually(lambda: _is(a, room_id, carol.user_id, "join"))
    await c.client.send(carol, room_id, "hi all")
    await eventually(lambda: _has(a.client, alice, room_id, "hi all"))
    await eventually(lambda: _has(b.client, bob, room_id, "hi all"))


async def test_invites_both_ways_and_rejection(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice = await a.client.register("alice")
    bob = await b.client.register("bob")
    # B invites alice into a private room; she sees the invite in sync and joins.
    room_id = await b.client.create_room(bob, preset="private_chat")
    status, body = await b.client.request("POST", f"/rooms/{room_id}/invite",
                                          {"user_id": alice.user_id}, bob.access_token)
    assert status == 200, body

    async def invited() -> Any:
        sync = await a.client.sync(alice)
        return sync.get("rooms", {}).get("invite", {}).get(room_id)

    inv = await eventually(invited)
    events = inv["invite_state"]["events"]
    assert any(e["type"] == "m.room.member" and e["state_key"] == alice.user_id and
               e["content"]["membership"] == "invite" for e in events)
    await a.client.join(alice, room_id)
    assert await membership_of(b, room_id, alice.user_id) == "join"
    await a.client.send(alice, room_id, "thanks for the invite")
    await eventually(lambda: _has(b.client, bob, room_id, "thanks for the invite"))

    # A invites bob into a room on A; bob joins through A.
    room2 = await a.client.create_room(alice, preset="private_chat")
    status, body = await a.client.request("POST", f"/rooms/{room2}/invite",
                                          {"user_id": bob.user_id}, alice.access_token)
    assert status == 200, body
    await eventually(lambda: _is(b, room2, bob.user_id, "invite"))
    await b.client.join(bob, room2)
    assert await membership_of(a, room2, bob.user_id) == "join"

    # An invite rejected: B invites alice again elsewhere, she declines.
    room3 = await b.client.create_room(bob, preset="private_chat")
    status, _ = await b.client.request("POST", f"/rooms/{room3}/invite",
                                       {"user_id": alice.user_id}, bob.access_token)
    assert status == 200
    await eventually(lambda: _is(a, room3, alice.user_id, "invite"))
    status, body = await a.client.request("POST", f"/rooms/{room3}/leave", {},
                                          alice.access_token)
    assert status == 200, body
    assert await membership_of(b, room3, alice.user_id) == "leave"
    assert await membership_of(a, room3, alice.user_id) == "leave"


async def test_invite_to_an_unreachable_server_is_refused(make_server: Factory) -> None:
    a: FedServer = await make_server()
    alice = await a.client.register("alice")
    room_id = await a.client.create_room(alice, preset="private_chat")
    status, body = await a.client.request("POST", f"/rooms/{room_id}/invite",
                                          {"user_id": "@bob:127.0.0.1:1"}, alice.access_token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert await membership_of(a, room_id, "@bob:127.0.0.1:1") is None


async def test_leave_then_invited_again_and_rejoin(make_server: Factory) -> None:
    """A remote user who left (so their server is out of the room) and is invited again joins
    again: their server's stale copy of the room gives way to the state of the new join,
    and messages flow both ways once more."""
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice = await a.client.register("alice")
    bob = await b.client.register("bob")
    room_id = await a.client.create_room(alice, preset="private_chat")
    for round_ in range(2):
        status, body = await a.client.request("POST", f"/rooms/{room_id}/invite",
                                              {"user_id": bob.user_id}, alice.access_token)
        assert status == 200, (round_, body)
        await eventually(lambda: _is(b, room_id, bob.user_id, "invite"))
        await a.client.send(alice, room_id, f"while bob was away {round_}")
        await b.client.join(bob, room_id)
        assert await membership_of(a, room_id, bob.user_id) == "join"
        await b.client.send(bob, room_id, f"bob is back {round_}")
        await eventually(partial(_has, a.client, alice, room_id, f"bob is back {round_}"))
        await a.client.send(alice, room_id, f"welcome {round_}")
        await eventually(partial(_has, b.client, bob, room_id, f"welcome {round_}"))
        status, body = await b.client.request("POST", f"/rooms/{room_id}/leave", {},
                                              bob.access_token)
        assert status == 200, body
        await eventually(lambda: _is(a, room_id, bob.user_id, "leave"))


async def test_rejoin_a_public_room_after_leaving(make_server: Factory) -> None:
    """Rejoining a public room all of this server's users had left goes through a resident
    server again (the copy here stopped at the leave): what was said meanwhile is seen and the
    new messages reach the other side."""
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice = await a.client.register("alice")
    bob = await b.client.register("bob")
    room_id = await a.client.create_room(alice, preset="public_chat")
    status, body = await b.client.request("POST", f"/join/{room_id}", {}, bob.access_token,
                                          params={"server_name": a.name})
    assert status == 200, body
    status, body = await b.client.request("POST", f"/rooms/{room_id}/leave", {},
                                          bob.access_token)
    assert status == 200, body
    await eventually(lambda: _is(a, room_id, bob.user_id, "leave"))
    await a.client.send(alice, room_id, "said while bob was away")
    status, body = await a.client.request("PUT", f"/rooms/{room_id}/state/m.room.topic",
                                          {"topic": "new topic"}, alice.access_token)
    assert status == 200, body
    status, body = await b.client.request("POST", f"/join/{room_id}", {}, bob.access_token,
                                          params={"server_name": a.name})
    assert status == 200, body
    assert await membership_of(a, room_id, bob.user_id) == "join"
    status, topic = await b.client.request("GET", f"/rooms/{room_id}/state/m.room.topic",
                                           token=bob.access_token)
    assert status == 200 and topic["topic"] == "new topic", topic
    await b.client.send(bob, room_id, "bob again")
    await eventually(lambda: _has(a.client, alice, room_id, "bob again"))


async def test_create_room_invites_remote_users(make_server: Factory) -> None:
    """createRoom's `invite` list reaches remote invitees through their servers (the invite is
    counter-signed there), beside local ones; an unreachable server's invitee is left out and
    the room is made all the same. The remote invitee can reject it."""
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice = await a.client.register("alice")
    carol = await a.client.register("carol")
    bob = await b.client.register("bob")
    status, body = await a.client.request("POST", "/createRoom", {
        "preset": "private_chat", "is_direct": True,
        "invite": [bob.user_id, carol.user_id, "@nobody:127.0.0.1:1"]}, alice.access_token)
    assert status == 200, body
    room_id = body["room_id"]

    async def invited() -> Any:
        sync = await b.client.sync(bob)
        return sync.get("rooms", {}).get("invite", {}).get(room_id)

    inv = await eventually(invited)
    mine = [e for e in inv["invite_state"]["events"]
            if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert mine and mine[0]["content"]["membership"] == "invite", inv
    assert mine[0]["content"].get("is_direct") is True, mine
    assert await membership_of(a, room_id, carol.user_id) == "invite"
    assert await membership_of(a, room_id, "@nobody:127.0.0.1:1") is None
    status, body = await b.client.request("POST", f"/rooms/{room_id}/leave", {}, bob.access_token)
    assert status == 200, body
    await eventually(lambda: _is(a, room_id, bob.user_id, "leave"))


@pytest.mark.parametrize("version", ["1", "2", "5", "9", "11"])
async def test_join_and_chat_in_older_room_versions(make_server: Factory, version: str) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob = await a.client.register("alice"), await b.client.register("bob")
    room_id = await b.client.create_room(bob, preset="public_chat", room_version=version)
    status, body = await a.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                          params={"via": b.name})
    assert status == 200, body
    room = await a.hs.rooms.rooms.get(room_id)
    assert room.version.identifier == version
    await a.client.send(alice, room_id, f"v{version} from A")
    await eventually(lambda: _has(b.client, bob, room_id, f"v{version} from A"))
    await b.client.send(bob, room_id, f"v{version} from B")
    await eventually(lambda: _has(a.client, alice, room_id, f"v{version} from B"))


async def test_join_a_room_whose_state_is_large(make_server: Factory) -> None:
    """A send_join answer of several hundred KB arrives in many chunks: read to its end."""
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob = await a.client.register("alice"), await b.client.register("bob")
    room_id = await b.client.create_room(bob, preset="public_chat")
    for i in range(6):
        status, body = await b.client.request(
            "PUT", f"/rooms/{room_id}/state/org.example.big/k{i}", {"blob": f"{i}" * 50_000},
            bob.access_token)
        assert status == 200, body
    status, body = await a.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                          params={"via": b.name})
    assert status == 200, body
    room = await a.hs.rooms.rooms.get(room_id)
    assert [room.state[("org.example.big", f"k{i}")].pdu["content"]["blob"][:1]
            for i in range(6)] == [str(i) for i in range(6)]


async def test_invite_blocking_over_federation(make_server: Factory) -> None:
    """Spec v1.18: a user of A who blocks invites makes A refuse B's PUT /v2/invite with
    M_INVITE_BLOCKED, which B passes on to its inviting user."""
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice = await a.client.register("alice")
    bob = await b.client.register("bob")
    status, _ = await a.client.request(
        "PUT", f"/user/{alice.user_id}/account_data/m.invite_permission_config",
        {"default_action": "block"}, alice.access_token)
    assert status == 200
    room_id = await b.client.create_room(bob, preset="private_chat")
    status, body = await b.client.request("POST", f"/rooms/{room_id}/invite",
                                          {"user_id": alice.user_id}, bob.access_token)
    assert (status, body["errcode"]) == (403, "M_INVITE_BLOCKED")


async def test_user_directory_holds_remote_room_mates_until_the_server_leaves(
        make_server: Factory) -> None:
    """Another server's user who shares a room with ours is found in our user directory, with
    the name of their member event; once all our users have left that public room, it is
    only a stale copy here and no longer makes them visible."""
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice = await a.client.register("alice")
    bob = await b.client.register("bob")
    name = "Alice " + secrets.token_hex(4)
    status, _ = await a.client.request("PUT", f"/profile/{alice.user_id}/displayname",
                                       {"displayname": name}, alice.access_token)
    assert status == 200
    room_id = await a.client.create_room(alice, preset="public_chat")
    status, body = await b.client.request("POST", f"/join/{room_id}", {}, bob.access_token,
                                          params={"server_name": a.name})
    assert status == 200, body

    async def found() -> list[dict[str, Any]]:
        status, body = await b.client.request("POST", "/user_directory/search",
                                              {"search_term": name}, bob.access_token)
        assert status == 200, body
        return [r for r in body["results"] if r["user_id"] == alice.user_id]

    hit = await found()
    assert hit and hit[0].get("display_name") == name, hit
    status, body = await b.client.request("POST", f"/rooms/{room_id}/leave", {},
                                          bob.access_token)
    assert status == 200, body
    assert await found() == []


async def test_joining_an_upgraded_room_brings_this_servers_aliases_and_tags(
        make_server: Factory) -> None:
    """When a room is upgraded on another server, this server's first user to join the new
    room brings over this server's aliases and public-directory listing of the old room, and
    their own tags (as the reference server does)."""
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice = await a.client.register("alice")
    bob = await b.client.register("bob")
    old = await a.client.create_room(  # bob may list the room in his server's directory
        alice, preset="public_chat", room_version="10",
        power_level_content_override={"users": {alice.user_id: 100, bob.user_id: 100}})
    status, body = await b.client.request("POST", f"/join/{old}", {}, bob.access_token,
                                          params={"server_name": a.name})
    assert status == 200, body
    alias = f"#remote{secrets.token_hex(3)}:{b.name}"
    for method, path, content in (
            ("PUT", f"/directory/room/{quote(alias)}", {"room_id": old}),
            ("PUT", f"/directory/list/room/{old}", {"visibility": "public"}),
            ("PUT", f"/user/{bob.user_id}/rooms/{old}/tags/u.work", {"order": 0.5})):
        status, body = await b.client.request(method, path, content, bob.access_token)
        assert status == 200, (path, body)
    status, body = await a.client.request("POST", f"/rooms/{old}/upgrade",
                                          {"new_version": "11"}, alice.access_token)
    assert status == 200, body
    new = body["replacement_room"]
    status, body = await b.client.request("POST", f"/join/{new}", {}, bob.access_token,
                                          params={"server_name": a.name})
    assert status == 200, body
    status, body = await b.client.request("GET", f"/directory/room/{quote(alias)}")
    assert status == 200 and body["room_id"] == new, body
    status, body = await b.client.request("GET", "/publicRooms")
    listed = {r["room_id"] for r in body["chunk"]}
    assert new in listed and old not in listed, body
    status, body = await b.client.request("GET", f"/user/{bob.user_id}/rooms/{new}/tags",
                                          token=bob.access_token)
    assert status == 200 and "u.work" in body["tags"], body
