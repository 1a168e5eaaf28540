"""Test fixtures: a real PostgreSQL database per test run and a real Parley server on a free port.

PARLEY_TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres) names a server to
create the run's database on; without it an embedded pgserver instance in a temporary folder is
used. The run's databases are dropped at the end, so runs never see each other's data.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import asyncpg
import pytest

from homeserver.config import Config, RateLimits
from homeserver.signing import ServerSigningKey


@dataclass
class PgAdmin:
    """Where to create and drop test databases."""

    admin_dsn: str

    def dsn_for(self, name: str) -> str:
        u = urlparse(self.admin_dsn)
        return urlunparse(u._replace(path="/" + name))

    async def create(self) -> str:
        name = "parley_test_" + secrets.token_hex(6)
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name

    async def drop(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[PgAdmin]:
    url = os.environ.get("PARLEY_TEST_DATABASE_URL")
    if url:
        yield PgAdmin(url)
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="parley-pg-") as d:
        server = pgserver.get_server(Path(d) / "pg", cleanup_mode="stop")
        try:
            yield PgAdmin(server.get_uri("postgres"))
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
async def database(pg_admin: PgAdmin) -> AsyncIterator[str]:
    """DSN of this run's database (dropped at the end)."""
    name = await pg_admin.create()
    try:
        yield pg_admin.dsn_for(name)
    finally:
        await pg_admin.drop(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    config: Config
    hs: Any  # homeserver.app.Homeserver
    app: Any = None  # the aiohttp web.Application serving it


def test_config(tmp: Path, **overrides: Any) -> Config:
    cfg = Config(
        server_name="parley.test",
        listen_host="127.0.0.1",
        listen_port=free_port(),
        data_dir=tmp,
        signing_key_path=tmp / "signing.key",
        registration="open",
        rate_limits=RateLimits(enabled=False),
        log_level="WARNING",
    )
    return replace(cfg, **overrides)


async def start_server(config: Config, dsn: str) -> AsyncIterator[Server]:
    from aiohttp import web

    from homeserver.app import build_homeserver, make_app
    from homeserver.http import MatrixAppRunner
    from homeserver.storage.database import Database

    db = await Database.connect(dsn, 2, 10)
    hs = await build_homeserver(config, db, ServerSigningKey.generate(config.server_name))
    runner = MatrixAppRunner(make_app(hs), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.listen_host, config.listen_port)
    await site.start()
    try:
        yield Server(f"http://{config.listen_host}:{config.listen_port}", config, hs,
                     runner.app)
    finally:
        await runner.cleanup()
        await db.close()


@pytest.fixture(scope="session")
async def server(database: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[Server]:
    """One real server for the run, registration open and rate limits off."""
    async for s in start_server(test_config(tmp_path_factory.mktemp("hs")), database):
        yield s


@pytest.fixture
async def fresh_database(pg_admin: PgAdmin) -> AsyncIterator[str]:
    """A database of its own, for tests that need their own server (kill -9, rate limits)."""
    name = await pg_admin.create()
    try:
        yield pg_admin.dsn_for(name)
    finally:
        await pg_admin.drop(name)
