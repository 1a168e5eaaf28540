"""Two Parley processes on one database: both serve clients, nothing collides, and reads on
either process see every event committed by the other.

Each room's events are written through one process at a time (room A through process a, room B
through process b), as the engine requires until worker mode; sends run concurrently on both,
so stream positions, state group ids and transaction ids are allocated by two processes at once.
Waking a long-poll on one process for a write on the other is worker mode (later): here reads
poll until the other's writes are visible, which takes one registry tick (about 50 ms).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import free_port
from tests.helpers import Client, User
from tests.system.proc import ServerProcess, open_server_env

N = 40  # messages per room


async def _eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _all_messages(c: Client, user: User, room: str) -> list[str]:
    bodies: list[str] = []
    params = {"dir": "b", "limit": "50"}
    for _ in range(20):
        status, page = await c.request("GET", f"/rooms/{room}/messages", token=user.access_token,
                                       params=params)
        assert status == 200, page
        bodies += [e["content"]["body"] for e in page["chunk"] if e["type"] == "m.room.message"]
        if "end" not in page or not page["chunk"]:
            break
        params = {"dir": "b", "limit": "50", "from": page["end"]}
    return list(reversed(bodies))


async def _synced_bodies(c: Client, user: User, room: str) -> list[str]:
    body = await c.sync(user, filter='{"room":{"timeline":{"limit":200}}}')
    events = body.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get(
        "events", [])
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


async def test_two_processes_share_one_database(fresh_database: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    common = {"PARLEY_SERVER_NAME": "shared.test"}
    a = ServerProcess(open_server_env(fresh_database, data, PARLEY_INSTANCE_NAME="a", **common),
                      tmp_path, tmp_path / "a.log")
    b_env = open_server_env(fresh_database, data, PARLEY_INSTANCE_NAME="b", **common)
    b_env["PARLEY_LISTEN"] = f"127.0.0.1:{free_port()}"
    b = ServerProcess(b_env, tmp_path, tmp_path / "b.log")
    try:
        a.start()
        await a.wait_ready()
        b.start()  # same data dir: the config and signing key a generated
        await b.wait_ready()
        async with aiohttp.ClientSession() as s:
            ca, cb = Client(a.url, s), Client(b.url, s)
            alice = await ca.register("alice")
            bob = await cb.register("bob")
            # Each room is written through one process; both users are in both rooms.
            room_a = await ca.create_room(alice, preset="public_chat", name="on a")
            room_b = await cb.create_room(bob, preset="public_chat", name="on b")
            await ca.join(bob, room_a)  # bob's token is from b: a finds it in the database
            await cb.join(alice, room_b)

            async def run(c: Client, user: User, room: str, tag: str) -> list[str]:
                ids = []
                for i in range(N):
                    ids.append(await c.send(user, room, f"{tag} {i}"))
                    if i == N // 2:
                        status, _ = await c.request("PUT", f"/rooms/{room}/state/m.room.topic",
                                                    {"topic": f"topic {tag}"}, user.access_token)
                        assert status == 200
                return ids

            ids_a, ids_b = await asyncio.gather(run(ca, alice, room_a, "a"),
                                                run(cb, bob, room_b, "b"))
            assert len(set(ids_a) | set(ids_b)) == 2 * N

            # The same transaction id resent through the other process returns the same event
            # (and writes nothing: room a is written through process a only).
            first = await ca.send(alice, room_a, "a 0", txn="dup-txn")
            assert await cb.send(alice, room_a, "a 0", txn="dup-txn") == first

            want_a = [f"a {i}" for i in range(N)]
            want_b = [f"b {i}" for i in range(N)]
            for c in (ca, cb):  # either process serves every committed event of both rooms
                async def check(c: Client = c) -> None:
                    assert (await _all_messages(c, alice, room_a))[:N] == want_a
                    assert await _all_messages(c, bob, room_b) == want_b
                    assert (await _synced_bodies(c, alice, room_b))[-N:] == want_b
                    assert (await _synced_bodies(c, bob, room_a))[:N] == want_a
                    for room, tag in ((room_a, "a"), (room_b, "b")):
                        status, t = await c.request("GET", f"/rooms/{room}/state/m.room.topic",
                                                    token=alice.access_token)
                        assert status == 200 and t["topic"] == f"topic {tag}", t
                        status, m = await c.request("GET", f"/rooms/{room}/joined_members",
                                                    token=bob.access_token)
                        assert status == 200 and set(m["joined"]) == {alice.user_id,
                                                                      bob.user_id}, m
                await _eventually(check)

            # An incremental sync on b picks up what a writes after the token was issued.
            since = (await cb.sync(bob))["next_batch"]
            later = await ca.send(alice, room_a, "written on a, read on b")

            async def incremental() -> None:
                body = await cb.sync(bob, since=since)
                events = body.get("rooms", {}).get("join", {}).get(room_a, {}).get(
                    "timeline", {}).get("events", [])
                assert later in [e["event_id"] for e in events], body
            await _eventually(incremental)

            # A receipt sent through b reaches a sync on a (receipts are a stream of their own).
            since_a = (await ca.sync(alice))["next_batch"]
            status, _ = await cb.request("POST", f"/rooms/{room_a}/receipt/m.read/{later}", {},
                                         bob.access_token)
            assert status == 200

            async def receipt() -> None:
                body = await ca.sync(alice, since=since_a)
                eph = body.get("rooms", {}).get("join", {}).get(room_a, {}).get(
                    "ephemeral", {}).get("events", [])
                receipts = [e for e in eph if e["type"] == "m.receipt"]
                assert receipts and later in receipts[0]["content"], body
            await _eventually(receipt)

            # A push rule changed through b is used by a's evaluation (a drops its compiled
            # rules when it sees b's m.push_rules write): bob mutes room a on b, a writes.
            status, _ = await cb.request("PUT", f"/pushrules/global/room/{room_a}",
                                         {"actions": []}, bob.access_token)
            assert status == 200

            async def rules_seen_on_a() -> None:
                body = await ca.sync(bob)
                rules = [e for e in body.get("account_data", {}).get("events", [])
                         if e["type"] == "m.push_rules"]
                assert rules and any(r["rule_id"] == room_a
                                     for r in rules[0]["content"]["global"]["room"]), body
            await _eventually(rules_seen_on_a)
            await ca.send(alice, room_a, "muted for the other user")
            body = await ca.sync(bob)
            assert body["rooms"]["join"][room_a]["unread_notifications"][
                "notification_count"] == 0, body

            # A logout on one process ends the session on the other too (its token cache
            # trusts an entry only briefly while another process shares the database).
            status, _ = await cb.request("POST", "/logout", {}, bob.access_token)
            assert status == 200

            async def logged_out() -> None:
                status, body = await ca.request("GET", "/account/whoami",
                                                token=bob.access_token)
                assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN", body
            await _eventually(logged_out)
        assert "Traceback" not in a.log() + b.log(), a.log() + b.log()
    finally:
        b.stop()
        a.stop()
