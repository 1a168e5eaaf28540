"""Two Parley servers when things go wrong: a server that is down gets what it missed when it
comes back (also across a restart of the sender), a forged request or PDU changes nothing, a
retried transaction is processed once, concurrent state on both sides resolves the same, and
reads are served only to servers in the room."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest

from federation.client import FederationError
from federation.tls import client_context
from federation.xmatrix import sign_request
from homeserver.events.auth import auth_event_types
from homeserver.events.hashing import finalize_event
from homeserver.signing import ServerSigningKey
from tests.conftest import PgAdmin
from tests.federation.conftest import Factory, FedServer, fed_config, run_server
from tests.federation.pki import Cert, LocalCA
from tests.federation.test_rooms import _has, _is, eventually, messages
from tests.helpers import User


async def _pair(make_server: Factory, **b_overrides: Any) -> tuple[
        FedServer, FedServer, User, User, str]:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost", **b_overrides)
    alice, bob = await a.client.register("alice"), await b.client.register("bob")
    room_id = await b.client.create_room(bob, preset="public_chat")
    status, body = await a.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                          params={"via": b.name})
    assert status == 200, body
    return a, b, alice, bob, room_id


@pytest.mark.parametrize("missed", [9, 45])
async def test_down_server_gets_what_it_missed_across_restarts(
        pg_admin: PgAdmin, tmp_path_factory: pytest.TempPathFactory, server_cert: Cert,
        local_ca: LocalCA, missed: int) -> None:
    """9 missed messages: the 5 resent and 4 fetched with get_missing_events. 45: more than
    get_missing_events reaches (20), so B asks for the state at the gap and accepts the
    newest events with it; it has the latest ones, in order, and the room goes on."""
    names = [await pg_admin.create(), await pg_admin.create()]
    dsn_a, dsn_b = (pg_admin.dsn_for(n) for n in names)
    cfg_a = fed_config(tmp_path_factory.mktemp("a"), server_cert, local_ca.ca_file)
    cfg_b = fed_config(tmp_path_factory.mktemp("b"), server_cert, local_ca.ca_file,
                       host="localhost")
    try:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(run_server(cfg_a, dsn_a))
            b_stack = AsyncExitStack()
            b = await b_stack.enter_async_context(run_server(cfg_b, dsn_b))
            alice, bob = await a.client.register("alice"), await b.client.register("bob")
            room_id = await b.client.create_room(bob, preset="public_chat")
            status, _ = await a.client.request("POST", f"/join/{room_id}", {},
                                               alice.access_token, params={"via": b.name})
            assert status == 200
            await b_stack.aclose()  # B goes down
            a.hs.federation.sender.backoff_base_ms = 100
            a.hs.federation.sender.backoff_max_ms = 300
            sent = [await a.client.send(alice, room_id, f"missed {i}") for i in range(missed)]

            async def queued() -> bool:
                n = await a.hs.db.fetchval("SELECT count(*) FROM federation_outbox")
                failures = await a.hs.db.fetchval(
                    "SELECT max(failures) FROM federation_destinations")
                # After failures the queue keeps each room's latest events only.
                return n == 5 and (failures or 0) > 1
            await eventually(queued)
            # A restarts too: its queue is in the database.
            await stack.aclose()
            a = await stack.enter_async_context(run_server(cfg_a, dsn_a))
            a.hs.federation.sender.backoff_base_ms = 100
            a.hs.federation.sender.backoff_max_ms = 300
            b = await stack.enter_async_context(run_server(cfg_b, dsn_b))
            bob = await b.client.register("bob2")
            await eventually(lambda: _is(b, room_id, alice.user_id, "join"))
            # Only the latest events of the room are resent after the failures; B fetches
            # the rest from A (get_missing_events, then the state at a remaining gap).
            status, _ = await b.client.request("POST", f"/join/{room_id}", {},
                                               bob.access_token)
            assert status == 200
            last = f"missed {missed - 1}"
            await eventually(lambda: _has(b.client, bob, room_id, last), timeout=60)
            got = [m for m in await messages(b.client, bob, room_id) if m.startswith("missed")]
            if missed <= 20:
                assert got == [f"missed {i}" for i in range(missed)]
            else:
                numbers = [int(m.split()[1]) for m in got]
                assert numbers == sorted(numbers) and numbers[-5:] == list(
                    range(missed - 5, missed))
            rb = await b.hs.rooms.rooms.get(room_id)
            assert sent[-1] in rb.extremities
            await eventually(lambda: _outbox_empty(a))
            # The room goes on both ways.
            await b.client.send(bob, room_id, "welcome back")
            await eventually(lambda: _has(a.client, alice, room_id, "welcome back"))
    finally:
        for n in names:
            await pg_admin.drop(n)


async def _outbox_empty(s: FedServer) -> bool:
    return await s.hs.db.fetchval("SELECT count(*) FROM federation_outbox") == 0


def _pdu(a: FedServer, room: Any, sender: str, etype: str, content: dict[str, Any],
         state_key: str | None = None, key: ServerSigningKey | None = None) -> tuple[
        str, dict[str, Any]]:
    rv = room.version
    state = {k: e.event_id for k, e in room.state.items()}
    pdu: dict[str, Any] = {
        "type": etype, "sender": sender, "room_id": room.room_id, "content": content,
        "origin_server_ts": int(time.time() * 1000), "depth": room.depth + 1,
        "prev_events": list(room.extremities),
        "auth_events": [state[k] for k in auth_event_types(rv, etype, sender, state_key,
                                                           content) if k in state]}
    if state_key is not None:
        pdu["state_key"] = state_key
    return finalize_event(pdu, rv, key or a.key, server_name=a.name)


async def _send(a: FedServer, b: FedServer, txn: str, pdus: list[dict[str, Any]]) -> Any:
    return await a.hs.federation.client.request(
        b.name, "PUT", f"/_matrix/federation/v1/send/{txn}",
        body={"origin": a.name, "origin_server_ts": 1, "pdus": pdus, "edus": []})


async def _event_count(s: FedServer) -> int:
    return int(await s.hs.db.fetchval("SELECT count(*) FROM events"))


async def test_bad_pdus_and_forged_transactions_change_nothing(make_server: Factory) -> None:
    a, b, alice, bob, room_id = await _pair(make_server)
    room = await b.hs.rooms.rooms.get(room_id)
    before = await _event_count(b)
    # A forged transaction (signed with a key that is not A's): 401, nothing stored.
    eid, good = _pdu(a, room, alice.user_id, "m.room.message", {"body": "forged"})
    body = {"origin": a.name, "origin_server_ts": 1, "pdus": [good], "edus": []}
    uri = "/_matrix/federation/v1/send/forged1"
    forged = sign_request(ServerSigningKey(a.name, ServerSigningKey.generate(a.name)
                                           .signing_key), "PUT", uri, b.name, body)
    async with b.http.put(b.fed_url + uri, json=body, headers={"Authorization": forged},
                          ssl=client_context(b.config.federation_ca_file)) as resp:
        assert resp.status == 401
        assert (await resp.json())["errcode"] == "M_UNAUTHORIZED"
    assert await _event_count(b) == before
    assert await b.hs.db.fetchval("SELECT count(*) FROM federation_inbound_txns") == 0
    # A PDU signed by another key: dropped, reported as an error.
    bad_id, bad_sig = _pdu(a, room, alice.user_id, "m.room.message", {"body": "bad sig"},
                           key=ServerSigningKey(a.name, ServerSigningKey.generate(a.name)
                                                .signing_key))
    # A PDU whose sender may not send (never joined): rejected.
    outsider = f"@mallory:{a.name}"
    rej_id, rejected = _pdu(a, room, outsider, "m.room.topic", {"topic": "pwned"}, "")
    resp = await _send(a, b, "t1", [bad_sig, rejected])
    # (the rejected one is handled, so no error: that field is for PDUs not processed)
    assert "error" in resp["pdus"][bad_id] and resp["pdus"][rej_id] == {}
    got = await b.hs.rooms._cache.get_many([bad_id, rej_id])
    assert bad_id not in got and got[rej_id].rejected is not None
    status, topic = await b.client.request("GET", f"/rooms/{room_id}/state/m.room.topic",
                                           token=bob.access_token)
    assert status == 404
    # A PDU whose content does not match its hash: kept redacted.
    tid, tampered = _pdu(a, room, alice.user_id, "m.room.message", {"body": "original"})
    tampered = {**tampered, "content": {"body": "changed"}}
    resp = await _send(a, b, "t2", [tampered])
    assert resp["pdus"][tid] == {}
    status, ev = await b.client.request("GET", f"/rooms/{room_id}/event/{tid}",
                                        token=bob.access_token)
    assert status == 200 and ev["content"] == {}
    # The good PDU, sent twice in one transaction id: processed once, same answer.
    room = await b.hs.rooms.rooms.get(room_id)
    gid, good = _pdu(a, room, alice.user_id, "m.room.message", {"body": "good"})
    first = await _send(a, b, "t3", [good])
    count = await _event_count(b)
    again = await _send(a, b, "t3", [good])
    assert first == again == {"pdus": {gid: {}}}
    assert await _event_count(b) == count
    assert "good" in await messages(b.client, bob, room_id)
    # Malformed transactions: 400, nothing stored.
    for bad in ({"pdus": "x"}, {"pdus": [good] * 51}, {"origin": "else.test", "pdus": []}):
        with pytest.raises(FederationError) as e:
            await a.hs.federation.client.request(b.name, "PUT",
                                                 "/_matrix/federation/v1/send/bad", body=bad)
        assert e.value.status == 400 and e.value.errcode == "M_BAD_JSON"


async def test_concurrent_state_resolves_the_same_on_both(make_server: Factory) -> None:
    a, b, alice, bob, room_id = await _pair(make_server)
    status, pl = await b.client.request("GET", f"/rooms/{room_id}/state/m.room.power_levels",
                                        token=bob.access_token)
    pl["users"][alice.user_id] = 100
    status, _ = await b.client.request("PUT", f"/rooms/{room_id}/state/m.room.power_levels",
                                       pl, bob.access_token)
    assert status == 200
    await eventually(lambda: _power(a, room_id, alice.user_id))
    # Both set the topic at the same time: a fork; each side merges the other's branch.
    for i in range(3):
        results = await asyncio.gather(
            a.client.request("PUT", f"/rooms/{room_id}/state/m.room.topic",
                             {"topic": f"A{i}"}, alice.access_token),
            b.client.request("PUT", f"/rooms/{room_id}/state/m.room.topic",
                             {"topic": f"B{i}"}, bob.access_token))
        assert [r[0] for r in results] == [200, 200]

    async def same() -> bool:
        ra, rb = await a.hs.rooms.rooms.get(room_id), await b.hs.rooms.rooms.get(room_id)
        return {k: e.event_id for k, e in ra.state.items()} == {
            k: e.event_id for k, e in rb.state.items()} and await _outbox_empty(
            a) and await _outbox_empty(b)
    await eventually(same, timeout=30)
    # A message after the merge reaches the other side.
    await a.client.send(alice, room_id, "after the fork")
    await eventually(lambda: _has(b.client, bob, room_id, "after the fork"))


async def _power(s: FedServer, room_id: str, user_id: str) -> bool:
    room = await s.hs.rooms.rooms.get(room_id)
    pl = room.state.get(("m.room.power_levels", ""))
    return pl is not None and pl.pdu["content"]["users"].get(user_id) == 100


async def test_reads_are_served_to_servers_in_the_room(make_server: Factory) -> None:
    a, b, alice, bob, room_id = await _pair(make_server)
    c: FedServer = await make_server()
    last = await b.client.send(bob, room_id, "read me")
    await eventually(lambda: _has(a.client, alice, room_id, "read me"))
    ca = a.hs.federation.client
    got = await ca.request(b.name, "GET", f"/_matrix/federation/v1/event/{last}")
    assert got["pdus"][0]["content"]["body"] == "read me"
    ids = await ca.request(b.name, "GET", f"/_matrix/federation/v1/state_ids/{room_id}",
                           query={"event_id": last})
    full = await ca.request(b.name, "GET", f"/_matrix/federation/v1/state/{room_id}",
                            query={"event_id": last})
    assert len(ids["pdu_ids"]) == len(full["pdus"]) >= 5
    assert set(ids["auth_chain_ids"]) <= set(ids["pdu_ids"]) | set(ids["auth_chain_ids"])
    back = await ca.request(b.name, "GET", f"/_matrix/federation/v1/backfill/{room_id}",
                            query={"v": last, "limit": "3"})
    assert len(back["pdus"]) == 3 and back["pdus"][0]["content"]["body"] == "read me"
    missing = await ca.request(b.name, "POST",
                               f"/_matrix/federation/v1/get_missing_events/{room_id}",
                               body={"earliest_events": [], "latest_events": [last],
                                     "limit": 4})
    assert len(missing["events"]) == 4
    depths = [e["depth"] for e in missing["events"]]
    assert depths == sorted(depths)
    chain = await ca.request(b.name, "GET",
                             f"/_matrix/federation/v1/event_auth/{room_id}/{last}")
    assert {e["type"] for e in chain["auth_chain"]} >= {"m.room.create", "m.room.member"}
    # C has nobody in the room: refused.
    for path, query in ((f"/_matrix/federation/v1/event/{last}", None),
                        (f"/_matrix/federation/v1/state_ids/{room_id}", {"event_id": last}),
                        (f"/_matrix/federation/v1/backfill/{room_id}", {"v": last})):
        with pytest.raises(FederationError) as e:
            await c.hs.federation.client.request(b.name, "GET", path, query=query)
        assert e.value.status == 403, path
    with pytest.raises(FederationError) as e:
        await ca.request(b.name, "GET", f"/_matrix/federation/v1/state_ids/{room_id}")
    assert e.value.status == 400 and e.value.errcode == "M_MISSING_PARAM"
