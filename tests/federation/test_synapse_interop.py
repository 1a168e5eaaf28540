"""Interop with Synapse, the reference homeserver, over real TLS on loopback: a Parley user
joins a Synapse room and a Synapse user joins a Parley room (by invite), with messages both
ways and leaves, and restarts of either side while the other sends. Synapse is installed
from PyPI into its own venv on first use."""

from __future__ import annotations

import asyncio
import secrets
from contextlib import AsyncExitStack
from typing import Any

import pytest

from tests.conftest import PgAdmin
from tests.federation.conftest import Factory, FedServer, fed_config, run_server
from tests.federation.pki import Cert, LocalCA
from tests.federation.synapse_peer import Synapse, wait_until_up
from tests.federation.test_rooms import _has, _is, eventually, messages
from tests.helpers import Client, User


async def _register(c: Client, name: str) -> User:
    return await c.register(name + secrets.token_hex(3))


async def _synapse_messages(c: Client, user: User, room_id: str) -> list[str]:
    return await messages(c, user, room_id)


async def _synapse_membership(c: Client, user: User, room_id: str, who: str) -> str | None:
    status, body = await c.request("GET", f"/rooms/{room_id}/state/m.room.member/{who}",
                                   token=user.access_token)
    return body.get("membership") if status == 200 else None


async def test_parley_user_joins_a_synapse_room(make_server: Factory,
                                               synapse: tuple[Synapse, Client]) -> None:
    syn, sc = synapse
    a: FedServer = await make_server()
    alice = await a.client.register("alice")
    sam = await _register(sc, "sam")
    room_id = await sc.create_room(sam, preset="public_chat", name="Synapse room")
    await sc.send(sam, room_id, "before alice")
    status, body = await a.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                          params={"via": syn.name})
    assert status == 200, (body, syn.log_tail())
    assert await eventually(lambda: _joined_on_synapse(sc, sam, room_id, alice.user_id))
    # Shared history from before the join: Parley backfills it from Synapse, in its place.
    got = await messages(a.client, alice, room_id)
    assert got == ["before alice"], got
    await a.client.send(alice, room_id, "hello synapse")
    await eventually(lambda: _has(sc, sam, room_id, "hello synapse"), timeout=30)
    await sc.send(sam, room_id, "hello parley")
    await eventually(lambda: _has(a.client, alice, room_id, "hello parley"), timeout=30)
    status, _ = await a.client.request("POST", f"/rooms/{room_id}/leave", {},
                                       alice.access_token)
    assert status == 200
    await eventually(lambda: _left_on_synapse(sc, sam, room_id, alice.user_id), timeout=30)


async def _joined_on_synapse(c: Client, u: User, room_id: str, who: str) -> bool:
    return await _synapse_membership(c, u, room_id, who) == "join"


async def _left_on_synapse(c: Client, u: User, room_id: str, who: str) -> bool:
    return await _synapse_membership(c, u, room_id, who) == "leave"


async def test_synapse_user_joins_a_parley_room_by_invite(
        make_server: Factory, synapse: tuple[Synapse, Client]) -> None:
    syn, sc = synapse
    a: FedServer = await make_server()
    alice = await a.client.register("alice")
    sam = await _register(sc, "sam")
    room_id = await a.client.create_room(alice, preset="private_chat")
    await a.client.send(alice, room_id, "history before sam")
    status, body = await a.client.request("POST", f"/rooms/{room_id}/invite",
                                          {"user_id": sam.user_id}, alice.access_token)
    assert status == 200, (body, syn.log_tail())

    async def invited() -> Any:
        sync = await sc.sync(sam)
        return sync.get("rooms", {}).get("invite", {}).get(room_id)

    await eventually(invited, timeout=30)
    status, body = await sc.request("POST", f"/join/{room_id}", {}, sam.access_token,
                                    params={"server_name": a.name})
    assert status == 200, (body, syn.log_tail())
    assert await _is(a, room_id, sam.user_id, "join")
    await sc.send(sam, room_id, "hi from synapse")
    await eventually(lambda: _has(a.client, alice, room_id, "hi from synapse"), timeout=30)
    await a.client.send(alice, room_id, "hi from parley")
    await eventually(lambda: _has(sc, sam, room_id, "hi from parley"), timeout=30)
    # Shared history: Synapse pages back past the join into what came before.
    assert "history before sam" in await _synapse_messages(sc, sam, room_id)
    status, _ = await sc.request("POST", f"/rooms/{room_id}/leave", {}, sam.access_token)
    assert status == 200
    await eventually(lambda: _is(a, room_id, sam.user_id, "leave"), timeout=30)


