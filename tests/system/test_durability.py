"""kill -9 durability: every event the server acknowledged with 200 survives a crash.

The real `parley run` is started as a child process on a database of its own, made to persist ~50
messages (some sent concurrently), killed with SIGKILL, and restarted on the same database. Paging
back through /messages must show every acknowledged event, in order; the server must keep working
(new sends, an old sync token, an idempotent transaction resent after the restart).
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import aiohttp

from tests.helpers import Client, User
from tests.system.proc import ServerProcess, open_server_env


async def _messages(c: Client, user: User, room: str) -> list[dict]:
    """All m.room.message events of the room, oldest first, by paging back from the end."""
    events: list[dict] = []
    params = {"dir": "b", "limit": "7"}
    for _ in range(200):
        status, body = await c.request("GET", f"/rooms/{room}/messages", token=user.access_token,
                                       params=params)
        assert status == 200, body
        events.extend(body["chunk"])
        if not body["chunk"] or "end" not in body:
            break
        params = {"dir": "b", "limit": "7", "from": body["end"]}
    else:
        raise AssertionError("/messages never reached the start of the room")
    return [e for e in reversed(events) if e["type"] == "m.room.message"]


async def test_acknowledged_events_survive_sigkill(fresh_database: str, tmp_path: Path) -> None:
    env = open_server_env(fresh_database, tmp_path / "data", PARLEY_SERVER_NAME="durable.test")
    hs = ServerProcess(env, tmp_path, tmp_path / "server.log")
    try:
        hs.start()
        await hs.wait_ready()
        async with aiohttp.ClientSession() as s:
            c = Client(hs.url, s)
            alice = await c.register("alice")
            room = await c.create_room(alice, name="durability")
            # acked: event ids in the order the server acknowledged them; groups: the ids sent
            # at the same time, whose relative order is the server's choice.
            groups: list[list[str]] = []
            for i in range(20):
                groups.append([await c.send(alice, room, f"seq {i}")])
            groups.append(list(await asyncio.gather(
                *(c.send(alice, room, f"concurrent {i}") for i in range(15)))))
            since = (await c.sync(alice))["next_batch"]
            for i in range(14):
                groups.append([await c.send(alice, room, f"after-token {i}")])
            txn = "txn-" + secrets.token_hex(4)
            last = await c.send(alice, room, "the last one before the crash", txn=txn)
            groups.append([last])
            acked = [e for g in groups for e in g]
            assert len(acked) == 50 and len(set(acked)) == 50

        hs.kill()
        assert hs.proc is not None and hs.proc.returncode == -9
        hs.start()
        await hs.wait_ready()

        async with aiohttp.ClientSession() as s:
            c = Client(hs.url, s)
            found = [e["event_id"] for e in await _messages(c, alice, room)]
            assert set(acked) <= set(found), f"lost {set(acked) - set(found)}"
            # Same order: each group occupies the next len(group) positions.
            pos = 0
            for g in groups:
                assert set(found[pos:pos + len(g)]) == set(g), (pos, g, found)
                pos += len(g)

            # The same transaction id resent after the restart is deduplicated.
            status, body = await c.request(
                "PUT", f"/rooms/{room}/send/m.room.message/{txn}",
                {"msgtype": "m.text", "body": "the last one before the crash"},
                alice.access_token)
            assert status == 200, body
            assert body["event_id"] == last

            # A sync token from before the crash still works, and carries on from there.
            incremental = await c.sync(alice, since)
            timeline = incremental["rooms"]["join"][room]["timeline"]["events"]
            ids = [e["event_id"] for e in timeline]
            assert ids and ids[-1] == last
            assert ids == acked[-len(ids):]

            # The server keeps working: a new message lands after everything else.
            fresh = await c.send(alice, room, "after the restart")
            found_again = [e["event_id"] for e in await _messages(c, alice, room)]
            assert found_again == found + [fresh]
            later = await c.sync(alice, incremental["next_batch"])
            assert [e["event_id"] for e in
                    later["rooms"]["join"][room]["timeline"]["events"]] == [fresh]
    finally:
        hs.stop()
