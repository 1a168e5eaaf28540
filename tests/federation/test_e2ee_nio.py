"""Encrypted chat between two Parley servers with real crypto clients (matrix-nio, Olm/Megolm
through vodozemac): the keys query and the one-time key claim cross servers, the room key
travels as an Olm to-device message in an m.direct_to_device EDU, and each side decrypts the
other's messages. The servers only ever see ciphertext."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nio import (
    AsyncClient,
    JoinResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
)

from tests.e2e.conftest import PASSWORD, new_name
from tests.e2e.nio_crypto import ENCRYPTION, MEGOLM, Crypto, e2ee_config
from tests.federation.conftest import Factory, FedServer
from tests.federation.test_rooms import eventually, membership_of


@pytest.fixture
async def crypto(tmp_path: Path) -> AsyncIterator[Any]:
    clients: list[AsyncClient] = []

    async def make(server: FedServer, prefix: str) -> Crypto:
        store = tmp_path / f"store{len(clients)}"
        store.mkdir()
        c = AsyncClient(server.client_url, "", store_path=str(store), config=e2ee_config())
        clients.append(c)
        resp = await c.register(new_name(prefix), PASSWORD)
        assert isinstance(resp, RegisterResponse), resp
        d = Crypto(c)
        await d.upload_keys()
        return d

    yield make
    for c in clients:
        await c.close()


async def test_encrypted_messages_decrypt_across_servers(make_server: Factory,
                                                         crypto: Any) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice: Crypto = await crypto(a, "alice")
    bob: Crypto = await crypto(b, "bob")
    created = await alice.c.room_create(name="secret", initial_state=[ENCRYPTION])
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    invite = await alice.c.room_invite(room_id, bob.user_id)
    assert isinstance(invite, RoomInviteResponse), invite

    async def invited() -> bool:
        return await membership_of(b, room_id, bob.user_id) == "invite"

    await eventually(invited)
    joined = await bob.c.join(room_id)
    assert isinstance(joined, JoinResponse), joined

    async def join_reached_a() -> bool:
        return await membership_of(a, room_id, bob.user_id) == "join"

    await eventually(join_reached_a)
    await alice.sync()
    await bob.sync()
    assert alice.c.rooms[room_id].encrypted and bob.c.rooms[room_id].encrypted

    event_id = await alice.send(room_id, "across the border at dawn")
    # nio asked A for bob's keys (A asked B) and claimed one of his one-time keys through A.
    assert alice.queries and bob.device_id in alice.queries[-1].device_keys[bob.user_id]
    claimed = [r.one_time_keys.get(bob.user_id, {}).get(bob.device_id) for r in alice.claims]
    assert any(claimed), alice.claims
    got = await bob.decrypted(room_id, "across the border at dawn")
    assert got.event_id == event_id and got.sender == alice.user_id

    await bob.send(room_id, "understood")
    assert (await alice.decrypted(room_id, "understood")).sender == bob.user_id

    # Neither server holds the cleartext.
    for server, user in ((a, alice), (b, bob)):
        status, stored = await server.client.request(
            "GET", f"/rooms/{room_id}/event/{event_id}", token=user.c.access_token)
        assert status == 200, stored
        assert stored["type"] == "m.room.encrypted"
        assert stored["content"]["algorithm"] == MEGOLM and "dawn" not in str(stored)
