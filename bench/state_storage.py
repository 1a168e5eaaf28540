"""State storage per event: a 100-member room with a few thousand messages.

Speaks the client-server API to build the room, then asks PostgreSQL how many bytes the
homeserver's state tables hold (tables, indexes and TOAST). Works for Parley and Synapse:

    python bench/state_storage.py --url http://127.0.0.1:8008 \
        --dsn postgresql://postgres@127.0.0.1:5432/parley --flavour parley
    python bench/state_storage.py --url http://127.0.0.1:18008 \
        --dsn postgresql://postgres@127.0.0.1:5432/synapse --flavour synapse

Measure on a fresh database: the figure divides all state bytes by all events.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from typing import Any
from urllib.parse import urlparse

import aiohttp
import asyncpg

STATE_TABLES = {
    "parley": ["state_groups", "state_group_entries", "current_state", "room_memberships"],
    "synapse": ["state_groups", "state_groups_state", "state_group_edges",
                "event_to_state_groups", "current_state_events", "room_memberships",
                "local_current_membership"],
}
EVENT_TABLES = {"parley": ["events"], "synapse": ["events", "event_json"]}


async def call(s: aiohttp.ClientSession, url: str, method: str, path: str,
               body: Any = None, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for _ in range(20):
        async with s.request(method, url + "/_matrix/client/v3" + path, json=body,
                             headers=headers) as r:
            data = await r.json(content_type=None)
            if r.status == 429:
                await asyncio.sleep(data.get("retry_after_ms", 100) / 1000)
                continue
            return data
    raise RuntimeError("rate limited")


async def register(s: aiohttp.ClientSession, url: str, prefix: str, i: int) -> str:
    body: dict[str, Any] = {"username": f"{prefix}{i}", "password": "bench-pass-1",
                            "auth": {"type": "m.login.dummy"}}
    data = await call(s, url, "POST", "/register", body)
    if "access_token" not in data:
        body["auth"]["session"] = data.get("session")
        data = await call(s, url, "POST", "/register", body)
    return str(data["access_token"])


async def relation_bytes(conn: asyncpg.Connection, tables: list[str]) -> int:
    total = 0
    for t in tables:
        v = await conn.fetchval("SELECT pg_total_relation_size(to_regclass($1))", t)
        total += int(v or 0)
    return total


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--flavour", choices=sorted(STATE_TABLES), default="parley")
    ap.add_argument("--members", type=int, default=100)
    ap.add_argument("--messages", type=int, default=3000)
    args = ap.parse_args()
    host = urlparse(args.url).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        raise SystemExit("refusing a non-loopback URL")
    prefix = "st" + secrets.token_hex(3) + "_"
    t0 = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as s:
        sem = asyncio.Semaphore(10)

        async def reg(i: int) -> str:
            async with sem:
                return await register(s, args.url, prefix, i)

        tokens = await asyncio.gather(*(reg(i) for i in range(args.members)))
        room = (await call(s, args.url, "POST", "/createRoom", {"preset": "public_chat"},
                           tokens[0]))["room_id"]
        for tok in tokens[1:]:
            await call(s, args.url, "POST", f"/join/{room}", {}, tok)

        async def send(i: int) -> None:
            async with sem:
                await call(s, args.url, "PUT", f"/rooms/{room}/send/m.room.message/b{i}",
                           {"msgtype": "m.text", "body": f"message {i}"}, tokens[i % len(tokens)])

        await asyncio.gather(*(send(i) for i in range(args.messages)))
    conn = await asyncpg.connect(args.dsn)
    try:
        state = await relation_bytes(conn, STATE_TABLES[args.flavour])
        events_bytes = await relation_bytes(conn, EVENT_TABLES[args.flavour])
        n_events = int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()
    print(f"| {args.flavour} | {args.members} members | {n_events} events | "
          f"state {state / 1024:.0f} KiB | {state / n_events:.0f} B state/event | "
          f"events {events_bytes / n_events:.0f} B/event | "
          f"built in {time.monotonic() - t0:.0f} s |")


if __name__ == "__main__":
    asyncio.run(main())
