"""A server with parked long-polls stops promptly on SIGTERM and answers them on its way out."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from tests.helpers import Client
from tests.system.proc import ServerProcess, open_server_env


async def test_sigterm_answers_parked_long_polls_and_exits(fresh_database: str,
                                                           tmp_path: Path) -> None:
    env = open_server_env(fresh_database, tmp_path / "data")
    hs = ServerProcess(env, tmp_path, tmp_path / "server.log")
    try:
        hs.start()
        await hs.wait_ready()
        async with aiohttp.ClientSession() as s:
            c = Client(hs.url, s)
            users = [await c.register() for _ in range(3)]
            since = [(await c.sync(u))["next_batch"] for u in users]
            polls = [asyncio.create_task(c.sync(u, nb, timeout=60_000))
                     for u, nb in zip(users, since, strict=True)]
            await asyncio.sleep(0.5)
            assert not any(p.done() for p in polls)
            t0 = time.monotonic()
            code = await asyncio.to_thread(hs.terminate, 20.0)
            elapsed = time.monotonic() - t0
            assert code == 0, hs.log()
            assert elapsed < 8, f"shutdown took {elapsed:.1f}s"
            results = await asyncio.gather(*polls, return_exceptions=True)
            # Each parked poll got an answer (an empty sync) rather than a dropped connection.
            for r in results:
                assert isinstance(r, dict) and "next_batch" in r, r
    finally:
        hs.stop()
