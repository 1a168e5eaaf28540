"""SQL for push_notifications, push_counts and pushers (migrations/0021_push.sql)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from homeserver.storage.database import Conn

_PUSHER_COLUMNS = ("id, user_id, kind, app_id, pushkey, app_display_name, device_display_name,"
                   " profile_tag, lang, data, created_ts, position")


# Marks a user's notifications in room $1 read; used as the CTE `r`.
_READ = ("UPDATE push_notifications SET unread = FALSE WHERE user_id = {user}"
         " AND room_id = $1 AND unread AND stream_ordering <= {upto}"
         " AND ({thread} IS NULL OR thread_id = {thread}) RETURNING thread_id, highlight")
# Takes what `r` marked off the counts.
_DECREMENT = ("UPDATE push_counts pc SET notification_count = pc.notification_count - d.n,"
              " highlight_count = pc.highlight_count - d.h"
              " FROM (SELECT thread_id, count(*)::int AS n,"
              "   (count(*) FILTER (WHERE highlight))::int AS h FROM r GROUP BY thread_id) d"
              " WHERE pc.user_id = {user} AND pc.room_id = $1 AND pc.thread_id = d.thread_id")


class NotificationStore:
    # ------------------------------------------------------------------ written with the event

    async def on_event(self, conn: Conn, room_id: str, event_id: str, pos: int,
                       thread_id: str, ts: int, users: Sequence[str], actions: Sequence[str],
                       highlights: Sequence[bool], reader: str | None) -> None:
        """In one round trip: `reader` (the local sender) has read the room up to `pos`, and
        each of `users` gets a notification and their counts incremented."""
        await conn.execute(
            "WITH r AS (" + _READ.format(user="$9", upto="$3", thread="NULL") + "),"
            " rc AS (" + _DECREMENT.format(user="$9") + "),"
            " n AS ("
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
            room_id, event_id, pos, thread_id, ts, list(users), list(actions), list(highlights),
            reader)

    async def mark_read(self, conn: Conn, user_id: str, room_id: str, upto: int,
                        thread_id: str | None) -> None:
        """Notifications at or before `upto` (in `thread_id`, or every thread) are read, and
        the counts go down by as many (counts are the number of unread rows)."""
        await conn.execute(
            "WITH r AS (" + _READ.format(user="$2", upto="$3", thread="$4::text") + ") "
            + _DECREMENT.format(user="$2"),
            room_id, user_id, upto, thread_id)

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

    async def take_lease(self, conn: Conn, holder: str, now: int, ttl_ms: int) -> bool:
        """Take or renew the sender's lease; False while another live holder has it."""
        row = await conn.fetchval(
            "INSERT INTO push_sender_lease (id, holder, expires_ts)"
            " VALUES (TRUE, $1, $2::bigint + $3::bigint)"
            " ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder,"
            " expires_ts = EXCLUDED.expires_ts"
            " WHERE push_sender_lease.holder = $1 OR push_sender_lease.expires_ts < $2::bigint"
            " RETURNING holder", holder, now, ttl_ms)
        return row is not None
