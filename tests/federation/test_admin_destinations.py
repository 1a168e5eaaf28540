"""The federation admin API (Synapse's /_synapse/admin/v1/federation/destinations) on real
servers: a destination that answers, one that does not (its backoff, then a reset that makes
the sender try it at once), and the rooms a destination shares with us."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from tests.conftest import free_port
from tests.federation.conftest import Factory, FedServer
from tests.federation.test_rooms import eventually
from tests.helpers import User

D = "/_synapse/admin/v1/federation/destinations"


async def _admin(server: FedServer) -> User:
    user = await server.client.register()
    await server.hs.accounts.set_admin(user.user_id, True)
    assert server.hs.admin is not None
    server.hs.admin.users.states.forget_sessions(user.user_id)
    return user


async def _get(server: FedServer, admin: User, path: str,
               params: dict[str, str] | None = None) -> tuple[int, Any]:
    return await server.client.request("GET", path, token=admin.access_token, params=params)


async def test_destinations_backoff_reset_and_rooms(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    admin = await _admin(a)
    assert a.hs.federation is not None
    sender = a.hs.federation.sender
    sender.backoff_base_ms = 60_000  # one failure: a minute's wait, unless reset
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there

    # A room both servers are in: B is a destination that answers.
    alice = await a.client.register("alice")
    bob = await b.client.register("bob")
    room_id = await a.client.create_room(alice, preset="public_chat", room_alias_name="hall")
    await b.client.join(bob, quote(f"#hall:{a.name}", safe=""))
    await a.client.send(alice, room_id, "hello B")

    async def ok_known() -> Any:
        status, body = await _get(a, admin, f"{D}/{b.name}")
        return body if status == 200 and body["last_successful_stream_ordering"] else None
    got = await eventually(ok_known)
    assert got == {"destination": b.name, "retry_last_ts": 0, "retry_interval": 0,
                   "failure_ts": None,
                   "last_successful_stream_ordering": got["last_successful_stream_ordering"]}
    status, body = await _get(a, admin, f"{D}/{b.name}/rooms")
    assert status == 200 and body["total"] == 1, body
    assert body["rooms"][0]["room_id"] == room_id
    assert isinstance(body["rooms"][0]["stream_ordering"], int)
    status, body = await a.client.request("POST", f"{D}/{b.name}/reset_connection", {},
                                          token=admin.access_token)
    assert status == 400 and body["errcode"] == "M_UNKNOWN", body

    # A destination that does not answer: failing since the first try, backing off.
    sender.send_ephemeral([dead], ("test",), "m.typing", {
        "room_id": room_id, "user_id": alice.user_id, "typing": True})

    async def failing() -> Any:
        status, body = await _get(a, admin, f"{D}/{dead}")
        return body if status == 200 and body["retry_last_ts"] else None
    first = await eventually(failing)
    assert first["failure_ts"] is not None and first["failure_ts"] <= first["retry_last_ts"]
    assert 50_000 <= first["retry_interval"] <= 60_000, first
    status, body = await _get(a, admin, D)
    assert status == 200 and body["total"] == 2
    assert [d["destination"] for d in body["destinations"]] == sorted([b.name, dead])
    status, body = await _get(a, admin, D, {"order_by": "retry_last_ts", "dir": "b",
                                            "limit": "1"})
    assert status == 200 and [d["destination"] for d in body["destinations"]] == [dead]
    assert body["next_token"] == "1" and body["total"] == 2
    status, body = await _get(a, admin, D, {"destination": "127.0.0"})
    assert [d["destination"] for d in body["destinations"]] == [dead]
    status, body = await _get(a, admin, f"{D}/{dead}/rooms")
    assert (status, body) == (200, {"rooms": [], "total": 0})

    # Reset: the sender tries again at once (and fails again, later than before).
    reset_at = int(time.time() * 1000)
    status, body = await a.client.request("POST", f"{D}/{dead}/reset_connection", {},
                                          token=admin.access_token)
    assert (status, body) == (200, {})

    async def retried() -> Any:
        status, body = await _get(a, admin, f"{D}/{dead}")
        return body if body["retry_last_ts"] >= reset_at else None
    again = await eventually(retried)
    assert again["failure_ts"] >= reset_at  # a reset ends the failing spell

    # Errors as Synapse gives them.
    for path in (f"{D}/nowhere.test", f"{D}/nowhere.test/rooms"):
        status, body = await _get(a, admin, path)
        assert status == 404 and body["errcode"] == "M_NOT_FOUND", (path, body)
    status, body = await a.client.request("POST", f"{D}/nowhere.test/reset_connection", {},
                                          token=admin.access_token)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    for params in ({"order_by": "nope"}, {"dir": "x"}, {"from": "-1"}, {"limit": "x"}):
        status, body = await _get(a, admin, D, params)
        assert status == 400 and body["errcode"] in ("M_INVALID_PARAM", "M_UNKNOWN"), body
    status, body = await a.client.request("GET", D, token=alice.access_token)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
