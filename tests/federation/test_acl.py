"""Two Parley servers and a room's server ACL (m.room.server_acl): once the resident denies
the other server, that server's PDUs, membership handshakes and reads are refused; lifting
the ACL lets it back in."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from federation.client import FederationError
from tests.federation.conftest import Factory, FedServer
from tests.federation.test_resilience import _pdu, _send
from tests.federation.test_rooms import _has, eventually, membership_of, messages


async def test_server_acl_refuses_a_denied_server(make_server: Factory) -> None:
    a: FedServer = await make_server()  # 127.0.0.1:PORT
    b: FedServer = await make_server(host="localhost")
    alice, bob = await a.client.register("alice"), await b.client.register("bob")
    room_id = await b.client.create_room(bob, preset="public_chat")
    status, _ = await a.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                       params={"via": b.name})
    assert status == 200
    await a.client.send(alice, room_id, "before the ACL")
    await eventually(lambda: _has(b.client, bob, room_id, "before the ACL"))
    last = await b.client.send(bob, room_id, "read me")
    await eventually(lambda: _has(a.client, alice, room_id, "read me"))
    fa = a.hs.federation.client
    # An ACL that denies IP literals (A's name is one), whatever the port.
    status, body = await b.client.request(
        "PUT", f"/rooms/{room_id}/state/m.room.server_acl",
        {"allow": ["*"], "deny": ["evil.example"], "allow_ip_literals": False},
        bob.access_token)
    assert status == 200, body
    # A's PDU is refused, with an error for it in the transaction's answer.
    room = await b.hs.rooms.rooms.get(room_id)
    event_id, pdu = _pdu(a, room, alice.user_id, "m.room.message",
                         {"msgtype": "m.text", "body": "denied"})
    answer = await _send(a, b, "acl-1", [pdu])
    assert "server ACL" in answer["pdus"][event_id]["error"]
    assert "denied" not in await messages(b.client, bob, room_id)
    assert await b.hs.db.fetchval("SELECT count(*) FROM events WHERE event_id = $1",
                                  event_id) == 0
    # Handshakes and reads: 403 M_FORBIDDEN. A third server (an IP literal too) cannot join.
    c: FedServer = await make_server()
    carol = await c.client.register("carol")
    status, body = await c.client.request("POST", f"/join/{room_id}", {}, carol.access_token,
                                          params={"via": b.name})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert await membership_of(b, room_id, carol.user_id) is None
    dave = await a.client.register("dave")
    F = "/_matrix/federation/v1"
    for method, path, query in (
            ("GET", f"{F}/make_join/{room_id}/{dave.user_id}", {"ver": "10"}),
            ("GET", f"{F}/make_leave/{room_id}/{alice.user_id}", None),
            ("GET", f"{F}/make_knock/{room_id}/{dave.user_id}", {"ver": "10"}),
            ("GET", f"{F}/event/{last}", None),
            ("GET", f"{F}/state/{room_id}", {"event_id": last}),
            ("GET", f"{F}/state_ids/{room_id}", {"event_id": last}),
            ("GET", f"{F}/event_auth/{room_id}/{last}", None),
            ("GET", f"{F}/backfill/{room_id}", {"v": last}),
            ("POST", f"{F}/get_missing_events/{room_id}", None)):
        with pytest.raises(FederationError) as e:
            await fa.request(b.name, method, path, query=query,
                             body={"latest_events": [last]} if method == "POST" else None)
        assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN"), path
    # A deny by name, port ignored, refuses as well; an allow list that names A lets it in.
    for acl, allowed in (({"allow": ["*"], "deny": ["127.0.0.1"]}, False),
                         ({"allow": ["127.0.0.*"]}, True)):
        status, body = await b.client.request(
            "PUT", f"/rooms/{room_id}/state/m.room.server_acl", acl, bob.access_token)
        assert status == 200, body
        try:
            got = await fa.request(b.name, "GET", f"{F}/event/{last}")
            assert allowed and got["pdus"][0]["content"]["body"] == "read me"
        except FederationError as e:
            assert not allowed and e.status == 403
    # Allowed again: A's PDUs are accepted.
    room = await b.hs.rooms.rooms.get(room_id)
    event_id, pdu = _pdu(a, room, alice.user_id, "m.room.message",
                         {"msgtype": "m.text", "body": "allowed again"})
    answer = await _send(a, b, "acl-2", [pdu])
    assert answer["pdus"][event_id] == {}
    assert "allowed again" in await messages(b.client, bob, room_id)


async def test_server_acl_applies_to_room_edus(make_server: Factory) -> None:
    """Typing and receipts from a denied server are ignored (the spec's rule for room EDUs),
    and the resident sends none of its own to it; other EDUs of the same transaction
    still count."""
    a: FedServer = await make_server()  # 127.0.0.1:PORT, an IP literal
    b: FedServer = await make_server(host="localhost")
    alice, bob = await a.client.register("alice"), await b.client.register("bob")
    room_id = await b.client.create_room(bob, preset="public_chat")
    status, _ = await a.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                       params={"via": b.name})
    assert status == 200
    last = await b.client.send(bob, room_id, "read me")
    await eventually(lambda: _has(a.client, alice, room_id, "read me"))

    def edus(typing: bool) -> list[dict[str, Any]]:
        return [
            {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": alice.user_id,
                                                 "typing": typing}},
            {"edu_type": "m.receipt", "content": {room_id: {"m.read": {alice.user_id: {
                "event_ids": [last], "data": {"ts": 1}}}}}},
            {"edu_type": "m.direct_to_device", "content": {
                "sender": alice.user_id, "type": "m.test", "message_id": f"m{typing}",
                "messages": {bob.user_id: {bob.device_id: {"typing": typing}}}}}]

    async def send(txn: str, typing: bool) -> None:
        await a.hs.federation.client.request(
            b.name, "PUT", f"/_matrix/federation/v1/send/{txn}",
            body={"origin": a.name, "origin_server_ts": 1, "pdus": [], "edus": edus(typing)})

    def ephemeral(sync: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        room = sync.get("rooms", {}).get("join", {}).get(room_id, {})
        return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == kind]

    # Allowed: all three land.
    await send("edu-1", True)
    sync = await b.client.sync(bob)
    assert ephemeral(sync, "m.typing")[0]["content"]["user_ids"] == [alice.user_id]
    assert alice.user_id in ephemeral(sync, "m.receipt")[0]["content"][last]["m.read"]
    assert [m["content"] for m in sync["to_device"]["events"]] == [{"typing": True}]
    since = sync["next_batch"]
    # Denied (IP literals): the typing stop and the receipt are ignored; to-device is not a
    # room EDU and still arrives.
    status, body = await b.client.request(
        "PUT", f"/rooms/{room_id}/state/m.room.server_acl",
        {"allow": ["*"], "allow_ip_literals": False}, bob.access_token)
    assert status == 200, body
    receipts_before = await b.hs.db.fetchval("SELECT count(*) FROM receipts")
    await send("edu-2", False)
    sync = await b.client.sync(bob, since)
    assert [m["content"] for m in sync["to_device"]["events"]] == [{"typing": False}]
    full = await b.client.sync(bob)
    assert ephemeral(full, "m.typing")[0]["content"]["user_ids"] == [alice.user_id]
    assert await b.hs.db.fetchval("SELECT count(*) FROM receipts") == receipts_before
    # And B sends no typing of its own users to A any more.
    await eventually(lambda: _acl_reached(a, room_id))
    status, _ = await b.client.request("PUT", f"/rooms/{room_id}/typing/{bob.user_id}",
                                       {"typing": True, "timeout": 20000}, bob.access_token)
    assert status == 200
    queue = b.hs.federation.sender.queue(a.name)
    assert not any(k[0] == "m.typing" for k in queue.ephemeral)
    await asyncio.sleep(1.0)
    assert not ephemeral(await a.client.sync(alice), "m.typing")


async def _acl_reached(server: FedServer, room_id: str) -> bool:
    room = await server.hs.rooms.rooms.get(room_id)
    return room is not None and ("m.room.server_acl", "") in room.state
