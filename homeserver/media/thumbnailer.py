"""Thumbnails made once and kept: look up, else make in a worker thread, store, serve.

A thumbnail is stored as content of its own (media_thumbnails names it by the source's hash,
size, method and whether it is animated), so identical uploads share thumbnails and a second
request is a lookup. Concurrent requests for one thumbnail wait for a single generation, and at
most `WORKERS` images are decoded at once, so a burst of requests cannot take all the memory;
the event loop never decodes. A generation runs as a task of its own, so it completes (and
is stored) even if the client that asked goes away.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from homeserver.config import MediaConfig
from homeserver.errors import Codes, MatrixError
from homeserver.media.headers import base_type
from homeserver.media.ingest import publish, receive_bytes
from homeserver.media.service import MediaInfo, now_ms
from homeserver.media.storage import MediaStorage
from homeserver.media.store import MediaStore
from homeserver.media.thumbnails import (
    THUMBNAIL_TYPES,
    Thumbnail,
    ThumbnailError,
    choose_size,
    make_thumbnail,
)
from homeserver.storage.database import Conn, Database

WORKERS = 2
ANIMATABLE = frozenset({"image/gif", "image/webp"})


@dataclass(frozen=True, slots=True)
class ThumbnailRef:
    """What to serve: stored content `sha256` of `content_type` (the original when it is
    already small enough)."""

    sha256: str
    content_type: str
    size: int


class Thumbnailer:
    def __init__(self, db: Database, store: MediaStore, storage: MediaStorage,
                 config: MediaConfig) -> None:
        self.db, self.store, self.storage, self.config = db, store, storage, config
        self._busy = asyncio.Semaphore(WORKERS)
        self._making: dict[tuple[str, int, int, str, bool], asyncio.Task[ThumbnailRef]] = {}

    async def thumbnail(self, info: MediaInfo, width: int, height: int, method: str,
                        animated: bool) -> ThumbnailRef:
        ctype = base_type(info.content_type or "")
        if ctype not in THUMBNAIL_TYPES:
            raise MatrixError(400, Codes.UNKNOWN, "This media cannot be thumbnailed")
        animated = animated and ctype in ANIMATABLE  # else behave as animated=false (spec)
        w, h = choose_size(width, height, method)
        key = (info.sha256, w, h, method, animated)
        row = await self.store.thumbnail(self.db.pool, *key)
        if row is not None:
            return ThumbnailRef(row["sha256"], row["content_type"], int(row["size"]))
        # One task per thumbnail, not tied to the request that started it: a client that goes
        # away does not waste the work, and concurrent requests wait for the same result.
        task = self._making.get(key)
        if task is None:
            task = asyncio.ensure_future(self._make(info, key))
            self._making[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        return await asyncio.shield(task)

    def _done(self, key: tuple[str, int, int, str, bool], task: asyncio.Task[ThumbnailRef]
              ) -> None:
        self._making.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved, even when every waiter has gone

    async def _make(self, info: MediaInfo, key: tuple[str, int, int, str, bool]
                    ) -> ThumbnailRef:
        source_sha, w, h, method, animated = key
        path = self.storage.local_path(source_sha)
        async with self._busy:
            source = path if path is not None else b"".join(
                [c async for c in self.storage.chunks(source_sha)])
            try:
                thumb = await asyncio.to_thread(
                    make_thumbnail, source, w, h, method, animated,
                    self.config.max_image_pixels, self.config.max_thumbnail_frames)
            except ThumbnailError as e:
                if e.too_large:
                    raise MatrixError(413, Codes.TOO_LARGE, str(e)) from None
                raise MatrixError(400, Codes.UNKNOWN, str(e)) from None
        if thumb is None:  # the original is no larger than asked for: serve it
            return ThumbnailRef(info.sha256, info.content_type or "application/octet-stream",
                                info.size)
        return await self._save(key, thumb)

    async def _save(self, key: tuple[str, int, int, str, bool], thumb: Thumbnail
                    ) -> ThumbnailRef:
        upload, sha256 = await receive_bytes(self.storage, thumb.data)

        async def write_row(conn: Conn) -> bool:
            await self.store.insert_thumbnail(conn, *key, thumb.content_type, len(thumb.data),
                                              sha256, now_ms())
            return True

        await publish(self.db, self.store, self.storage, upload, sha256, write_row)
        row = await self.store.thumbnail(self.db.pool, *key)
        assert row is not None
        return ThumbnailRef(row["sha256"], row["content_type"], int(row["size"]))
