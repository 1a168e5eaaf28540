"""Prunes old read notifications, so push_notifications does not grow without end.

A row is kept while it is unread (after the user's read positions: the counts are the number
of such rows) and, once read, until KEEP_DAYS after it was written, so that
GET /notifications still pages back through recent history (Synapse keeps about as long). The
work is done in small batches, once an hour, so it never holds many row locks at once; several
processes on one database may each run it (deleting twice is harmless).
"""

from __future__ import annotations

import asyncio
import logging
import time

from homeserver.push.notify_store import NotificationStore
from homeserver.storage.database import Database

log = logging.getLogger(__name__)

KEEP_DAYS = 30
EVERY_S = 3600.0
BATCH = 5000


class NotificationPruner:
    def __init__(self, db: Database, store: NotificationStore, keep_days: int = KEEP_DAYS,
                 every_s: float = EVERY_S) -> None:
        self._db = db
        self._store = store
        self._keep_ms = keep_days * 86_400_000
        self._every = every_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notification-pruner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def prune_once(self, now_ms: int | None = None) -> int:
        """Deletes read notifications older than the keep period; how many went."""
        cutoff = (now_ms if now_ms is not None else int(time.time() * 1000)) - self._keep_ms
        total = 0
        while True:
            async with self._db.connection() as conn:
                n = await self._store.delete_read_before(conn, cutoff, BATCH)
            total += n
            if n < BATCH:
                return total
            await asyncio.sleep(0)  # let requests in between batches

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                n = await self.prune_once()
                if n:
                    log.info("pruned %d read notifications older than %d days", n,
                             self._keep_ms // 86_400_000)
            except Exception:  # e.g. the database is away; next hour again
                log.exception("pruning notifications")
