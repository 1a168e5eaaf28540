"""Pushes pending when the server dies are delivered after a restart, and none that the gateway
accepted is sent again: the real `parley run`, killed with SIGKILL while its gateway is down."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from tests.client_api.test_push import dm, run_gateway, set_pusher
from tests.helpers import Client
from tests.system.proc import ServerProcess, open_server_env


async def test_pending_pushes_survive_sigkill(fresh_database: str, tmp_path: Path) -> None:
    env = open_server_env(fresh_database, tmp_path / "data", PARLEY_SERVER_NAME="push.test",
                          PARLEY_OUTBOUND_ALLOW="127.0.0.0/8")
    hs = ServerProcess(env, tmp_path, tmp_path / "server.log")
    async for gw in run_gateway():
        try:
            hs.start()
            await hs.wait_ready()
            async with aiohttp.ClientSession() as s:
                c = Client(hs.url, s)
                alice, bob, room = await dm(c)
                await set_pusher(c, bob, gw.url)
                first = await c.send(alice, room, "delivered before the crash")
                await gw.wait_calls(1)
                gw.failing = True
                pending = [await c.send(alice, room, f"pending {i}") for i in range(3)]
                deadline = time.monotonic() + 10
                while gw.attempts < 2 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            hs.kill()
            gw.failing = False
            hs.start()
            await hs.wait_ready()
            calls = await gw.wait_calls(4, timeout=30)
            await asyncio.sleep(1.0)
            assert [n["event_id"] for n in calls] == [first, *pending], hs.log()
        finally:
            hs.stop()
