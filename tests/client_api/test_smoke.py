from __future__ import annotations

import aiohttp

from tests.conftest import Server
from tests.helpers import Client


async def test_register_create_send_sync(server: Server) -> None:
    async with aiohttp.ClientSession() as s:
        c = Client(server.url, s)
        alice = await c.register()
        bob = await c.register()
        room = await c.create_room(alice, preset="public_chat")
        await c.join(bob, room)
        first = await c.sync(bob)
        assert room in first["rooms"]["join"]
        ev = await c.send(alice, room, "hello")
        nxt = await c.sync(bob, first["next_batch"], timeout=5000)
        events = nxt["rooms"]["join"][room]["timeline"]["events"]
        assert [e["event_id"] for e in events] == [ev]
        assert events[0]["content"]["body"] == "hello"
