"""Cost of push evaluation on sending into a room where every member has a pusher.

Runs a Parley server in this process on a fresh database (PARLEY_TEST_DATABASE_URL names the
PostgreSQL server to create it on), makes a room of --members users, gives each a pusher aimed
at a local gateway that accepts everything, and sends --messages messages. It times the push
persist hook (`NotificationService.write`, run inside each event's transaction: evaluation
for every member plus the insert of the notifications and counts) in wall time and in this
process's CPU time, and reports both per event and per member per event. Before the timed
sends, 20 warm-up messages and an ANALYZE stand in for a server that has been running a while
(see the comment where they are sent). It also reports the
PUT round trip, with the hook and (with --no-push) without it.

    PARLEY_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/push_eval.py --members 100 --messages 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import PgAdmin, start_server, test_config  # noqa: E402
from tests.helpers import Client  # noqa: E402

NOTIFY = "/_matrix/push/v1/notify"


async def run(members: int, messages: int, push: bool) -> dict[str, Any]:
    admin = PgAdmin(os.environ["PARLEY_TEST_DATABASE_URL"])
    name = await admin.create()
    calls = 0

    async def notify(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        await request.read()
        return web.json_response({"rejected": []})

    gw = web.Application()
    gw.router.add_post(NOTIFY, notify)
    gw_runner = web.AppRunner(gw, access_log=None)
    await gw_runner.setup()
    site = web.TCPSite(gw_runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hook_wall: list[float] = []
    hook_cpu: list[float] = []
    put: list[float] = []
    delivery_s = 0.0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = test_config(Path(tmp), outbound_allow=("127.0.0.0/8",))
            async for server in start_server(cfg, admin.dsn_for(name)):
                hooks = server.hs.writer._on_persist
                if not push:
                    hooks.clear()
                else:
                    class Timed:
                        def __init__(self, inner: Any) -> None:
                            self.inner = inner

                        def wants(self, room: Any, ev: Any) -> bool:
                            return bool(self.inner.wants(room, ev))

                        async def write(self, conn: Any, room: Any, events: Any) -> Any:
                            w, c = time.perf_counter(), time.process_time()
                            out = await self.inner.write(conn, room, events)
                            hook_cpu.append(time.process_time() - c)
                            hook_wall.append(time.perf_counter() - w)
                            return out

                        def finished(self, room: Any, written: Any, committed: bool) -> None:
                            self.inner.finished(room, written, committed)
                    hooks[0] = Timed(hooks[0])
                async with aiohttp.ClientSession() as s:
                    c = Client(server.url, s)
                    users = [await c.register() for _ in range(members)]
                    room = await c.create_room(users[0], preset="public_chat")
                    for u in users[1:]:
                        await c.join(u, room)
                    for u in users:
                        await c.request("POST", "/pushers/set", {
                            "kind": "http", "app_id": "bench", "pushkey": secrets.token_hex(8),
                            "app_display_name": "b", "device_display_name": "b", "lang": "en",
                            "data": {"url": f"http://127.0.0.1:{port}{NOTIFY}"}},
                            u.access_token)
                    # The sender waits while the sends are timed (its HTTP work would be
                    # counted in this process's CPU time), then delivers everything.
                    sender = next(b for b in server.hs.background
                                  if type(b).__name__ == "PusherSender")
                    await sender.stop()
                    # A long-running server's tables have statistics (autovacuum analyses them
                    # within a minute or so); a fresh database has none, and a prepared
                    # statement planned on empty tables keeps a poor plan as they fill.
                    for i in range(20):
                        await c.send(users[0], room, f"warm-up {i}")
                    await server.hs.db.execute("ANALYZE")
                    hook_wall.clear()
                    hook_cpu.clear()
                    for i in range(messages):
                        t = time.perf_counter()
                        await c.send(users[0], room, f"message {i}")
                        put.append(time.perf_counter() - t)
                    await sender.start()
                    t = time.perf_counter()
                    deadline = time.monotonic() + 120
                    while push and calls < (messages + 20) * (members - 1) and \
                            time.monotonic() < deadline:
                        await asyncio.sleep(0.1)
                    delivery_s = time.perf_counter() - t
    finally:
        await gw_runner.cleanup()
        await admin.drop(name)
    out: dict[str, Any] = {"members": members, "messages": messages, "push": push,
                           "put_p50_ms": statistics.median(put) * 1000,
                           "pushes_delivered": calls, "delivery_s": delivery_s}
    if hook_wall:
        per = members - 1
        out.update({
            "hook_wall_p50_ms": statistics.median(hook_wall) * 1000,
            "hook_cpu_mean_ms": statistics.mean(hook_cpu) * 1000,
            "hook_cpu_per_member_us": statistics.mean(hook_cpu) / per * 1e6,
            "hook_wall_per_member_us": statistics.median(hook_wall) / per * 1e6,
        })
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=100)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--no-push", action="store_true", help="remove the push hook")
    a = p.parse_args()
    print(asyncio.run(run(a.members, a.messages, not a.no_push)))


if __name__ == "__main__":
    main()
