"""kill -9 during uploads: no half file, no row without its file, acknowledged media intact.

The real `parley run` is started on a database and data folder of its own; uploads are streamed
to it slowly (several at once, of different sizes) and the process is killed with SIGKILL while
they are in flight. After a restart: every row names a file whose bytes hash to its name, every
content file is complete (its SHA-256 is its name), nothing is left in the temporary folder, no
row exists for an upload that was not acknowledged, and each acknowledged upload downloads
byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg

from tests.helpers import Client, User
from tests.system.proc import ServerProcess, open_server_env

UPLOAD = "/_matrix/media/v3/upload"


async def _slow_body(size: int, started: asyncio.Event) -> AsyncIterator[bytes]:
    sent = 0
    while sent < size:
        chunk = os.urandom(min(256 * 1024, size - sent))
        sent += len(chunk)
        yield chunk
        started.set()
        await asyncio.sleep(0.05)


async def _upload(s: aiohttp.ClientSession, url: str, user: User, data: object) -> str | None:
    try:
        async with s.post(url + UPLOAD, data=data, headers={
                "Authorization": f"Bearer {user.access_token}",
                "Content-Type": "application/octet-stream"}) as r:
            body = await r.json()
            return str(body["content_uri"]) if r.status == 200 else None
    except (TimeoutError, aiohttp.ClientError):
        return None


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_kill_during_uploads_leaves_no_half_file_or_row(fresh_database: str,
                                                              tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = open_server_env(fresh_database, data_dir, PARLEY_SERVER_NAME="media.test")
    hs = ServerProcess(env, tmp_path, tmp_path / "server.log")
    try:
        hs.start()
        await hs.wait_ready()
        async with aiohttp.ClientSession() as s:
            c = Client(hs.url, s)
            alice = await c.register("alice")
            # acknowledged before the crash
            done = os.urandom(3 * 1024 * 1024)
            acked = await _upload(s, hs.url, alice, done)
            assert acked is not None
            # in flight when the process dies
            starts = [asyncio.Event() for _ in range(6)]
            uploads = [asyncio.ensure_future(_upload(
                s, hs.url, alice, _slow_body((i + 1) * 2 * 1024 * 1024, starts[i])))
                for i in range(6)]
            for e in starts:
                await asyncio.wait_for(e.wait(), 10)
            await asyncio.sleep(0.3)
            assert _files(data_dir / "media" / "tmp"), "no upload was being written"
            hs.kill()
            results = await asyncio.gather(*uploads)
            assert results == [None] * 6  # none of them was acknowledged

        hs.start()
        await hs.wait_ready()
        assert not _files(data_dir / "media" / "tmp")
        conn = await asyncpg.connect(fresh_database)
        try:
            rows = await conn.fetch("SELECT media_id, sha256, size FROM local_media")
        finally:
            await conn.close()
        assert [r["media_id"] for r in rows] == [acked.rsplit("/", 1)[1]]
        content = _files(data_dir / "media" / "content")
        for f in content:  # complete files only, each named by its hash
            assert hashlib.sha256(f.read_bytes()).hexdigest() == f.name
        names = {f.name for f in content}
        for r in rows:
            assert r["sha256"] in names and r["size"] == len(done)
        async with aiohttp.ClientSession() as s:
            c = Client(hs.url, s)
            status, body = await c.request("POST", "/login", {
                "type": "m.login.password", "user": "alice", "password": "pw-secret-1"})
            assert status == 200, body
            server_media = acked.removeprefix("mxc://")
            async with s.get(f"{hs.url}/_matrix/client/v1/media/download/{server_media}",
                             headers={"Authorization": f"Bearer {body['access_token']}"}) as r:
                assert r.status == 200 and await r.read() == done
    finally:
        hs.stop()
