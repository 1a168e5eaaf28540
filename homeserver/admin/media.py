"""What a server admin does to media (Synapse's media admin API, its "media uploaded by a user"
user API and its users' media statistics): list, inspect, quarantine, protect and delete media,
purge the remote media cache.

The rows and files are the media repository's (homeserver/media/). Deleting takes the rows out
in one transaction and then hands each content hash to `MediaRetention.drop_if_unused`, which
removes the file (and its thumbnails) under the content's lock only when no other row names it:
identical uploads share one file, so deleting one of them keeps the other downloadable.

Quarantine follows Synapse (since 1.128): quarantining an item quarantines every local and
cached remote item with the same content (sha256), and releasing one releases them too;
protected local media (`safe_from_quarantine`) is never quarantined. A quarantined item is
not served (404) and the purges below keep its row, so it is not fetched again unquarantined.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from homeserver.admin.store import AdminStore
from homeserver.errors import invalid_param, not_found
from homeserver.media.retention import MediaRetention
from homeserver.media.service import MEDIA_ID
from homeserver.storage.database import Database
from homeserver.types import JsonDict, is_valid_room_id, is_valid_server_name

log = logging.getLogger(__name__)


def media_json(r: Any) -> JsonDict:
    """One item of GET /_synapse/admin/v1/users/{userId}/media."""
    return {
        "media_id": r["media_id"], "created_ts": int(r["created_ts"]),
        "last_access_ts": r["last_access_ts"], "media_length": r["size"],
        "media_type": r["content_type"], "upload_name": r["upload_name"],
        "quarantined_by": r["quarantined_by"],
        "safe_from_quarantine": bool(r["safe_from_quarantine"]),
    }


def mxc_uris(content: Any) -> list[str]:
    """The mxc URIs an event's content points at, where Synapse looks: `url` (files,
    images, stickers, room avatars) and `info.thumbnail_url`."""
    found: list[str] = []
    if not isinstance(content, dict):
        return found
    info = content.get("info")
    for value in (content.get("url"),
                  info.get("thumbnail_url") if isinstance(info, dict) else None):
        if isinstance(value, str) and value.startswith("mxc://"):
            found.append(value)
    return found


def split_mxc(uri: str) -> tuple[str, str] | None:
    server, _, media_id = uri.removeprefix("mxc://").partition("/")
    if is_valid_server_name(server) and MEDIA_ID.fullmatch(media_id):
        return server, media_id
    return None


class MediaAdminService:
    def __init__(self, db: Database, store: AdminStore, retention: MediaRetention,
                 server_name: str) -> None:
        self._db, self._store, self._retention = db, store, retention
        self.server_name = server_name

    def _check_id(self, server_name: str, media_id: str) -> None:
        if not is_valid_server_name(server_name) or not MEDIA_ID.fullmatch(media_id):
            raise not_found("Unknown media")

    # ------------------------------------------------------------------ reading

    async def user_media(self, user_id: str, order: str, backwards: bool, limit: int,
                         offset: int) -> tuple[list[JsonDict], int]:
        async with self._db.connection() as conn:
            rows, total = await self._store.user_media(conn, user_id, order, backwards,
                                                       limit, offset)
        return [media_json(r) for r in rows], total

    async def media_info(self, server_name: str, media_id: str) -> JsonDict:
        """GET /_synapse/admin/v1/media/{serverName}/{mediaId}: local or cached remote."""
        self._check_id(server_name, media_id)
        async with self._db.connection() as conn:
            if server_name == self.server_name:
                r = await self._store.local_media_info(conn, media_id)
                if r is None or r["sha256"] is None:
                    raise not_found("Unknown media")
                return {**media_json(r), "media_origin": None, "user_id": r["user_id"],
                        "filesystem_id": None, "url_cache": None,
                        "authenticated": bool(r["authenticated"]), "sha256": r["sha256"]}
            r = await self._store.remote_media_info(conn, server_name, media_id)
        if r is None:
            raise not_found("Unknown media")
        return {"media_origin": r["origin"], "user_id": None, "media_id": r["media_id"],
                "media_type": r["content_type"], "media_length": r["size"],
                "upload_name": r["upload_name"], "created_ts": int(r["cached_ts"]),
                "filesystem_id": r["sha256"], "url_cache": None,
                "last_access_ts": int(r["last_access_ts"]), "quarantined_by": r["quarantined_by"],
                "authenticated": bool(r["authenticated"]), "safe_from_quarantine": None,
                "sha256": r["sha256"]}

    async def room_media(self, room_id: str) -> tuple[list[str], list[str]]:
        """The mxc URIs the room's (unredacted, unencrypted) events point at, newest first:
        (local, remote)."""
        if not is_valid_room_id(room_id):
            raise invalid_param("Invalid room id")
        async with self._db.connection() as conn:
            events = await self._store.room_event_json_with_mxc(conn, room_id)
        local: dict[str, None] = {}
        remote: dict[str, None] = {}
        for raw in events:
            for uri in mxc_uris(orjson.loads(raw).get("content")):
                parts = split_mxc(uri)
                if parts is not None:
                    (local if parts[0] == self.server_name else remote)[uri] = None
        return list(local), list(remote)

    # ------------------------------------------------------------------ quarantine

    async def quarantine(self, server_name: str, media_id: str, by: str | None) -> int:
        """Quarantine (`by` the admin) or release (`by` None) an item and its content's other
        copies; how many items changed. An unknown item changes nothing."""
        self._check_id(server_name, media_id)
        async with self._db.transaction() as conn:
            if server_name == self.server_name:
                return await self._store.quarantine_local(conn, [media_id], by)
            return await self._store.quarantine_remote(conn, [(server_name, media_id)], by)

    async def quarantine_user(self, user_id: str, by: str) -> int:
        async with self._db.transaction() as conn:
            ids = await self._store.user_media_ids(conn, user_id)
            return await self._store.quarantine_local(conn, ids, by) if ids else 0

    async def quarantine_room(self, room_id: str, by: str) -> int:
        local, remote = await self.room_media(room_id)
        local_ids = [m for _, m in filter(None, map(split_mxc, local))]
        remote_items = [x for x in map(split_mxc, remote) if x is not None]
        async with self._db.transaction() as conn:
            n = await self._store.quarantine_local(conn, local_ids, by) if local_ids else 0
            if remote_items:
                n += await self._store.quarantine_remote(conn, remote_items, by)
        return n

    async def protect(self, media_id: str, safe: bool) -> None:
        """Mark local media safe from quarantine (or not); 404 if there is no such item."""
        self._check_id(self.server_name, media_id)
        async with self._db.transaction() as conn:
            if not await self._store.set_media_protected(conn, media_id, safe):
                raise not_found("Unknown media")

    # ------------------------------------------------------------------ deleting

    async def delete_local(self, media_ids: list[str]) -> list[str]:
        """Delete local media (rows, then each file no other row names); the ids deleted."""
        if not media_ids:
            return []
        async with self._db.transaction() as conn:
            rows = await self._store.delete_local_media(conn, media_ids)
        for sha256 in {r["sha256"] for r in rows if r["sha256"] is not None}:
            await self._retention.drop_if_unused(sha256)
        log.info("admin deleted %d local media items", len(rows))
        return [r["media_id"] for r in rows]

    async def delete_one(self, server_name: str, media_id: str) -> list[str]:
        if server_name != self.server_name:
            raise invalid_param("Can only delete local media")
        self._check_id(server_name, media_id)
        deleted = await self.delete_local([media_id])
        if not deleted:
            raise not_found("Unknown media")
        return deleted

    async def delete_user_media(self, user_id: str, order: str, backwards: bool, limit: int,
                                offset: int) -> list[str]:
        items, _ = await self.user_media(user_id, order, backwards, limit, offset)
        return await self.delete_local([m["media_id"] for m in items])

    async def delete_old_local(self, before_ts: int, size_gt: int, keep_profiles: bool
                               ) -> list[str]:
        async with self._db.connection() as conn:
            ids = await self._store.old_local_media(
                conn, f"mxc://{self.server_name}/", before_ts, size_gt, keep_profiles)
        return await self.delete_local(ids)

    async def purge_remote_cache(self, before_ts: int) -> int:
        """Drop cached remote media last used before `before_ts`; how many items. They are
        fetched again from their origin when next asked for."""
        async with self._db.transaction() as conn:
            rows = await self._store.remote_unused_since(conn, before_ts)
        for sha256 in {r["sha256"] for r in rows}:
            await self._retention.drop_if_unused(sha256)
        return len(rows)

    # ------------------------------------------------------------------ statistics

    async def users_media_usage(self, order: str, backwards: bool, limit: int, offset: int,
                                from_ts: int | None, until_ts: int | None,
                                search: str | None) -> tuple[list[JsonDict], int]:
        async with self._db.connection() as conn:
            rows, total = await self._store.users_media_usage(
                conn, order, backwards, limit, offset, from_ts, until_ts, search)
        return [{"user_id": r["user_id"], "displayname": r["displayname"],
                 "media_count": int(r["media_count"]), "media_length": int(r["media_length"])}
                for r in rows], total
