"""The asyncpg pool and transaction helper: the only place that knows how we talk to PostgreSQL.

Stores take a `Conn` argument so that a service can run several store calls in one transaction
(`async with db.transaction() as conn:`) and a failed request leaves no partial rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

Conn = Any  # asyncpg.Connection or a pool proxy; asyncpg ships no precise type for the proxy


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Released connections skip asyncpg's reset query (a round trip on every release, a
    third of a message's round trips): we never change session state (no SET, LISTEN,
    session advisory locks or cursors outside transactions). asyncpg still rolls back a
    transaction left open, so a failed request cannot leak one into the next."""


def is_connection_failure(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says PostgreSQL cannot be reached (restarting, failed
    over, network gone), as opposed to a bug or a refused statement."""
    e: BaseException | None = exc
    for _ in range(5):
        if e is None:
            return False
        if isinstance(e, asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError
                      | asyncpg.AdminShutdownError | asyncpg.CrashShutdownError
                      | asyncpg.ConnectionDoesNotExistError | ConnectionRefusedError):
            return True
        text = str(e).lower()
        if isinstance(e, asyncpg.InterfaceError) and "connection" in text and (
                "closed" in text or "lost" in text):
            return True
        if isinstance(e, asyncpg.InternalClientError) and (
                "another operation" in text or "free connection holder" in text):
            # A connection left mid-operation when the server went away under it (seen while
            # PostgreSQL shuts down): the pool drops it on release, and a release racing that
            # drop finds its holder already freed.
            return True
        if isinstance(e, OSError) and e.errno is not None:
            return True  # connecting failed (no route, the socket file is gone, reset)
        e = e.__cause__ or e.__context__
    return False


class Database:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # Told of each connection failure (homeserver/observability/health.py logs an
        # outage once at its start and once at its end).
        self.on_outage: Callable[[BaseException], None] | None = None

    def outage(self, exc: BaseException) -> bool:
        """Whether `exc` is a connection failure; if so the outage watcher hears of it, so a
        background loop that meets one need not log a traceback of its own."""
        if not is_connection_failure(exc):
            return False
        if self.on_outage is not None:
            self.on_outage(exc)
        return True

    @classmethod
    async def connect(cls, dsn: str, min_size: int = 2, max_size: int = 10) -> Database:
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, statement_cache_size=512,
            reset=_keep_session,
        )
        assert pool is not None
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        async with self.pool.acquire() as conn:
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self.pool.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self.pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.pool.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        return await self.pool.execute(query, *args)
