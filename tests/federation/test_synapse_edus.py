"""Interop with Synapse for federation part 2, both directions, over real TLS on loopback:
typing, receipts (threaded), presence, to-device messages, device list updates (a device added
on one server shows in device_lists.changed and /keys/query on the other), keys queries and
claims, remote profiles, aliases and public room lists, and encrypted chat between matrix-nio
clients on a Parley and a Synapse server."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from nio import AsyncClient, JoinResponse, RegisterResponse, RoomCreateResponse

from federation.tls import client_context
from tests.e2e.conftest import PASSWORD, new_name
from tests.e2e.nio_crypto import ENCRYPTION, Crypto, e2ee_config
from tests.e2ee.keys import claim, login, new_cross_signing, new_device, query, upload
from tests.federation.conftest import Factory, FedServer
from tests.federation.pki import LocalCA
from tests.federation.synapse_peer import Synapse
from tests.federation.test_rooms import eventually
from tests.federation.test_synapse_interop import _joined_on_synapse, _register
from tests.helpers import Client, User

T = 30.0  # Synapse batches and retries on its own schedule




async def _room_with_both(a: FedServer, syn: Synapse, sc: Client) -> tuple[User, User, str]:
    alice = await a.client.register("alice")
    sam = await _register(sc, "sam")
    room_id = await sc.create_room(sam, preset="public_chat", name="Interop")
    status, body = await a.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                          params={"via": syn.name})
    assert status == 200, (body, syn.log_tail())
    await eventually(lambda: _joined_on_synapse(sc, sam, room_id, alice.user_id), timeout=T)
    return alice, sam, room_id


def _ephemeral(sync: dict[str, Any], room_id: str, kind: str) -> list[dict[str, Any]]:
    room = sync.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == kind]


async def _synced(c: Client, user: User, check: Any, timeout: float = T) -> Any:
    """Incremental syncs (Synapse shows ephemeral events once) until `check(sync)` holds."""
    since = None

    async def step() -> Any:
        nonlocal since
        sync = await c.sync(user, since, timeout=1000)
        since = sync["next_batch"]
        return check(sync)

    return await eventually(step, timeout=timeout)


async def test_typing_receipts_presence_to_device_with_synapse(
        make_server: Factory, synapse_p: tuple[Synapse, Client]) -> None:
    syn, sc = synapse_p
    a: FedServer = await make_server()
    alice, sam, room_id = await _room_with_both(a, syn, sc)

    # Typing, Parley -> Synapse and back.
    status, _ = await a.client.request("PUT", f"/rooms/{room_id}/typing/{alice.user_id}",
                                       {"typing": True, "timeout": 30000}, alice.access_token)
    assert status == 200
    await _synced(sc, sam, lambda s: any(alice.user_id in e["content"]["user_ids"]
                                         for e in _ephemeral(s, room_id, "m.typing")))
    status, _ = await sc.request("PUT", f"/rooms/{room_id}/typing/{sam.user_id}",
                                 {"typing": True, "timeout": 30000}, sam.access_token)
    assert status == 200
    await _synced(a.client, alice, lambda s: any(sam.user_id in e["content"]["user_ids"]
                                                 for e in _ephemeral(s, room_id, "m.typing")))

    # Receipts both ways (threaded: thread_id "main").
    ev = await sc.send(sam, room_id, "from synapse")
    await eventually(lambda: _event_known(a, ev), timeout=T)
    status, body = await a.client.request("POST", f"/rooms/{room_id}/receipt/m.read/{ev}",
                                          {"thread_id": "main"}, alice.access_token)
    assert status == 200, body

    def alice_receipt(s: dict[str, Any]) -> bool:
        for e in _ephemeral(s, room_id, "m.receipt"):
            r = e["content"].get(ev, {}).get("m.read", {}).get(alice.user_id)
            if r is not None:
                return r.get("thread_id") == "main"
        return False

    await _synced(sc, sam, alice_receipt)
    own = await a.client.send(alice, room_id, "from parley")
    await eventually(lambda: _synapse_has(sc, sam, room_id, own), timeout=T)
    status, _ = await sc.request("POST", f"/rooms/{room_id}/receipt/m.read/{own}", {},
                                 sam.access_token)
    assert status == 200
    await _synced(a.client, alice, lambda s: any(
        sam.user_id in e["content"].get(own, {}).get("m.read", {})
        for e in _ephemeral(s, room_id, "m.receipt")))

    # Presence both ways.
    status, _ = await a.client.request("PUT", f"/presence/{alice.user_id}/status",
                                       {"presence": "online", "status_msg": "on parley"},
                                       alice.access_token)
    assert status == 200

    async def sam_sees_alice() -> bool:
        status, body = await sc.request("GET", f"/presence/{alice.user_id}/status",
                                        token=sam.access_token)
        return status == 200 and body.get("status_msg") == "on parley"

    await eventually(sam_sees_alice, timeout=T)
    status, _ = await sc.request("PUT", f"/presence/{sam.user_id}/status",
                                 {"presence": "online", "status_msg": "on synapse"},
                                 sam.access_token)
    assert status == 200

    async def alice_sees_sam() -> bool:
        status, body = await a.client.request("GET", f"/presence/{sam.user_id}/status",
                                              token=alice.access_token)
        return status == 200 and body.get("status_msg") == "on synapse"

    await eventually(alice_sees_sam, timeout=T)

    # To-device both ways.
    status, _ = await a.client.request(
        "PUT", "/sendToDevice/m.test/p1",
        {"messages": {sam.user_id: {sam.device_id: {"n": 1}}}}, alice.access_token)
    assert status == 200
    got = await _synced(sc, sam, lambda s: [e for e in s.get("to_device", {}).get(
        "events", []) if e["type"] == "m.test"])
    assert got == [{"type": "m.test", "sender": alice.user_id, "content": {"n": 1}}]
    status, _ = await sc.request(
        "PUT", "/sendToDevice/m.test/s1",
        {"messages": {alice.user_id: {"*": {"n": 2}}}}, sam.access_token)
    assert status == 200
    got = await _synced(a.client, alice, lambda s: [e for e in s.get("to_device", {}).get(
        "events", []) if e["type"] == "m.test"])
    assert got == [{"type": "m.test", "sender": sam.user_id, "content": {"n": 2}}]


async def _event_known(server: FedServer, event_id: str) -> bool:
    assert server.hs.writer is not None
    return event_id in await server.hs.writer._cache.get_many([event_id])


async def _synapse_has(c: Client, user: User, room_id: str, event_id: str) -> bool:
    status, _ = await c.request("GET", f"/rooms/{room_id}/event/{event_id}",
                                token=user.access_token)
    return status == 200


async def test_device_lists_keys_and_queries_with_synapse(
        make_server: Factory, synapse_p: tuple[Synapse, Client]) -> None:
    syn, sc = synapse_p
    a: FedServer = await make_server()
    alice, sam, room_id = await _room_with_both(a, syn, sc)
    dev = new_device(sam)
    status, body = await upload(sc, sam, {"device_keys": dev.device_keys(),
                                          "one_time_keys": dev.one_time_keys(3)})
    assert status == 200, body
    mine = new_device(alice)
    status, body = await upload(a.client, alice, {"device_keys": mine.device_keys(),
                                                  "one_time_keys": mine.one_time_keys(3)})
    assert status == 200, body

    # Keys query and claim, Parley -> Synapse.
    async def sam_keys() -> Any:
        got = await query(a.client, alice, {sam.user_id: []})
        return got if sam.device_id in got["device_keys"].get(sam.user_id, {}) else None

    got = await eventually(sam_keys, timeout=T)
    assert got["failures"] == {}
    c1 = await claim(a.client, alice, {sam.user_id: {sam.device_id: "signed_curve25519"}})
    assert len(c1["one_time_keys"][sam.user_id][sam.device_id]) == 1, c1
    # And Synapse -> Parley.
    got = await query(sc, sam, {alice.user_id: []})
    assert alice.device_id in got["device_keys"][alice.user_id], got
    c2 = await claim(sc, sam, {alice.user_id: {alice.device_id: "signed_curve25519"}})
    assert len(c2["one_time_keys"][alice.user_id][alice.device_id]) == 1, c2

    # A device added on Synapse shows up on Parley (device_lists.changed, then the keys).
    since = (await a.client.sync(alice))["next_batch"]
    sam2 = await login(sc, sam, "SAMTWO")
    status, _ = await upload(sc, sam2, {"device_keys": new_device(sam2).device_keys()})
    assert status == 200

    async def alice_told() -> bool:
        sync = await a.client.sync(alice, since)
        return sam.user_id in sync.get("device_lists", {}).get("changed", [])

    await eventually(alice_told, timeout=T)

    async def both_sam_devices() -> bool:
        got = await query(a.client, alice, {sam.user_id: []})
        return set(got["device_keys"].get(sam.user_id, {})) == {sam.device_id, "SAMTWO"}

    await eventually(both_sam_devices, timeout=T)
    # And a device added on Parley shows up on Synapse.
    since_s = (await sc.sync(sam))["next_batch"]
    alice2 = await login(a.client, alice, "ALICETWO")
    status, _ = await upload(a.client, alice2, {"device_keys": new_device(alice2).device_keys()})
    assert status == 200

    async def sam_told() -> bool:
        sync = await sc.sync(sam, since_s)
        return alice.user_id in sync.get("device_lists", {}).get("changed", [])

    await eventually(sam_told, timeout=T)

    async def both_alice_devices() -> bool:
        got = await query(sc, sam, {alice.user_id: []})
        return set(got["device_keys"].get(alice.user_id, {})) == {alice.device_id, "ALICETWO"}

    await eventually(both_alice_devices, timeout=T)

    # Cross-signing keys (m.signing_key_update or a resync), both ways.
    for c_up, up_user, c_q, q_user in ((sc, sam, a.client, alice), (a.client, alice, sc, sam)):
        cs = new_cross_signing(up_user.user_id)
        status, body = await c_up.request("POST", "/keys/device_signing/upload",
                                          cs.upload_body(), up_user.access_token)
        assert status == 200, body
        master = cs.key_obj("master")["keys"]

        async def has_master(c: Client = c_q, u: User = q_user, target: str = up_user.user_id,
                             keys: Any = master) -> bool:
            got = await query(c, u, {target: []})
            return got.get("master_keys", {}).get(target, {}).get("keys") == keys

        await eventually(has_master, timeout=T)

    # Profiles, aliases and public room lists, both ways.
    status, _ = await sc.request("PUT", f"/profile/{sam.user_id}/displayname",
                                 {"displayname": "Sam of Synapse"}, sam.access_token)
    assert status == 200
    status, body = await a.client.request("GET", f"/profile/{sam.user_id}",
                                          token=alice.access_token)
    assert status == 200 and body.get("displayname") == "Sam of Synapse", body
    status, _ = await a.client.request("PUT", f"/profile/{alice.user_id}/displayname",
                                       {"displayname": "Alice of Parley"}, alice.access_token)
    assert status == 200
    status, body = await sc.request("GET", f"/profile/{alice.user_id}", token=sam.access_token)
    assert status == 200 and body.get("displayname") == "Alice of Parley", body

    syn_room = await sc.create_room(sam, preset="public_chat", name="Synapse square",
                                    room_alias_name="ssq", visibility="public")
    status, body = await a.client.request("GET", "/directory/room/" + quote(
        f"#ssq:{syn.name}", safe=""), token=alice.access_token)
    assert status == 200 and body["room_id"] == syn_room, body
    status, body = await a.client.request("GET", "/publicRooms", token=alice.access_token,
                                          params={"server": syn.name})
    assert status == 200 and syn_room in [e["room_id"] for e in body["chunk"]], body
    par_room = await a.client.create_room(alice, preset="public_chat", name="Parley square",
                                          room_alias_name="psq", visibility="public")
    status, body = await sc.request("GET", "/directory/room/" + quote(
        f"#psq:{a.name}", safe=""), token=sam.access_token)
    assert status == 200 and body["room_id"] == par_room, body
    status, body = await sc.request("GET", "/publicRooms", token=sam.access_token,
                                    params={"server": a.name})
    assert status == 200 and par_room in [e["room_id"] for e in body["chunk"]], body
    status, body = await sc.request("POST", "/publicRooms",
                                    {"filter": {"generic_search_term": "Parley"}},
                                    sam.access_token, params={"server": a.name})
    assert status == 200 and [e["room_id"] for e in body["chunk"]] == [par_room], body


@pytest.fixture
async def nio_on(tmp_path: Path, local_ca: LocalCA) -> AsyncIterator[Any]:
    clients: list[AsyncClient] = []

    async def make(url: str, prefix: str, tls: bool) -> Crypto:
        store = tmp_path / f"store{len(clients)}"
        store.mkdir()
        ctx: ssl.SSLContext | None = client_context(local_ca.ca_file) if tls else None
        c = AsyncClient(url, "", store_path=str(store), config=e2ee_config(), ssl=ctx)
        clients.append(c)
        resp = await c.register(new_name(prefix), PASSWORD)
        assert isinstance(resp, RegisterResponse), resp
        d = Crypto(c)
        await d.upload_keys()
        return d

    yield make
    for c in clients:
        await c.close()


async def test_encrypted_chat_between_parley_and_synapse(
        make_server: Factory, synapse_p: tuple[Synapse, Client], nio_on: Any) -> None:
    syn, sc = synapse_p
    a: FedServer = await make_server()
    alice: Crypto = await nio_on(a.client_url, "alice", False)
    sam: Crypto = await nio_on(syn.url, "sam", True)
    created = await sam.c.room_create(name="secret", initial_state=[ENCRYPTION],
                                      invite=[alice.user_id])
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id

    async def invited() -> Any:
        sync = await a.client.request("GET", "/sync", token=alice.c.access_token)
        return sync[1].get("rooms", {}).get("invite", {}).get(room_id)

    await eventually(invited, timeout=T)
    joined = await alice.c.join(room_id)
    assert isinstance(joined, JoinResponse), joined
    await eventually(lambda: _joined_on_synapse(
        sc, User(sam.user_id, str(sam.c.access_token), sam.device_id), room_id,
        alice.user_id), timeout=T)
    await alice.sync()
    await sam.sync()
    assert alice.c.rooms[room_id].encrypted and sam.c.rooms[room_id].encrypted

    # Parley -> Synapse: nio on Parley asks Parley for sam's keys, Parley asks Synapse.
    await alice.send(room_id, "parley speaks in code")
    got = await sam.decrypted(room_id, "parley speaks in code", tries=15)
    assert got.sender == alice.user_id
    # Synapse -> Parley.
    await sam.send(room_id, "synapse answers in code")
    got = await alice.decrypted(room_id, "synapse answers in code", tries=15)
    assert got.sender == sam.user_id


async def test_server_acl_against_synapse(
        make_server: Factory, synapse_p: tuple[Synapse, Client]) -> None:
    """A Parley room's ACL denying Synapse (an IP literal): Parley refuses Synapse's messages
    and typing, and still sends its events to Synapse."""
    syn, sc = synapse_p  # 127.0.0.1:PORT
    a: FedServer = await make_server(host="localhost")
    alice = await a.client.register("alice")
    sam = await _register(sc, "sam")
    # Parley's room, ACL against IP literals (Synapse's name is one).
    room_id = await a.client.create_room(alice, preset="public_chat")
    status, body = await sc.request("POST", f"/join/{room_id}", {}, sam.access_token,
                                    params={"server_name": a.name})
    assert status == 200, (body, syn.log_tail())
    await sc.send(sam, room_id, "before the acl")
    await eventually(lambda: _parley_has(a, alice, room_id, "before the acl"), timeout=T)
    status, body = await a.client.request(
        "PUT", f"/rooms/{room_id}/state/m.room.server_acl",
        {"allow": ["*"], "allow_ip_literals": False}, alice.access_token)
    assert status == 200, body
    acl_event = body["event_id"]
    await eventually(lambda: _synapse_has(sc, sam, room_id, acl_event), timeout=T)
    await sc.send(sam, room_id, "after the acl")
    status, _ = await sc.request("PUT", f"/rooms/{room_id}/typing/{sam.user_id}",
                                 {"typing": True, "timeout": 30000}, sam.access_token)
    marker = await a.client.send(alice, room_id, "parley still sends")
    await eventually(lambda: _synapse_has(sc, sam, room_id, marker), timeout=T)
    await asyncio.sleep(2.0)
    assert not await _parley_has(a, alice, room_id, "after the acl")
    sync = await a.client.sync(alice)
    assert not any(sam.user_id in e["content"]["user_ids"]
                   for e in _ephemeral(sync, room_id, "m.typing"))

    # The other way (Synapse's room denying Parley) is not asserted: Synapse refused
    # Parley's PDUs when this ran alone, but under the full suite's load it once accepted
    # one sent right after the ACL (empty answer, the PDU handled); see docs/federation.md.


async def _parley_has(server: FedServer, user: User, room_id: str, text: str) -> bool:
    from tests.federation.test_rooms import messages
    return text in await messages(server.client, user, room_id)
