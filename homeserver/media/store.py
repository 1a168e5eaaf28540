"""SQL for the media repository: local_media, remote_media, media_thumbnails, url_previews."""

from __future__ import annotations

from typing import Any

import asyncpg

from homeserver.storage.database import Conn

_LOCAL = ("media_id, user_id, created_ts, expires_ts, uploaded_ts, content_type, upload_name,"
          " size, sha256, authenticated, quarantined")
_REMOTE = ("origin, media_id, content_type, upload_name, size, sha256, cached_ts,"
           " last_access_ts, authenticated, quarantined")


class MediaStore:
    # -- local media
    async def create_pending(self, conn: Conn, media_id: str, user_id: str, now: int,
                             expires_ts: int) -> None:
        await conn.execute(
            "INSERT INTO local_media (media_id, user_id, created_ts, expires_ts)"
            " VALUES ($1, $2, $3, $4)", media_id, user_id, now, expires_ts)

    async def insert_uploaded(self, conn: Conn, media_id: str, user_id: str, now: int,
                              content_type: str | None, upload_name: str | None, size: int,
                              sha256: str, authenticated: bool) -> None:
        await conn.execute(
            "INSERT INTO local_media (media_id, user_id, created_ts, uploaded_ts, content_type,"
            " upload_name, size, sha256, authenticated) VALUES ($1, $2, $3, $3, $4, $5, $6, $7,"
            " $8)", media_id, user_id, now, content_type, upload_name, size, sha256,
            authenticated)

    async def complete_pending(self, conn: Conn, media_id: str, user_id: str, now: int,
                               content_type: str | None, upload_name: str | None, size: int,
                               sha256: str, authenticated: bool) -> bool:
        """Fill a pending row; False when it is no longer pending (uploaded or expired)."""
        status = await conn.execute(
            "UPDATE local_media SET uploaded_ts = $3, content_type = $4, upload_name = $5,"
            " size = $6, sha256 = $7, authenticated = $8, expires_ts = NULL"
            " WHERE media_id = $1 AND user_id = $2 AND sha256 IS NULL AND expires_ts > $3",
            media_id, user_id, now, content_type, upload_name, size, sha256, authenticated)
        return bool(status == "UPDATE 1")

    async def local(self, conn: Conn, media_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(f"SELECT {_LOCAL} FROM local_media WHERE media_id = $1",
                                   media_id)

    async def pending_count(self, conn: Conn, user_id: str, now: int) -> int:
        return int(await conn.fetchval(
            "SELECT count(*) FROM local_media WHERE user_id = $1 AND sha256 IS NULL"
            " AND expires_ts > $2", user_id, now))

    async def user_bytes(self, conn: Conn, user_id: str) -> int:
        return int(await conn.fetchval(
            "SELECT COALESCE(sum(size), 0) FROM local_media WHERE user_id = $1", user_id))

    async def set_local_quarantined(self, conn: Conn, media_id: str, flag: bool) -> bool:
        status = await conn.execute(
            "UPDATE local_media SET quarantined = $2 WHERE media_id = $1", media_id, flag)
        return bool(status == "UPDATE 1")

    async def set_user_quarantined(self, conn: Conn, user_id: str, flag: bool) -> int:
        status = await conn.execute(
            "UPDATE local_media SET quarantined = $2 WHERE user_id = $1", user_id, flag)
        return int(status.split()[-1])

    async def touch_local(self, conn: Conn, media_id: str, now: int) -> None:
        """Record a download (at most once a minute per item), for the admin API's
        delete-by-date (migrations/0027_admin_media.sql)."""
        await conn.execute(
            "UPDATE local_media SET last_access_ts = $2::bigint WHERE media_id = $1"
            " AND (last_access_ts IS NULL OR last_access_ts < $2::bigint - 60000)", media_id, now)

    # -- remote media cache
    async def remote(self, conn: Conn, origin: str, media_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            f"SELECT {_REMOTE} FROM remote_media WHERE origin = $1 AND media_id = $2",
            origin, media_id)

    async def touch_remote(self, conn: Conn, origin: str, media_id: str, now: int) -> None:
        await conn.execute(
            "UPDATE remote_media SET last_access_ts = $3::bigint"
            " WHERE origin = $1 AND media_id = $2 AND last_access_ts < $3::bigint - 60000",
            origin, media_id, now)

    async def insert_remote(self, conn: Conn, origin: str, media_id: str,
                            content_type: str | None, upload_name: str | None, size: int,
                            sha256: str, now: int, authenticated: bool) -> None:
        await conn.execute(
            "INSERT INTO remote_media (origin, media_id, content_type, upload_name, size,"
            " sha256, cached_ts, last_access_ts, authenticated)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) ON CONFLICT DO NOTHING",
            origin, media_id, content_type, upload_name, size, sha256, now, authenticated)

    async def set_remote_quarantined(self, conn: Conn, origin: str, media_id: str,
                                     flag: bool) -> bool:
        status = await conn.execute(
            "UPDATE remote_media SET quarantined = $3 WHERE origin = $1 AND media_id = $2",
            origin, media_id, flag)
        return bool(status == "UPDATE 1")

    # -- thumbnails
    async def thumbnail(self, conn: Conn, source: str, width: int, height: int, method: str,
                        animated: bool) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT content_type, size, sha256 FROM media_thumbnails WHERE source_sha256 = $1"
            " AND width = $2 AND height = $3 AND method = $4 AND animated = $5",
            source, width, height, method, animated)

    async def insert_thumbnail(self, conn: Conn, source: str, width: int, height: int,
                               method: str, animated: bool, content_type: str, size: int,
                               sha256: str, now: int) -> None:
        await conn.execute(
            "INSERT INTO media_thumbnails (source_sha256, width, height, method, animated,"
            " content_type, size, sha256, created_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
            " $9) ON CONFLICT DO NOTHING",
            source, width, height, method, animated, content_type, size, sha256, now)

    # -- retention
    async def lock_content(self, conn: Conn, sha256: str) -> None:
        """Serialise writers of a content hash with its deletion (in the caller's
        transaction): an upload that reuses a file and a purge that drops it never cross."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", sha256)

    async def is_referenced(self, conn: Conn, sha256: str) -> bool:
        return bool(await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM local_media WHERE sha256 = $1)"
            " OR EXISTS (SELECT 1 FROM remote_media WHERE sha256 = $1)"
            " OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = $1)", sha256))

    async def is_referenced_as_source(self, conn: Conn, sha256: str) -> bool:
        return bool(await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM local_media WHERE sha256 = $1)"
            " OR EXISTS (SELECT 1 FROM remote_media WHERE sha256 = $1)", sha256))

    async def delete_expired_pending(self, conn: Conn, now: int) -> int:
        status = await conn.execute(
            "DELETE FROM local_media WHERE sha256 IS NULL AND expires_ts <= $1", now)
        return int(status.split()[-1])

    async def delete_local_before(self, conn: Conn, before: int, limit: int) -> list[str]:
        rows = await conn.fetch(
            "DELETE FROM local_media WHERE media_id IN (SELECT media_id FROM local_media"
            " WHERE sha256 IS NOT NULL AND uploaded_ts < $1 ORDER BY uploaded_ts LIMIT $2)"
            " RETURNING sha256", before, limit)
        return [r["sha256"] for r in rows]

    async def delete_remote_unused_since(self, conn: Conn, before: int, limit: int
                                         ) -> list[str]:
        rows = await conn.fetch(
            "DELETE FROM remote_media WHERE (origin, media_id) IN (SELECT origin, media_id"
            " FROM remote_media WHERE last_access_ts < $1 ORDER BY last_access_ts LIMIT $2)"
            " RETURNING sha256", before, limit)
        return [r["sha256"] for r in rows]

    async def delete_thumbnails_of(self, conn: Conn, source: str) -> list[str]:
        rows = await conn.fetch(
            "DELETE FROM media_thumbnails WHERE source_sha256 = $1 RETURNING sha256", source)
        return [r["sha256"] for r in rows]

    async def referenced_among(self, conn: Conn, hashes: list[str]) -> set[str]:
        rows = await conn.fetch(
            "SELECT h FROM unnest($1::text[]) AS x (h) WHERE"
            " EXISTS (SELECT 1 FROM local_media WHERE sha256 = h)"
            " OR EXISTS (SELECT 1 FROM remote_media WHERE sha256 = h)"
            " OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = h)", hashes)
        return {r["h"] for r in rows}

    # -- url previews
    async def preview(self, conn: Conn, url: str, now: int) -> str | None:
        value: Any = await conn.fetchval(
            "SELECT og FROM url_previews WHERE url = $1 AND expires_ts > $2", url, now)
        return value if isinstance(value, str) else None

    async def save_preview(self, conn: Conn, url: str, og: str, now: int, expires: int
                           ) -> None:
        await conn.execute(
            "INSERT INTO url_previews (url, og, fetched_ts, expires_ts) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (url) DO UPDATE SET og = EXCLUDED.og,"
            " fetched_ts = EXCLUDED.fetched_ts, expires_ts = EXCLUDED.expires_ts",
            url, og, now, expires)

    async def delete_expired_previews(self, conn: Conn, now: int) -> None:
        await conn.execute("DELETE FROM url_previews WHERE expires_ts <= $1", now)
