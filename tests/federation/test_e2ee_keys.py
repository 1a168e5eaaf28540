"""Two Parley servers: /keys/query and /keys/claim for the other server's users, a dead
server's users in `failures`, device list updates both ways (a new device on one server shows
in device_lists.changed and in the keys on the other), a gap in the prev_id chain and a stale
cache resynced through /user/devices."""

from __future__ import annotations

import time
from typing import Any

from tests.e2ee.keys import claim, login, new_cross_signing, new_device, query, upload
from tests.federation.conftest import Factory, FedServer
from tests.federation.test_edus import shared_room
from tests.federation.test_rooms import eventually
from tests.helpers import User


async def _setup_keys(server: FedServer, user: User, otks: int = 3) -> dict[str, Any]:
    dev = new_device(user)
    keys = dev.device_keys()
    status, body = await upload(server.client, user, {"device_keys": keys,
                                                      "one_time_keys": dev.one_time_keys(otks)})
    assert status == 200, body
    return keys


async def _cached_devices(server: FedServer, user_id: str) -> set[str]:
    rows = await server.hs.db.fetch(
        "SELECT d.device_id FROM remote_devices d JOIN remote_device_lists l USING (user_id)"
        " WHERE user_id = $1 AND NOT l.stale AND d.keys IS NOT NULL", user_id)
    return {r["device_id"] for r in rows}


