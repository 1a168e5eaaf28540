"""Two Parley servers on loopback over TLS: typing, receipts, presence and to-device messages
cross in both directions and wake a parked /sync on the other side; a to-device message is
delivered once; presence stays home when `presence.federation` is off."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest

from tests.conftest import PgAdmin
from tests.federation.conftest import Factory, FedServer, fed_config, run_server
from tests.federation.pki import Cert, LocalCA
from tests.federation.test_rooms import eventually
from tests.helpers import User


async def shared_room(a: FedServer, b: FedServer) -> tuple[User, User, str]:
    alice, bob = await a.client.register("alice"), await b.client.register("bob")
    room_id = await b.client.create_room(bob, preset="public_chat")
    status, body = await a.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                          params={"via": b.name})
    assert status == 200, body
    return alice, bob, room_id


def ephemeral(sync: dict[str, Any], room_id: str, kind: str) -> list[dict[str, Any]]:
    room = sync.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == kind]


async def woken_by(server: FedServer, user: User, action: Any, timeout: float = 10.0
                   ) -> tuple[dict[str, Any], float]:
    """Start a long-poll /sync for `user`, do `action`, and return what woke it and when."""
    since = (await server.client.sync(user))["next_batch"]
    start = time.monotonic()
    poll = asyncio.create_task(server.client.sync(user, since, timeout=int(timeout * 1000)))
    await asyncio.sleep(0.2)  # the poll is parked
    await action()
    got = await poll
    return got, time.monotonic() - start


async def test_typing_both_ways_wakes_sync(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob, room_id = await shared_room(a, b)

    async def alice_types() -> None:
        status, _ = await a.client.request("PUT", f"/rooms/{room_id}/typing/{alice.user_id}",
                                           {"typing": True, "timeout": 20000},
                                           alice.access_token)
        assert status == 200

    got, took = await woken_by(b, bob, alice_types)
    assert took < 5, took
    assert ephemeral(got, room_id, "m.typing")[0]["content"]["user_ids"] == [alice.user_id]

    async def bob_types() -> None:
        status, _ = await b.client.request("PUT", f"/rooms/{room_id}/typing/{bob.user_id}",
                                           {"typing": True, "timeout": 20000}, bob.access_token)
        assert status == 200

    got, took = await woken_by(a, alice, bob_types)
    assert took < 5
    assert bob.user_id in ephemeral(got, room_id, "m.typing")[0]["content"]["user_ids"]

    # Alice stops: B drops her from the typing set.
    status, _ = await a.client.request("PUT", f"/rooms/{room_id}/typing/{alice.user_id}",
                                       {"typing": False}, alice.access_token)
    assert status == 200

    async def alice_stopped() -> bool:
        room = (await b.client.sync(bob)).get("rooms", {}).get("join", {}).get(room_id, {})
        events = [e for e in room.get("ephemeral", {}).get("events", [])
                  if e["type"] == "m.typing"]
        return bool(events) and alice.user_id not in events[0]["content"]["user_ids"]

    await eventually(alice_stopped)


async def test_receipts_both_ways_including_threads(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob, room_id = await shared_room(a, b)
    event_id = await b.client.send(bob, room_id, "read me")

    await eventually(lambda: _known(a, event_id))

    async def alice_reads() -> None:
        status, body = await a.client.request(
            "POST", f"/rooms/{room_id}/receipt/m.read/{event_id}", {"thread_id": "main"},
            alice.access_token)
        assert status == 200, body

    got, took = await woken_by(b, bob, alice_reads)
    assert took < 5
    receipt = ephemeral(got, room_id, "m.receipt")[0]["content"]
    data = receipt[event_id]["m.read"][alice.user_id]
    assert data["thread_id"] == "main" and isinstance(data["ts"], int)

    own = await a.client.send(alice, room_id, "from alice")
    await eventually(lambda: _known(b, own))

    async def bob_reads() -> None:
        status, _ = await b.client.request("POST", f"/rooms/{room_id}/receipt/m.read/{own}",
                                           {}, bob.access_token)
        assert status == 200

    got, _ = await woken_by(a, alice, bob_reads)
    assert bob.user_id in ephemeral(got, room_id, "m.receipt")[0]["content"][own]["m.read"]
    # A private receipt stays home.
    status, _ = await a.client.request("POST", f"/rooms/{room_id}/receipt/m.read.private/{own}",
                                       {}, alice.access_token)
    assert status == 200
    await asyncio.sleep(1.0)
    sync = await b.client.sync(bob)
    for e in ephemeral(sync, room_id, "m.receipt"):
        assert "m.read.private" not in e["content"].get(own, {})


async def _known(server: FedServer, event_id: str) -> bool:
    got = await server.hs.writer._cache.get_many([event_id]) if server.hs.writer else {}
    return event_id in got


async def test_presence_both_ways(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob, room_id = await shared_room(a, b)

    async def alice_status() -> None:
        status, _ = await a.client.request("PUT", f"/presence/{alice.user_id}/status",
                                           {"presence": "online", "status_msg": "on A"},
                                           alice.access_token)
        assert status == 200

    async def bob_sees_alice() -> Any:
        sync = await b.client.sync(bob)
        return [e for e in sync.get("presence", {}).get("events", [])
                if e["sender"] == alice.user_id and e["content"].get("status_msg") == "on A"]

    await alice_status()
    got = await eventually(bob_sees_alice)
    assert got[0]["content"]["presence"] == "online"
    status, body = await b.client.request("GET", f"/presence/{alice.user_id}/status",
                                          token=bob.access_token)
    assert status == 200 and body["presence"] == "online" and body["status_msg"] == "on A"

    status, _ = await b.client.request("PUT", f"/presence/{bob.user_id}/status",
                                       {"presence": "unavailable", "status_msg": "away"},
                                       bob.access_token)
    assert status == 200

    async def alice_sees_bob() -> Any:
        status, body = await a.client.request("GET", f"/presence/{bob.user_id}/status",
                                              token=alice.access_token)
        return status == 200 and body["presence"] == "unavailable" and \
            body.get("status_msg") == "away"

    await eventually(alice_sees_bob)


async def test_presence_federation_switched_off(make_server: Factory) -> None:
    a: FedServer = await make_server(presence_federation=False)
    b: FedServer = await make_server(host="localhost")
    alice, bob, room_id = await shared_room(a, b)
    status, _ = await a.client.request("PUT", f"/presence/{alice.user_id}/status",
                                       {"presence": "online", "status_msg": "secret"},
                                       alice.access_token)
    assert status == 200
    status, _ = await b.client.request("PUT", f"/presence/{bob.user_id}/status",
                                       {"presence": "online", "status_msg": "hello"},
                                       bob.access_token)
    assert status == 200
    # Typing still crosses (so the queue works), presence does not in either direction.
    status, _ = await a.client.request("PUT", f"/rooms/{room_id}/typing/{alice.user_id}",
                                       {"typing": True, "timeout": 20000}, alice.access_token)

    async def typing_arrived() -> bool:
        return bool(ephemeral(await b.client.sync(bob), room_id, "m.typing"))

    await eventually(typing_arrived)
    await asyncio.sleep(0.5)
    status, body = await b.client.request("GET", f"/presence/{alice.user_id}/status",
                                          token=bob.access_token)
    assert body.get("status_msg") != "secret"
    status, body = await a.client.request("GET", f"/presence/{bob.user_id}/status",
                                          token=alice.access_token)
    assert body.get("status_msg") != "hello"


async def test_to_device_both_ways_exactly_once(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob, _ = await shared_room(a, b)

    async def send(server: FedServer, user: User, to: User, txn: str, n: int) -> None:
        status, body = await server.client.request(
            "PUT", f"/sendToDevice/m.test/{txn}",
            {"messages": {to.user_id: {to.device_id: {"n": n}}}}, user.access_token)
        assert status == 200, body

    async def alice_sends() -> None:
        await send(a, alice, bob, "t1", 1)

    got, took = await woken_by(b, bob, alice_sends)
    assert took < 5
    msgs = got["to_device"]["events"]
    assert msgs == [{"type": "m.test", "sender": alice.user_id, "content": {"n": 1}}]
    since = got["next_batch"]
    # The same txn again is not sent again; later ones arrive in order.
    await send(a, alice, bob, "t1", 1)
    for n in range(2, 6):
        await send(a, alice, bob, f"t{n}", n)

    async def rest() -> Any:
        sync = await b.client.sync(bob, since)
        events = sync.get("to_device", {}).get("events", [])
        return events if len(events) >= 4 else None

    events = await eventually(rest)
    assert [e["content"]["n"] for e in events] == [2, 3, 4, 5]
    # And the other way, to every device of alice ("*").
    status, _ = await b.client.request("PUT", "/sendToDevice/m.test/back",
                                       {"messages": {alice.user_id: {"*": {"n": 9}}}},
                                       bob.access_token)
    assert status == 200

    async def alice_got() -> Any:
        return (await a.client.sync(alice)).get("to_device", {}).get("events")

    got_a = await eventually(alice_got)
    assert got_a == [{"type": "m.test", "sender": bob.user_id, "content": {"n": 9}}]


async def test_presence_pings_and_remote_timeout(make_server: Factory) -> None:
    """An online user's presence is sent again now and then; a remote user whose server goes
    quiet for too long is taken as offline (intervals shortened for the test)."""
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob, _ = await shared_room(a, b)
    ra, rb = a.hs.federation.realtime, b.hs.federation.realtime
    ra.ping_ms, ra.check_interval_s = 300, 0.1
    rb.remote_timeout_ms, rb.check_interval_s = 1500, 0.1
    for r in (ra, rb):  # the timers' loops pick the new interval up when started again
        await r.stop()
        await r.start()
    status, _ = await a.client.request("PUT", f"/presence/{alice.user_id}/status",
                                       {"presence": "online", "status_msg": "here"},
                                       alice.access_token)
    assert status == 200

    async def state_on_b() -> str:
        status, body = await b.client.request("GET", f"/presence/{alice.user_id}/status",
                                              token=bob.access_token)
        assert status == 200, body
        return str(body["presence"])

    async def online() -> bool:
        return await state_on_b() == "online"

    await eventually(online)
    await asyncio.sleep(3.0)  # twice the timeout: the pings keep her online
    assert await state_on_b() == "online"
    ra.ping_ms = 10**9  # A goes quiet

    async def offline() -> bool:
        return await state_on_b() == "offline"

    await eventually(offline, timeout=10)


async def test_websocket_sync_gets_remote_edus(make_server: Factory) -> None:
    """A WebSocket sync on B is pushed A's typing and to-device message as they arrive."""
    from tests.client_api.test_websocket import Socket

    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob, room_id = await shared_room(a, b)
    ws = await b.http.ws_connect(b.client_url + "/_matrix/client/v3/sync",
                                 headers={"Authorization": f"Bearer {bob.access_token}"})
    try:
        sock = Socket(ws)
        await sock.batch()
        status, _ = await a.client.request("PUT", f"/rooms/{room_id}/typing/{alice.user_id}",
                                           {"typing": True, "timeout": 20000},
                                           alice.access_token)
        assert status == 200
        pushed = await sock.until(lambda body: bool(ephemeral(body, room_id, "m.typing")))
        assert ephemeral(pushed, room_id, "m.typing")[0]["content"]["user_ids"] == [
            alice.user_id]
        status, _ = await a.client.request(
            "PUT", "/sendToDevice/m.test/ws1",
            {"messages": {bob.user_id: {bob.device_id: {"over": "socket"}}}},
            alice.access_token)
        assert status == 200
        pushed = await sock.until(lambda body: bool(body.get("to_device", {}).get("events")))
        assert pushed["to_device"]["events"][0]["content"] == {"over": "socket"}
    finally:
        await ws.close()


