"""The rooms admin API's forward extremities on a real fork of the DAG: a scripted remote
(tests/federation/scripted.py) sends an event on an older point of the room than our latest,
so the room has two extremities. Clearing the extra one is done when the kept (latest) one has
the room's state, and refused when the remote's branch lacks state the room has (here a topic
set on our branch), which deleting would drop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.federation.conftest import Factory, FedServer
from tests.federation.pki import Cert, LocalCA
from tests.federation.scripted import Remote, scripted_remote
from tests.federation.test_conformance import _room, _setup, build
from tests.federation.test_rooms import eventually, messages
from tests.helpers import User

A = "/_synapse/admin/v1"


@pytest.fixture
async def remote(server_cert: Cert, local_ca: LocalCA) -> AsyncIterator[Remote]:
    async with scripted_remote(server_cert, local_ca.ca_file) as r:
        yield r


async def _admin(p: FedServer) -> User:
    user = await p.client.register()
    await p.hs.accounts.set_admin(user.user_id, True)
    assert p.hs.admin is not None
    p.hs.admin.users.states.forget_sessions(user.user_id)
    return user


async def _extremities(p: FedServer, admin: User, room_id: str) -> list[str]:
    status, body = await p.client.request("GET", A + f"/rooms/{room_id}/forward_extremities",
                                          token=admin.access_token)
    assert status == 200 and body["count"] == len(body["results"]), body
    return [r["event_id"] for r in body["results"]]


async def _remote_branch(p: FedServer, remote: Remote, rita: str, room_id: str,
                         prev: list[str], text: str) -> str:
    room = await _room(p, room_id)
    event_id, pdu = await build(p, remote, room_id, rita, "m.room.message", {"body": text},
                                prev=prev, depth=room.depth + 1)
    assert (await remote.send(p, [pdu]))["pdus"] == {event_id: {}}
    return event_id


async def test_extra_extremities_of_a_real_fork(make_server: Factory, remote: Remote) -> None:
    p, alice, room_id, rita = await _setup(make_server, remote)
    admin = await _admin(p)
    path = A + f"/rooms/{room_id}/forward_extremities"

    # Branches that differ only in messages: the room's state is that of either.
    fork = list((await _room(p, room_id)).extremities)
    ours = await p.client.send(alice, room_id, "ours")
    theirs = await _remote_branch(p, remote, rita, room_id, fork, "theirs")
    await eventually(lambda: _shows(p, alice, room_id, "theirs"))
    assert set(await _extremities(p, admin, room_id)) == {ours, theirs}
    status, body = await p.client.request("DELETE", path, token=admin.access_token)
    assert status == 200 and body == {"deleted": 1}, body
    assert await _extremities(p, admin, room_id) == [theirs]  # the latest received
    after = await p.client.send(alice, room_id, "after")
    status, body = await p.client.request("GET", A + f"/fetch_event/{after}",
                                          token=admin.access_token)
    assert body["event"]["prev_events"] == [theirs]

    # Our branch sets a topic the remote's does not have: keeping the remote's event (the
    # latest) alone would take the topic away, so nothing is deleted.
    fork = list((await _room(p, room_id)).extremities)
    status, body = await p.client.request("PUT", f"/rooms/{room_id}/state/m.room.topic",
                                          {"topic": "ours"}, alice.access_token)
    assert status == 200, body
    topic = body["event_id"]
    theirs = await _remote_branch(p, remote, rita, room_id, fork, "no topic here")
    await eventually(lambda: _shows(p, alice, room_id, "no topic here"))
    assert set(await _extremities(p, admin, room_id)) == {topic, theirs}
    status, body = await p.client.request("DELETE", path, token=admin.access_token)
    assert status == 400 and body["errcode"] == "M_UNKNOWN", body
    assert set(await _extremities(p, admin, room_id)) == {topic, theirs}
    status, body = await p.client.request("GET", f"/rooms/{room_id}/state/m.room.topic",
                                          token=alice.access_token)
    assert body == {"topic": "ours"}
    # the next event merges the branches as always
    merged = await p.client.send(alice, room_id, "merged")
    assert await _extremities(p, admin, room_id) == [merged]


async def _shows(p: FedServer, user: User, room_id: str, text: str) -> Any:
    return text in await messages(p.client, user, room_id)