async def test_synapse_invites_a_parley_user_who_joins_and_rejects(
        make_server: Factory, synapse: tuple[Synapse, Client]) -> None:
    syn, sc = synapse
    a: FedServer = await make_server()
    alice = await a.client.register("alice")
    sam = await _register(sc, "sam")
    room_id = await sc.create_room(sam, preset="private_chat")
    status, body = await sc.request("POST", f"/rooms/{room_id}/invite",
                                    {"user_id": alice.user_id}, sam.access_token)
    assert status == 200, (body, syn.log_tail())

    async def invited(rid: str) -> Any:
        sync = await a.client.sync(alice)
        return sync.get("rooms", {}).get("invite", {}).get(rid)

    await eventually(lambda: invited(room_id), timeout=30)
    await a.client.join(alice, room_id)
    assert await eventually(lambda: _joined_on_synapse(sc, sam, room_id, alice.user_id))
    await a.client.send(alice, room_id, "joined by invite")
    await eventually(lambda: _has(sc, sam, room_id, "joined by invite"), timeout=30)
    # A second invite, rejected through Synapse.
    other = await sc.create_room(sam, preset="private_chat")
    status, _ = await sc.request("POST", f"/rooms/{other}/invite", {"user_id": alice.user_id},
                                 sam.access_token)
    assert status == 200
    await eventually(lambda: invited(other), timeout=30)
    status, body = await a.client.request("POST", f"/rooms/{other}/leave", {},
                                          alice.access_token)
    assert status == 200, body
    await eventually(lambda: _left_on_synapse(sc, sam, other, alice.user_id), timeout=30)


async def test_restart_of_either_side_loses_nothing(
        pg_admin: PgAdmin, tmp_path_factory: pytest.TempPathFactory, server_cert: Cert,
        local_ca: LocalCA, synapse: tuple[Synapse, Client]) -> None:
    """Synapse goes down while Parley sends, then Parley while Synapse sends: after each
    restart every message arrives, in order, and the room goes on both ways."""
    syn, sc = synapse
    loop = asyncio.get_running_loop()
    db_name = await pg_admin.create()
    cfg = fed_config(tmp_path_factory.mktemp("a"), server_cert, local_ca.ca_file)
    try:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(run_server(cfg, pg_admin.dsn_for(db_name)))
            alice = await a.client.register("alice")
            sam = await _register(sc, "sam")
            room_id = await sc.create_room(sam, preset="public_chat")
            status, body = await a.client.request("POST", f"/join/{room_id}", {},
                                                  alice.access_token, params={"via": syn.name})
            assert status == 200, (body, syn.log_tail())
            assert await eventually(lambda: _joined_on_synapse(sc, sam, room_id,
                                                               alice.user_id), timeout=30)
            # Synapse down while Parley sends.
            await loop.run_in_executor(None, syn.stop)
            a.hs.federation.sender.backoff_base_ms = 100
            a.hs.federation.sender.backoff_max_ms = 500
            from_parley = [f"while synapse was down {i}" for i in range(4)]
            for text in from_parley:
                await a.client.send(alice, room_id, text)
            await asyncio.sleep(1.0)  # let the sender fail at least once
            await loop.run_in_executor(None, syn.restart)
            await loop.run_in_executor(None, wait_until_up, syn, local_ca.ca_file)
            await eventually(lambda: _has(sc, sam, room_id, from_parley[-1]), timeout=60)
            got = await _synapse_messages(sc, sam, room_id)
            assert [m for m in got if m in from_parley] == from_parley
            # Parley down while Synapse sends; Parley comes back on the same port and database.
            await stack.aclose()
            from_synapse = [f"while parley was down {i}" for i in range(4)]
            for text in from_synapse:
                await sc.send(sam, room_id, text)
            await asyncio.sleep(1.0)  # Synapse fails to reach Parley
            a = await stack.enter_async_context(run_server(cfg, pg_admin.dsn_for(db_name)))
            await eventually(lambda: _has(a.client, alice, room_id, from_synapse[-1]),
                             timeout=90)
            got = await messages(a.client, alice, room_id)
            assert [m for m in got if m in from_synapse] == from_synapse
            # Both ways still.
            await a.client.send(alice, room_id, "back from parley")
            await eventually(lambda: _has(sc, sam, room_id, "back from parley"), timeout=30)
            await sc.send(sam, room_id, "back from synapse")
            await eventually(lambda: _has(a.client, alice, room_id, "back from synapse"),
                             timeout=30)
    finally:
        await pg_admin.drop(db_name)