async def test_durable_edus_survive_downtime_and_restarts(
        pg_admin: PgAdmin, tmp_path_factory: pytest.TempPathFactory, server_cert: Cert,
        local_ca: LocalCA) -> None:
    """To-device messages and device list updates for a server that is down wait in the
    database, survive a restart of the sender, and arrive once, in order."""
    from tests.e2ee.keys import login, new_device, query, upload

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
            alice, bob, _ = await shared_room(a, b)
            status, _ = await upload(a.client, alice,
                                     {"device_keys": new_device(alice).device_keys()})
            assert status == 200
            await query(b.client, bob, {alice.user_id: []})  # B caches alice's list

            async def b_cached(n: int) -> bool:
                return await b.hs.db.fetchval(
                    "SELECT count(*) FROM remote_devices WHERE user_id = $1 AND keys IS NOT"
                    " NULL", alice.user_id) == n

            await eventually(lambda: b_cached(1))
            await b_stack.aclose()  # B goes down
            a.hs.federation.sender.backoff_base_ms = 100
            a.hs.federation.sender.backoff_max_ms = 300
            for n in range(3):
                status, _ = await a.client.request(
                    "PUT", f"/sendToDevice/m.test/d{n}",
                    {"messages": {bob.user_id: {bob.device_id: {"n": n}}}}, alice.access_token)
                assert status == 200
            alice2 = await login(a.client, alice, "ALICETWO")
            status, _ = await upload(a.client, alice2,
                                     {"device_keys": new_device(alice2).device_keys()})
            assert status == 200
            assert await a.hs.db.fetchval("SELECT count(*) FROM federation_edu_outbox") >= 4
            await stack.aclose()  # A restarts too: its EDUs are in the database
            a = await stack.enter_async_context(run_server(cfg_a, dsn_a))
            a.hs.federation.sender.backoff_base_ms = 100
            a.hs.federation.sender.backoff_max_ms = 300
            b = await stack.enter_async_context(run_server(cfg_b, dsn_b))

            async def got_all() -> Any:
                events = (await b.client.sync(bob)).get("to_device", {}).get("events", [])
                return events if len(events) >= 3 else None

            events = await eventually(got_all, timeout=30)
            assert [e["content"]["n"] for e in events] == [0, 1, 2]
            await eventually(lambda: b_cached(2), timeout=30)
            assert await a.hs.db.fetchval("SELECT count(*) FROM federation_edu_outbox") == 0
    finally:
        for n in names:
            await pg_admin.drop(n)


