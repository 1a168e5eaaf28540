"""SQL for push_notifications, push_counts and pushers (migrations/0021_push.sql)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from homeserver.storage.database import Conn

_PUSHER_COLUMNS = ("id, user_id, kind, app_id, pushkey, app_display_name, device_display_name,"
                   " profile_tag, lang, data, created_ts, position")


class NotificationStore:
    # ------------------------------------------------------------------ written with the event

    async def add(self, conn: Conn, room_id: str, event_id: str, pos: int, thread_id: str,
                  ts: int, users: Sequence[str], actions: Sequence[str],
                  highlights: Sequence[bool]) -> None:
        """One notification per user, and their counts incremented, in one statement."""
        await conn.execute(
            "WITH n AS ("
            "  INSERT INTO push_notifications (user_id, stream_ordering, room_id, event_id,"
            "    thread_id, actions, highlight, ts)"
            "  SELECT u, $3, $1, $2, $4, a, h, $5"
            "  FROM unnest($6::text[], $7::text[], $8::bool[]) AS x (u, a, h)"
            "  ON CONFLICT DO NOTHING RETURNING user_id, highlight)"
            " INSERT INTO push_counts (user_id, room_id, thread_id, notification_count,"
            "   highlight_count)"
            " SELECT user_id, $1, $4, 1, highlight::int FROM n"
            " ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET"
            "   notification_count = push_counts.notification_count + 1,"
            "   highlight_count = push_counts.highlight_count + EXCLUDED.highlight_count",
            room_id, event_id, pos, thread_id, ts, list(users), list(actions), list(highlights))

    async def mark_read(self, conn: Conn, user_id: str, room_id: str, upto: int,
                        thread_id: str | None) -> None:
        """Notifications at or before `upto` (in `thread_id`, or every thread) are read; the
        room's counts are recomputed from what is still unread."""
        await conn.execute(
            "UPDATE push_notifications SET unread = FALSE WHERE user_id = $1 AND room_id = $2"
            " AND unread AND stream_ordering <= $3 AND ($4::text IS NULL OR thread_id = $4)",
            user_id, room_id, upto, thread_id)
        await conn.execute(
            "DELETE FROM push_counts WHERE user_id = $1 AND room_id = $2", user_id, room_id)
        await conn.execute(
            "INSERT INTO push_counts (user_id, room_id, thread_id, notification_count,"
            " highlight_count)"
            " SELECT user_id, room_id, thread_id, count(*), count(*) FILTER (WHERE highlight)"
            " FROM push_notifications WHERE user_id = $1 AND room_id = $2 AND unread"
            " GROUP BY user_id, room_id, thread_id", user_id, room_id)

    async def has_unread(self, conn: Conn, user_id: str, room_id: str) -> bool:
        return bool(await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM push_counts WHERE user_id = $1 AND room_id = $2"
            " AND notification_count > 0)", user_id, room_id))

    # ------------------------------------------------------------------ reads

    async def counts(self, conn: Conn, user_id: str,
                     room_ids: Sequence[str]) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT room_id, thread_id, notification_count, highlight_count FROM push_counts"
            " WHERE user_id = $1 AND room_id = ANY($2::text[])", user_id, list(room_ids)))

    async def total_unread(self, conn: Conn, user_id: str) -> int:
        return int(await conn.fetchval(
            "SELECT coalesce(sum(notification_count), 0) FROM push_counts WHERE user_id = $1",
            user_id))

    async def page(self, conn: Conn, user_id: str, before: int | None, limit: int,
                   only_highlight: bool) -> list[asyncpg.Record]:
        """Newest first, strictly before `before` (a stream ordering) when given."""
        return list(await conn.fetch(
            "SELECT stream_ordering, room_id, event_id, actions, ts, unread"
            " FROM push_notifications WHERE user_id = $1"
            " AND ($2::bigint IS NULL OR stream_ordering < $2) AND (NOT $3 OR highlight)"
            " ORDER BY stream_ordering DESC LIMIT $4", user_id, before, only_highlight, limit))

    async def after(self, conn: Conn, user_id: str, after: int, upto: int,
                    limit: int) -> list[asyncpg.Record]:
        """A pusher's queue: the user's notifications in (after, upto], oldest first."""
        return list(await conn.fetch(
            "SELECT stream_ordering, room_id, event_id, actions, highlight"
            " FROM push_notifications WHERE user_id = $1 AND stream_ordering > $2"
            " AND stream_ordering <= $3 ORDER BY stream_ordering LIMIT $4",
            user_id, after, upto, limit))

    async def newest(self, conn: Conn, user_id: str) -> int:
        return int(await conn.fetchval(
            "SELECT coalesce(max(stream_ordering), 0) FROM push_notifications"
            " WHERE user_id = $1", user_id))

    # ------------------------------------------------------------------ pushers

    async def pushers(self, conn: Conn, user_id: str | None = None) -> list[asyncpg.Record]:
        if user_id is None:
            return list(await conn.fetch(f"SELECT {_PUSHER_COLUMNS} FROM pushers ORDER BY id"))
        return list(await conn.fetch(
            f"SELECT {_PUSHER_COLUMNS} FROM pushers WHERE user_id = $1 ORDER BY id", user_id))

    async def pusher(self, conn: Conn, pusher_id: int) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await conn.fetchrow(
            f"SELECT {_PUSHER_COLUMNS} FROM pushers WHERE id = $1", pusher_id)
        return row

    async def upsert_pusher(self, conn: Conn, user_id: str, app_id: str, pushkey: str,
                            app_display_name: str, device_display_name: str,
                            profile_tag: str | None, lang: str, data: str, now: int,
                            position: int) -> None:
        """A new pusher starts at `position`; an updated one keeps its place in the queue."""
        await conn.execute(
            "INSERT INTO pushers (user_id, kind, app_id, pushkey, app_display_name,"
            " device_display_name, profile_tag, lang, data, created_ts, position)"
            " VALUES ($1, 'http', $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET"
            " app_display_name = EXCLUDED.app_display_name,"
            " device_display_name = EXCLUDED.device_display_name,"
            " profile_tag = EXCLUDED.profile_tag, lang = EXCLUDED.lang, data = EXCLUDED.data",
            user_id, app_id, pushkey, app_display_name, device_display_name, profile_tag, lang,
            data, now, position)

    async def delete_pusher(self, conn: Conn, user_id: str, app_id: str, pushkey: str) -> int:
        return int((await conn.execute(
            "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
            user_id, app_id, pushkey)).split()[-1])

    async def delete_others(self, conn: Conn, user_id: str, app_id: str, pushkey: str) -> None:
        """append=false: the same app_id and pushkey of any other user goes."""
        await conn.execute(
            "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3",
            app_id, pushkey, user_id)

    async def delete_pusher_id(self, conn: Conn, pusher_id: int) -> None:
        await conn.execute("DELETE FROM pushers WHERE id = $1", pusher_id)

    async def advance(self, conn: Conn, pusher_id: int, position: int) -> None:
        await conn.execute(
            "UPDATE pushers SET position = GREATEST(position, $2) WHERE id = $1",
            pusher_id, position)