async def test_query_and_claim_across_servers(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob, _ = await shared_room(a, b)
    keys = await _setup_keys(b, bob)
    cs = new_cross_signing(bob.user_id)
    status, body = await b.client.request("POST", "/keys/device_signing/upload",
                                          cs.upload_body(), bob.access_token)
    assert status == 200, body

    # A may have cached bob's list from his first update before the cross-signing keys came
    # (then the m.signing_key_update adds them); either way they are there soon.
    async def with_master() -> Any:
        got = await query(a.client, alice, {bob.user_id: []})
        return got if bob.user_id in got["master_keys"] else None

    got = await eventually(with_master)
    assert got["failures"] == {}
    served = got["device_keys"][bob.user_id][bob.device_id]
    assert {k: v for k, v in served.items() if k != "unsigned"} == keys
    assert got["master_keys"][bob.user_id]["keys"] == cs.key_obj("master")["keys"]
    assert bob.user_id in got["self_signing_keys"]
    assert "user_signing_keys" not in got or bob.user_id not in got["user_signing_keys"]

    # One-time keys go out once each, across servers too.
    first = await claim(a.client, alice, {bob.user_id: {bob.device_id: "signed_curve25519"}})
    second = await claim(a.client, alice, {bob.user_id: {bob.device_id: "signed_curve25519"}})
    k1 = first["one_time_keys"][bob.user_id][bob.device_id]
    k2 = second["one_time_keys"][bob.user_id][bob.device_id]
    assert len(k1) == len(k2) == 1 and k1 != k2
    assert first["failures"] == {}

    # A dead server's users come back in failures, within the timeout; the others answer.
    dead = "@nobody:127.0.0.1:1"
    start = time.monotonic()
    status, got = await a.client.request(
        "POST", "/keys/query", {"device_keys": {bob.user_id: [], dead: []}, "timeout": 3000},
        alice.access_token)
    assert status == 200, got
    assert time.monotonic() - start < 6
    assert "127.0.0.1:1" in got["failures"]
    assert bob.device_id in got["device_keys"][bob.user_id]
    status, got = await a.client.request(
        "POST", "/keys/claim", {"one_time_keys": {dead: {"X": "signed_curve25519"}},
                                "timeout": 3000}, alice.access_token)
    assert status == 200 and "127.0.0.1:1" in got["failures"]
    # Bad input to the served endpoints is 400, not 500.
    status, body = await b.client.request("POST", "/keys/query", {"device_keys": {
        alice.user_id: "nope"}}, bob.access_token)
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")


async def test_device_lists_both_ways_gap_and_stale(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob, _ = await shared_room(a, b)
    await _setup_keys(a, alice)
    await _setup_keys(b, bob)
    # A caches bob's list once alice asked for it (he shares a room with her).
    await query(a.client, alice, {bob.user_id: []})
    await eventually(lambda: _has_devices(a, bob.user_id, {bob.device_id}))

    # Bob adds a device on B: alice's sync on A names him, and A's cache has both devices.
    since = (await a.client.sync(alice))["next_batch"]
    bob2 = await login(b.client, bob, "BOBTWO")
    await _setup_keys(b, bob2)

    async def alice_told() -> bool:
        sync = await a.client.sync(alice, since)
        return bob.user_id in sync.get("device_lists", {}).get("changed", [])

    await eventually(alice_told)
    await eventually(lambda: _has_devices(a, bob.user_id, {bob.device_id, "BOBTWO"}))
    got = await query(a.client, alice, {bob.user_id: []})
    assert set(got["device_keys"][bob.user_id]) == {bob.device_id, "BOBTWO"}

    # And the other way: alice's new device reaches bob's sync on B.
    since_b = (await b.client.sync(bob))["next_batch"]
    alice2 = await login(a.client, alice, "ALICETWO")
    await _setup_keys(a, alice2)

    async def bob_told() -> bool:
        sync = await b.client.sync(bob, since_b)
        return alice.user_id in sync.get("device_lists", {}).get("changed", [])

    await eventually(bob_told)  # first for the login, then for the keys

    async def both_alice_devices() -> bool:
        got = await query(b.client, bob, {alice.user_id: []})
        return set(got["device_keys"][alice.user_id]) == {alice.device_id, "ALICETWO"}

    await eventually(both_alice_devices)

    # A deleted device goes from the other server's cache too.
    status, body = await b.client.request("POST", "/delete_devices", {"devices": ["BOBTWO"]},
                                          bob.access_token)
    if status == 401:  # user-interactive auth
        status, body = await b.client.request("POST", "/delete_devices", {
            "devices": ["BOBTWO"], "auth": {"type": "m.login.password",
                                            "identifier": {"type": "m.id.user",
                                                           "user": bob.user_id},
                                            "password": "pw-secret-1",
                                            "session": body.get("session")}},
            bob.access_token)
    assert status == 200, body
    await eventually(lambda: _has_devices(a, bob.user_id, {bob.device_id}))

    # A gap: A's cache lost track of bob's chain; his next update makes A fetch the list.
    await a.hs.db.execute(
        "UPDATE remote_device_lists SET stream_id = 1 WHERE user_id = $1", bob.user_id)
    await a.hs.db.execute(
        "DELETE FROM remote_devices WHERE user_id = $1 AND device_id = $2", bob.user_id,
        bob.device_id)
    bob3 = await login(b.client, bob, "BOBTHREE")
    await _setup_keys(b, bob3)
    await eventually(lambda: _has_devices(a, bob.user_id, {bob.device_id, "BOBTHREE"}))
    row = await a.hs.db.fetchrow(
        "SELECT stream_id FROM remote_device_lists WHERE user_id = $1", bob.user_id)
    assert row["stream_id"] > 1

    # Stale (as after a failed fetch or a restart half way): not served from the cache, and
    # fetched again when the server starts.
    await a.hs.db.execute("UPDATE remote_device_lists SET stale = TRUE WHERE user_id = $1",
                          bob.user_id)
    await a.hs.db.execute("DELETE FROM remote_devices WHERE user_id = $1", bob.user_id)
    got = await query(a.client, alice, {bob.user_id: []})  # fetched from B first
    assert set(got["device_keys"][bob.user_id]) == {bob.device_id, "BOBTHREE"}
    assert a.hs.federation is not None
    await a.hs.federation.devices.start()
    await eventually(lambda: _has_devices(a, bob.user_id, {bob.device_id, "BOBTHREE"}))


async def _has_devices(server: FedServer, user_id: str, devices: set[str]) -> bool:
    return await _cached_devices(server, user_id) == devices


async def test_signing_key_update_reaches_the_cache(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob, _ = await shared_room(a, b)
    await _setup_keys(b, bob)
    await query(a.client, alice, {bob.user_id: []})
    await eventually(lambda: _has_devices(a, bob.user_id, {bob.device_id}))
    assert await a.hs.db.fetchval(
        "SELECT master_key FROM remote_device_lists WHERE user_id = $1", bob.user_id) is None
    since = (await a.client.sync(alice))["next_batch"]
    cs = new_cross_signing(bob.user_id)
    status, body = await b.client.request("POST", "/keys/device_signing/upload",
                                          cs.upload_body(), bob.access_token)
    assert status == 200, body

    async def cached_master() -> bool:
        raw = await a.hs.db.fetchval(
            "SELECT master_key::text FROM remote_device_lists WHERE user_id = $1 AND NOT stale",
            bob.user_id)
        return raw is not None and cs.pub(cs.master) in raw

    await eventually(cached_master)
    sync = await a.client.sync(alice, since)
    assert bob.user_id in sync["device_lists"]["changed"]
    got = await query(a.client, alice, {bob.user_id: []})
    assert got["master_keys"][bob.user_id]["keys"] == cs.key_obj("master")["keys"]
    assert got["self_signing_keys"][bob.user_id]["keys"] == cs.key_obj("self_signing")["keys"]


async def test_user_devices_answer_is_one_snapshot(make_server: Factory) -> None:
    """/user/devices names a stream id and the devices as of that id: a change committed
    while it is being read is in neither (read apart, it could be in the stream id only, and
    the asking server would then drop that change's own update as seen already: the race
    behind the gap test above timing out under load)."""
    a: FedServer = await make_server()
    alice = await a.client.register("alice")
    await _setup_keys(a, alice)
    assert a.hs.federation is not None
    devices = a.hs.federation.devices
    before = await devices.user_devices(alice.user_id)
    keys = devices._keys
    original = keys.served_keys
    done: list[bool] = []

    async def with_a_change_meanwhile(*args: Any) -> Any:
        got = await original(*args)
        if not done:  # another device comes, with keys, while the answer is being read
            done.append(True)
            alice2 = await login(a.client, alice, "ALICETWO")
            await _setup_keys(a, alice2)
        return got

    keys.served_keys = with_a_change_meanwhile  # type: ignore[method-assign]
    try:
        during = await devices.user_devices(alice.user_id)
    finally:
        keys.served_keys = original  # type: ignore[method-assign]
    assert done
    assert during["stream_id"] == before["stream_id"]
    assert [d["device_id"] for d in during["devices"]] == [alice.device_id]
    after = await devices.user_devices(alice.user_id)
    assert after["stream_id"] > before["stream_id"]
    assert {d["device_id"] for d in after["devices"]} == {alice.device_id, "ALICETWO"}
