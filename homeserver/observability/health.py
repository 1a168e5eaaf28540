"""The database's health as requests see it.

When PostgreSQL cannot be reached (restarting, failed over, network gone), a request that
needs it fails with a connection error. Such a failure is an outage, not a bug: the request
gets 503 with Retry-After (M_UNKNOWN body) instead of 500 and a traceback, the outage is
logged once when it starts, and a probe pings the database until it answers again, which is
logged once as well. asyncpg's pool replaces broken connections on their next use, so the
server recovers by itself; nothing acknowledged is lost because nothing is acknowledged
before its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from homeserver.observability.store import ObservabilityStore
from homeserver.storage.database import Database, is_connection_failure

log = logging.getLogger("parley.database")

RETRY_AFTER_S = 2
PROBE_INTERVAL_S = 0.5
PING_TIMEOUT_S = 2.0


def is_outage(exc: BaseException) -> bool:
    return is_connection_failure(exc)


class DatabaseHealth:
    def __init__(self, db: Database, store: ObservabilityStore) -> None:
        self._db = db
        self._store = store
        self.outage_since: float | None = None
        self._probe: asyncio.Task[None] | None = None
        db.on_outage = self.failed
        _quiet_pool_warnings()

    async def ping(self) -> bool:
        """Whether the database answers now (a fresh query through the pool)."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_S), self._db.connection() as conn:
                await self._store.ping(conn)
        except Exception:
            return False
        return True

    def failed(self, exc: BaseException) -> None:
        """A request met `exc`, an outage: log its start once and probe until it ends."""
        if self.outage_since is not None:
            return
        self.outage_since = time.monotonic()
        log.error("database unreachable (%s: %s); answering 503 until it is back",
                  type(exc).__name__, exc)
        self._probe = asyncio.get_running_loop().create_task(self._wait_for_recovery(),
                                                             name="database-probe")

    async def _wait_for_recovery(self) -> None:
        while not await self.ping():
            await asyncio.sleep(PROBE_INTERVAL_S)
        started, self.outage_since = self.outage_since, None
        log.warning("database reachable again after %.1f s",
                    time.monotonic() - (started or time.monotonic()))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        task, self._probe = self._probe, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _PoolOutageFilter(logging.Filter):
    """asyncpg's pool logs a traceback each time it cannot reopen a connection; during an
    outage that is the outage again, already logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or not is_connection_failure(exc)


def _quiet_pool_warnings() -> None:
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, _PoolOutageFilter) for f in pool_log.filters):
        pool_log.addFilter(_PoolOutageFilter())
