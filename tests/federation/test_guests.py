"""Guests of one server in rooms of another (spec "Guest access"): a guest joins a remote room
only if it allows guests (its state is known from the join's answer, so a guest who got into
one that does not leaves at once), and leaves when the room's server revokes guest access."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.federation.conftest import Factory, FedServer
from tests.federation.test_rooms import eventually, membership_of
from tests.helpers import User


async def guest(server: FedServer) -> User:
    status, data = await server.client.request("POST", "/register", {},
                                               params={"kind": "guest"})
    assert status == 200, data
    return User(data["user_id"], data["access_token"], data["device_id"])


async def test_guest_in_a_remote_room(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    bob = await b.client.register("bob")
    g = await guest(a)
    closed = await b.client.create_room(bob, preset="public_chat", room_alias_name="closed")
    status, data = await a.client.request(
        "POST", f"/join/{quote(f'#closed:{b.name}', safe='')}", {}, g.access_token)
    assert status == 403 and data["errcode"] == "M_FORBIDDEN", data

    async def left() -> Any:
        return await membership_of(b, closed, g.user_id) == "leave"
    await eventually(left)

    room = await b.client.create_room(bob, preset="public_chat", room_alias_name="open")
    status, _ = await b.client.request("PUT", f"/rooms/{room}/state/m.room.guest_access/",
                                       {"guest_access": "can_join"}, bob.access_token)
    assert status == 200
    await a.client.join(g, quote(f"#open:{b.name}", safe=""))
    assert await membership_of(b, room, g.user_id) == "join"
    # B shuts guests out: A, whose guest it is, makes the guest leave
    status, _ = await b.client.request("PUT", f"/rooms/{room}/state/m.room.guest_access/",
                                       {"guest_access": "forbidden"}, bob.access_token)
    assert status == 200

    async def kicked() -> Any:
        return await membership_of(b, room, g.user_id) == "leave"
    await eventually(kicked)