async def test_presence_is_sent_when_rooms_are_first_shared(make_server: Factory) -> None:
    """Presence set before two users share a room reaches the other server when they do,
    both ways, without waiting for a change or a ping."""
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob = await a.client.register("alice"), await b.client.register("bob")
    for c, u, msg in ((a.client, alice, "early alice"), (b.client, bob, "early bob")):
        status, _ = await c.request("PUT", f"/presence/{u.user_id}/status",
                                    {"presence": "online", "status_msg": msg}, u.access_token)
        assert status == 200
    room_id = await b.client.create_room(bob, preset="public_chat")
    status, _ = await a.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                       params={"via": b.name})
    assert status == 200

    async def sees(c: Any, viewer: User, target: User, msg: str) -> bool:
        status, body = await c.request("GET", f"/presence/{target.user_id}/status",
                                       token=viewer.access_token)
        return status == 200 and body.get("status_msg") == msg

    await eventually(lambda: sees(b.client, bob, alice, "early alice"))
    await eventually(lambda: sees(a.client, alice, bob, "early bob"))


async def test_typing_stop_reaches_local_members_of_a_federated_room(
        make_server: Factory) -> None:
    """In a room shared with another server, a local user who stops typing is seen stopping
    by the other local members too (from a sync token taken before the typing began)."""
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, carol = await a.client.register("alice"), await a.client.register("carol")
    bob = await b.client.register("bob")
    room_id = await a.client.create_room(alice, preset="public_chat")
    await a.client.join(carol, room_id)
    status, body = await b.client.request("POST", f"/join/{room_id}", {}, bob.access_token,
                                          params={"server_name": a.name})
    assert status == 200, body
    before = (await a.client.sync(carol))["next_batch"]
    status, _ = await a.client.request("PUT", f"/rooms/{room_id}/typing/{alice.user_id}",
                                       {"typing": True, "timeout": 30000}, alice.access_token)
    assert status == 200

    async def bob_sees_alice_typing() -> bool:
        got = ephemeral(await b.client.sync(bob), room_id, "m.typing")
        return bool(got) and got[0]["content"]["user_ids"] == [alice.user_id]

    await eventually(bob_sees_alice_typing)
    status, _ = await a.client.request("PUT", f"/rooms/{room_id}/typing/{alice.user_id}",
                                       {"typing": False}, alice.access_token)
    assert status == 200
    got = ephemeral(await a.client.sync(carol, since=before, timeout=2000), room_id, "m.typing")
    assert got and got[0]["content"]["user_ids"] == [], got


async def test_a_push_for_an_invite_over_federation_names_the_room(
        make_server: Factory) -> None:
    """The push for an invite from another server names the room from the state the inviting
    server sent with it (this server is not in the room, so has no state of its own)."""
    from tests.client_api.test_push import run_gateway, set_pusher
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob = await a.client.register("alice"), await b.client.register("bob")
    async for gw in run_gateway():
        await set_pusher(b.client, bob, gw.url)
        room_id = await a.client.create_room(alice, preset="private_chat", name="Test Name")
        status, body = await a.client.request("POST", f"/rooms/{room_id}/invite",
                                              {"user_id": bob.user_id}, alice.access_token)
        assert status == 200, body
        calls = await gw.wait_calls(1)
        invite = calls[0]
        assert invite["type"] == "m.room.member" and invite["membership"] == "invite", invite
        assert invite["room_name"] == "Test Name", invite
