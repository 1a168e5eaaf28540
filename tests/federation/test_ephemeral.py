"""MSC2228 over federation: an event with org.matrix.self_destruct_after received from another
server is expired by the receiving server on its own (its sender's server here has the option
off and keeps it whole)."""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import quote

from tests.federation.conftest import Factory, FedServer
from tests.federation.test_rooms import eventually
from tests.helpers import User

FIELD = "org.matrix.self_destruct_after"


async def _content(s: FedServer, user: User, room: str, eid: str) -> Any:
    status, ev = await s.client.request("GET", f"/rooms/{room}/event/{eid}",
                                        token=user.access_token)
    return ev.get("content") if status == 200 else None


async def test_received_event_expires_on_the_receiving_server(make_server: Factory) -> None:
    a: FedServer = await make_server(enable_ephemeral_messages=True)
    b: FedServer = await make_server(host="localhost")
    alice = await a.client.register("alice")
    bob = await b.client.register("bob")
    room = await b.client.create_room(bob, preset="public_chat", room_alias_name="eph")
    await a.client.join(alice, quote(f"#eph:{b.name}", safe=""))
    status, sent = await b.client.request(
        "PUT", f"/rooms/{room}/send/m.room.message/{secrets.token_hex(4)}",
        {"msgtype": "m.text", "body": "short-lived", FIELD: int(time.time() * 1000) + 2500},
        bob.access_token)
    assert status == 200, sent
    eid = sent["event_id"]
    got = await eventually(lambda: _content(a, alice, room, eid))
    assert got["body"] == "short-lived"  # readable on A before its time

    async def pruned() -> bool:
        return await _content(a, alice, room, eid) == {}

    await eventually(pruned)
    assert (await _content(b, bob, room, eid))["body"] == "short-lived"  # B: option off
