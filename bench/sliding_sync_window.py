"""Sliding sync (MSC4186): a user in --rooms rooms asks for the first 20-room window.

Runs a Parley server in this process on a fresh database (PARLEY_TEST_DATABASE_URL names the
PostgreSQL server to create it on), makes one user join --rooms rooms with a message in each,
then times over loopback HTTP (client in the same process, so its JSON parsing is counted too):

- window: a new connection (no pos) with a list range [0, 19], timeline_limit 1 and the
  required_state Element X's room list asks for; `warm` with the rooms in the server's memory,
  `cold` with the room cache emptied before each request (the ordering then comes from one SQL
  statement and only the 20 rooms of the window are loaded);
- wake: a long-polling connection, another user sends into the 250th room; the time from the
  send's start until the long poll has answered, beside the same for GET /sync.

    PARLEY_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/sliding_sync_window.py --rooms 500 --runs 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import PgAdmin, start_server, test_config  # noqa: E402
from tests.helpers import Client  # noqa: E402

V4 = "/_matrix/client/v4/sync"
ELEMENT_X_STATE = [["m.room.encryption", ""], ["m.room.member", "$LAZY"],
                   ["m.room.member", "$ME"], ["m.room.name", ""], ["m.room.topic", ""],
                   ["m.room.avatar", ""], ["m.room.canonical_alias", ""],
                   ["m.room.power_levels", ""], ["m.room.create", ""], ["m.room.join_rules", ""],
                   ["m.room.pinned_events", ""], ["m.room.history_visibility", ""]]
WINDOW = {"lists": {"all_rooms": {"ranges": [[0, 19]], "timeline_limit": 1,
                                  "required_state": ELEMENT_X_STATE,
                                  "filters": {"not_room_types": ["m.space"]}}},
          "extensions": {"to_device": {"enabled": True}, "e2ee": {"enabled": True},
                         "account_data": {"enabled": True}, "receipts": {"enabled": True},
                         "typing": {"enabled": True}}}


def stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median_ms": round(statistics.median(xs) * 1000, 2),
            "p90_ms": round(xs[int(len(xs) * 0.9) - 1] * 1000, 2), "n": len(xs)}


async def run(n_rooms: int, runs: int) -> dict[str, Any]:
    admin = PgAdmin(os.environ["PARLEY_TEST_DATABASE_URL"])
    name = await admin.create()
    out: dict[str, Any] = {"rooms": n_rooms, "runs": runs}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async for server in start_server(test_config(Path(tmp)), admin.dsn_for(name)):
                async with aiohttp.ClientSession() as s:
                    c = Client(server.url, s)
                    u = await c.register()
                    other = await c.register()
                    rooms: list[str] = []
                    for i in range(n_rooms):
                        room = await c.create_room(other, preset="public_chat", name=f"R{i}")
                        await c.join(u, room)
                        await c.send(other, room, f"hello {i}")
                        rooms.append(room)
                    token = u.access_token

                    async def window(c: Client = c, token: str = token) -> float:
                        t0 = time.perf_counter()
                        status, data = await c.request("POST", V4, WINDOW, token)
                        dt = time.perf_counter() - t0
                        assert status == 200 and len(data["rooms"]) == 20, data
                        return dt

                    await window()
                    out["window_warm"] = stats([await window() for _ in range(runs)])
                    registry = server.hs.sliding_sync._rooms  # type: ignore[union-attr]
                    cold: list[float] = []
                    for _ in range(runs):
                        registry._loaded.clear()
                        cold.append(await window())
                    out["window_cold"] = stats(cold)

                    # Wake-up latency: sliding sync vs /sync long poll, message into one room.
                    target = rooms[n_rooms // 2]
                    status, first = await c.request("POST", V4, WINDOW, token)
                    pos = first["pos"]
                    ss_wake: list[float] = []
                    for i in range(runs):
                        poll = asyncio.create_task(c.request(
                            "POST", V4, {**WINDOW, "pos": pos, "timeout": 10_000}, token))
                        await asyncio.sleep(0.05)
                        t0 = time.perf_counter()
                        await c.send(other, target, f"wake {i}")
                        status, data = await poll
                        ss_wake.append(time.perf_counter() - t0)
                        assert status == 200 and target in data.get("rooms", {}), data
                        pos = data["pos"]
                    out["wake_sliding"] = stats(ss_wake)
                    sync = await c.sync(u)
                    since = sync["next_batch"]
                    v3_wake: list[float] = []
                    for i in range(runs):
                        poll = asyncio.create_task(c.sync(u, since, timeout=10_000))
                        await asyncio.sleep(0.05)
                        t0 = time.perf_counter()
                        await c.send(other, target, f"wake v3 {i}")
                        data = await poll
                        v3_wake.append(time.perf_counter() - t0)
                        assert target in data["rooms"]["join"], data
                        since = data["next_batch"]
                    out["wake_v3_sync"] = stats(v3_wake)
    finally:
        await admin.drop(name)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rooms", type=int, default=500)
    p.add_argument("--runs", type=int, default=30)
    a = p.parse_args()
    print(json.dumps(asyncio.run(run(a.rooms, a.runs)), indent=2))


if __name__ == "__main__":
    main()
