"""The media repository's entry point: uploads, asynchronous uploads, lookups, quarantine.

HTTP handlers (client_api/media.py, client_api/media_upload.py) and the federation media
endpoints (federation/media.py) call this; they never see the store or the storage backend.
What a download needs is `get` (metadata, after the access rules) and `content` (a local file
or a byte stream); federation serves our own media with `open_local` and caches other servers'
media with `store_remote`, fetching through `remote` (homeserver/media/remote.py) once per
item however many ask.

Rules kept here: media ids are `[A-Za-z0-9_-]` (the spec's sanitising rule), quarantined media
and expired pending ids do not exist for downloads, media uploaded while unauthenticated
access is frozen is refused on the legacy endpoints (404, as the spec says), quota and the
pending-upload limit are checked before a byte is stored.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from homeserver.config import MediaConfig
from homeserver.errors import Codes, MatrixError, forbidden, not_found
from homeserver.media.headers import clean_content_type, clean_filename
from homeserver.media.ingest import publish, receive
from homeserver.media.storage import MediaStorage
from homeserver.media.store import MediaStore
from homeserver.storage.database import Conn, Database
from homeserver.types import is_valid_server_name

MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
MAX_WAIT_MS = 60_000
RECHECK_S = 1.0  # an upload finished by another process is seen within this


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class MediaInfo:
    origin: str
    media_id: str
    content_type: str | None
    upload_name: str | None
    size: int
    sha256: str
    created_ts: int
    authenticated: bool
    user_id: str | None = None


class RemoteMediaSource(Protocol):
    """Fetches media from its origin server (the federation media client implements it)."""

    async def fetch(self, origin: str, media_id: str, max_bytes: int
                    ) -> tuple[str | None, str | None, AsyncIterable[bytes]]:
        """(content type, file name, body); raises MatrixError (e.g. 404, 502)."""
        ...


def check_media_id(server_name: str, media_id: str) -> None:
    if not is_valid_server_name(server_name) or not MEDIA_ID.fullmatch(media_id):
        raise not_found("Unknown media")


class MediaService:
    def __init__(self, db: Database, store: MediaStore, storage: MediaStorage,
                 config: MediaConfig, server_name: str) -> None:
        self.db, self.store, self.storage = db, store, storage
        self.config = config
        self.server_name = server_name
        self.remote: RemoteMediaSource | None = None
        self._uploaded: dict[str, asyncio.Event] = {}
        self._fetching: dict[tuple[str, str], asyncio.Task[MediaInfo]] = {}

    # ------------------------------------------------------------------ uploads

    async def create(self, user_id: str) -> tuple[str, int]:
        """A new media id for an asynchronous upload; (media id, unused_expires_at)."""
        media_id = secrets.token_urlsafe(18)
        now = now_ms()
        expires = now + self.config.unused_expiry_ms
        async with self.db.transaction() as conn:
            await self.store.lock_content(conn, "pending:" + user_id)
            if await self.store.pending_count(conn, user_id, now) >= (
                    self.config.max_pending_uploads):
                raise MatrixError(429, Codes.LIMIT_EXCEEDED, "Too many pending uploads",
                                  retry_after_ms=60_000)
            await self.store.create_pending(conn, media_id, user_id, now, expires)
        return media_id, expires

    async def check_pending(self, user_id: str, server_name: str, media_id: str) -> None:
        """Refuse an upload to a created id before its body is read (404, 403, 409)."""
        if server_name != self.server_name:
            raise not_found("Unknown media id")
        check_media_id(server_name, media_id)
        row = await self.store.local(self.db.pool, media_id)
        if row is None or (row["sha256"] is None and row["expires_ts"] <= now_ms()):
            raise not_found("Unknown media id")
        if row["user_id"] != user_id:
            raise forbidden("This media id was created by another user")
        if row["sha256"] is not None:
            raise MatrixError(409, Codes.CANNOT_OVERWRITE_MEDIA, "Media already uploaded")

    async def upload(self, user_id: str, content_type: str | None, filename: str | None,
                     body: AsyncIterable[bytes], declared_size: int | None = None,
                     media_id: str | None = None) -> str:
        """Store an upload (streamed); its media id. With `media_id`, fill a created id."""
        limit = self.config.max_upload_bytes
        if declared_size is not None and declared_size > limit:
            raise MatrixError(413, Codes.TOO_LARGE, f"Media is larger than {limit} bytes")
        if media_id is not None:
            await self.check_pending(user_id, self.server_name, media_id)
        quota = self.config.max_user_bytes
        used = await self.store.user_bytes(self.db.pool, user_id) if quota else 0
        if quota and used + (declared_size or 0) > quota:
            raise forbidden("Media quota exceeded")
        cap: int = limit
        error: Callable[[int], Exception] = _too_large
        if quota and quota - used < limit:  # the quota is reached first: 403, not 413
            cap, error = max(0, quota - used), lambda n: forbidden("Media quota exceeded")
        upload, sha256 = await receive(self.storage, body, cap, error=error)
        ctype, name = clean_content_type(content_type), clean_filename(filename)
        auth_only = self.config.freeze_unauthenticated
        new_id = media_id or secrets.token_urlsafe(18)
        now = now_ms()

        async def write_row(conn: Conn) -> bool:
            if quota and await self.store.user_bytes(conn, user_id) + upload.size > quota:
                raise forbidden("Media quota exceeded")
            if media_id is None:
                await self.store.insert_uploaded(conn, new_id, user_id, now, ctype, name,
                                                 upload.size, sha256, auth_only)
                return True
            return await self.store.complete_pending(conn, media_id, user_id, now, ctype, name,
                                                     upload.size, sha256, auth_only)

        if not await publish(self.db, self.store, self.storage, upload, sha256, write_row):
            # lost a race with another upload to the same id, or it expired meanwhile
            await self.check_pending(user_id, self.server_name, new_id)
            raise not_found("Unknown media id")
        event = self._uploaded.pop(new_id, None)
        if event is not None:
            event.set()
        return new_id

    # ------------------------------------------------------------------ lookups

    async def get(self, server_name: str, media_id: str, *, wait_ms: int = 0,
                  legacy: bool = False, allow_remote: bool = True) -> MediaInfo:
        """The media for a download or thumbnail; 404 if unknown, quarantined, or (on a legacy
        endpoint) uploaded after the freeze; 504 M_NOT_YET_UPLOADED after `wait_ms`."""
        check_media_id(server_name, media_id)
        if server_name == self.server_name:
            info = await self._local(media_id, min(wait_ms, MAX_WAIT_MS))
            await self.store.touch_local(self.db.pool, media_id, now_ms())
        else:
            info = await self._remote(server_name, media_id, allow_remote)
        if legacy and info.authenticated:
            raise not_found("This media is only served by the authenticated media endpoints")
        return info

    async def _local(self, media_id: str, wait_ms: int) -> MediaInfo:
        try:
            return await self._wait_local(media_id, wait_ms)
        finally:
            event = self._uploaded.get(media_id)
            if event is not None and not event.is_set():
                # no wake-up is lost: other waiters re-check the database every RECHECK_S
                del self._uploaded[media_id]

    async def _wait_local(self, media_id: str, wait_ms: int) -> MediaInfo:
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            row = await self.store.local(self.db.pool, media_id)
            if row is None or row["quarantined"]:
                raise not_found("Unknown media")
            if row["sha256"] is not None:
                return _local_info(self.server_name, row)
            if row["expires_ts"] <= now_ms():
                raise not_found("Unknown media")
            left = deadline - time.monotonic()
            if left <= 0:
                raise MatrixError(504, Codes.NOT_YET_UPLOADED,
                                  "Content has not yet been uploaded")
            event = self._uploaded.setdefault(media_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), min(left, RECHECK_S))
            except TimeoutError:
                pass

    async def _remote(self, origin: str, media_id: str, allow_remote: bool) -> MediaInfo:
        row = await self.store.remote(self.db.pool, origin, media_id)
        if row is not None:
            if row["quarantined"]:
                raise not_found("Unknown media")
            await self.store.touch_remote(self.db.pool, origin, media_id, now_ms())
            return _remote_info(row)
        if not allow_remote or self.remote is None:
            raise not_found("Unknown media")
        # One fetch per item however many ask at once, as a task of its own: a client that
        # goes away does not abort a download others (or the next request) will use.
        key = (origin, media_id)
        task = self._fetching.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch_remote(self.remote, origin, media_id))
            self._fetching[key] = task
            task.add_done_callback(lambda t: self._fetched(key, t))
        return await asyncio.shield(task)

    def _fetched(self, key: tuple[str, str], task: asyncio.Task[MediaInfo]) -> None:
        self._fetching.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved, even when every waiter has gone

    async def _fetch_remote(self, remote: RemoteMediaSource, origin: str, media_id: str
                            ) -> MediaInfo:
        ctype, name, body = await remote.fetch(origin, media_id, self.config.max_upload_bytes)
        try:
            return await self.store_remote(origin, media_id, ctype, name, body)
        finally:  # release the remote's answer even when the cache refused it midway
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()

    async def store_remote(self, origin: str, media_id: str, content_type: str | None,
                           upload_name: str | None, body: AsyncIterable[bytes]) -> MediaInfo:
        """Cache another server's media (streamed, bounded by the upload limit; 502
        M_TOO_LARGE beyond it, as the spec says for remote media)."""
        check_media_id(origin, media_id)
        upload, sha256 = await receive(
            self.storage, body, self.config.max_upload_bytes,
            error=lambda n: MatrixError(502, Codes.TOO_LARGE, "Remote media is too large"))
        ctype, name = clean_content_type(content_type), clean_filename(upload_name)

        async def write_row(conn: Conn) -> bool:
            await self.store.insert_remote(conn, origin, media_id, ctype, name, upload.size,
                                           sha256, now_ms(), self.config.freeze_unauthenticated)
            return True

        await publish(self.db, self.store, self.storage, upload, sha256, write_row)
        row = await self.store.remote(self.db.pool, origin, media_id)
        assert row is not None
        return _remote_info(row)

    def local_path(self, info: MediaInfo) -> Path | None:
        return self.storage.local_path(info.sha256)

    def chunks(self, sha256: str) -> AsyncIterator[bytes]:
        return self.storage.chunks(sha256)

    async def open_local(self, media_id: str, wait_ms: int = 0
                         ) -> tuple[MediaInfo, AsyncIterator[bytes]]:
        """Our own media by id, for federation: (metadata, byte stream); 404 if unknown."""
        info = await self.get(self.server_name, media_id, wait_ms=wait_ms)
        return info, self.storage.chunks(info.sha256)

    # ------------------------------------------------------------------ admin

    async def set_quarantined(self, server_name: str, media_id: str, flag: bool = True) -> bool:
        """Quarantine (or release) one media item; False if there is no such item. A
        quarantined item is not served (404) until released."""
        async with self.db.transaction() as conn:
            if server_name == self.server_name:
                return await self.store.set_local_quarantined(conn, media_id, flag)
            return await self.store.set_remote_quarantined(conn, server_name, media_id, flag)

    async def quarantine_user_media(self, user_id: str, flag: bool = True) -> int:
        """Quarantine (or release) every local upload of a user; how many items."""
        async with self.db.transaction() as conn:
            return await self.store.set_user_quarantined(conn, user_id, flag)


def _too_large(limit: int) -> MatrixError:
    return MatrixError(413, Codes.TOO_LARGE, f"Media is larger than {limit} bytes")


def _local_info(server_name: str, row: Any) -> MediaInfo:
    return MediaInfo(server_name, row["media_id"], row["content_type"], row["upload_name"],
                     int(row["size"]), row["sha256"], int(row["uploaded_ts"]),
                     bool(row["authenticated"]), row["user_id"])


def _remote_info(row: Any) -> MediaInfo:
    return MediaInfo(row["origin"], row["media_id"], row["content_type"], row["upload_name"],
                     int(row["size"]), row["sha256"], int(row["cached_ts"]),
                     bool(row["authenticated"]))
