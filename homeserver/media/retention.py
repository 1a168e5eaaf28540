"""The media retention task: purges old media, expired ids and previews, and orphaned files.

Every `purge_interval_ms` it deletes, in batches: created media ids never uploaded whose expiry
passed; local media uploaded longer ago than `local_media_lifetime_ms` and cached remote media
unused for `remote_media_lifetime_ms` (when set); expired URL previews. A file goes only when no
row names it any more (content is shared by identical uploads), checked under the content's lock
(see ingest.py). Files no row names that are older than `ORPHAN_AGE_MS` (left by a crash between
the rename and the row) are removed too. Several processes may run it: every step is idempotent.
"""

from __future__ import annotations

import asyncio
import logging

from homeserver.config import MediaConfig
from homeserver.media.service import now_ms
from homeserver.media.storage import MediaStorage
from homeserver.media.store import MediaStore
from homeserver.storage.database import Database

log = logging.getLogger(__name__)

BATCH = 500
ORPHAN_AGE_MS = 3600 * 1000


class MediaRetention:
    def __init__(self, db: Database, store: MediaStore, storage: MediaStorage,
                 config: MediaConfig) -> None:
        self.db, self.store, self.storage, self.config = db, store, storage, config
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.storage.start()  # removes what a crash left half written
        self._task = asyncio.create_task(self._run(), name="media-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.purge_interval_ms / 1000)
            try:
                await self.purge()
            except Exception:
                log.exception("media retention pass failed")

    async def purge(self, now: int | None = None) -> int:
        """One pass; how many files were deleted."""
        now = now_ms() if now is None else now
        async with self.db.transaction() as conn:
            await self.store.delete_expired_pending(conn, now)
            await self.store.delete_expired_previews(conn, now)
        deleted = 0
        lifetimes = ((self.config.local_media_lifetime_ms, self.store.delete_local_before),
                     (self.config.remote_media_lifetime_ms,
                      self.store.delete_remote_unused_since))
        for lifetime, delete in lifetimes:
            if not lifetime:
                continue
            while True:
                async with self.db.transaction() as conn:
                    hashes = await delete(conn, now - lifetime, BATCH)
                for sha256 in set(hashes):
                    deleted += await self.drop_if_unused(sha256)
                if len(hashes) < BATCH:
                    break
        deleted += await self.sweep_orphans(now - ORPHAN_AGE_MS)
        return deleted

    async def drop_if_unused(self, sha256: str) -> int:
        """Delete the content (and its thumbnails, when nothing names the source any more)
        if no row names it; how many files went."""
        deleted = 0
        async with self.db.transaction() as conn:
            await self.store.lock_content(conn, sha256)
            if await self.store.is_referenced_as_source(conn, sha256):
                return 0
            thumbs = await self.store.delete_thumbnails_of(conn, sha256)
            if not await self.store.is_referenced(conn, sha256):
                await self.storage.delete(sha256)
                deleted += 1
        for thumb in set(thumbs):
            deleted += await self.drop_if_unused(thumb)
        return deleted

    async def sweep_orphans(self, older_than: int) -> int:
        candidates = await self.storage.list_older_than(older_than)
        deleted = 0
        for i in range(0, len(candidates), BATCH):
            batch = candidates[i:i + BATCH]
            async with self.db.connection() as conn:
                named = await self.store.referenced_among(conn, batch)
            for sha256 in batch:
                if sha256 not in named:
                    deleted += await self.drop_if_unused(sha256)
        return deleted
