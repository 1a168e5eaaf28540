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

    async def mark_room_read(self, conn: Conn, room_id: str, users: Sequence[str],
                             uptos: Sequence[int]) -> None:
        """Each of `users` has read the room, every thread, up to their `uptos` (their own
        send): their notifications there are read and their counts go down by as many."""
        # All of the room's rows already written are before this batch (the room's writes are
        # serialised), so the latest `upto` bounds every reader's; a plain `= ANY` keeps the
        # partial index in use whatever plan a prepared statement ends up with.
        await conn.execute(
            "WITH r AS (UPDATE push_notifications SET unread = FALSE"
            "   WHERE user_id = ANY($2::text[]) AND room_id = $1 AND unread"
            "   AND stream_ordering <= $3 RETURNING user_id, thread_id, highlight)"
            " UPDATE push_counts pc SET notification_count = pc.notification_count - d.n,"
            "   highlight_count = pc.highlight_count - d.h"
            " FROM (SELECT user_id, thread_id, count(*)::int AS n,"
            "   (count(*) FILTER (WHERE highlight))::int AS h FROM r"
            "   GROUP BY user_id, thread_id) d"
            " WHERE pc.user_id = d.user_id AND pc.room_id = $1 AND pc.thread_id = d.thread_id",
            room_id, list(users), max(uptos))

    async def insert(self, conn: Conn, room_id: str, ts: int,
                     rows: Sequence[tuple[str, int, str, str, str, bool]],
                     unread: Sequence[bool]) -> None:
        """Notifications (user, stream ordering, event id, thread, actions, highlight) of one
        room, in one statement with the counts of the unread ones."""
        await conn.execute(
            "WITH n AS ("
            "  INSERT INTO push_notifications (user_id, stream_ordering, room_id, event_id,"
            "    thread_id, actions, highlight, ts, unread)"
            "  SELECT u, p, $1, e, t, a, h, $2, r"
            "  FROM unnest($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[],"
            "    $8::bool[], $9::bool[]) AS x (u, p, e, t, a, h, r)"
            "  ON CONFLICT DO NOTHING RETURNING user_id, thread_id, highlight, unread)"
            " INSERT INTO push_counts (user_id, room_id, thread_id, notification_count,"
            "   highlight_count)"
            " SELECT user_id, $1, thread_id, count(*)::int,"
            "   (count(*) FILTER (WHERE highlight))::int FROM n WHERE unread"
            "   GROUP BY user_id, thread_id"
            " ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET"
            "   notification_count = push_counts.notification_count"
            "     + EXCLUDED.notification_count,"
            "   highlight_count = push_counts.highlight_count + EXCLUDED.highlight_count",
            room_id, ts, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
            [r[3] for r in rows], [r[4] for r in rows], [r[5] for r in rows], list(unread))

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
            "SELECT stream_ordering, room_id, event_id, actions"
            " FROM push_notifications WHERE user_id = $1 AND stream_ordering > $2"
            " AND stream_ordering <= $3 ORDER BY stream_ordering LIMIT $4",
            user_id, after, upto, limit))

    async def new_for_users(self, conn: Conn, user_ids: Sequence[str], after: int,
                            upto: int) -> list[asyncpg.Record]:
        """The pusher sender's round: these users' notifications in (after, upto], oldest
        first."""
        return list(await conn.fetch(
            "SELECT user_id, stream_ordering, room_id, event_id, actions"
            " FROM push_notifications WHERE user_id = ANY($1::text[])"
            " AND stream_ordering > $2 AND stream_ordering <= $3 ORDER BY stream_ordering",
            list(user_ids), after, upto))

    async def unread_totals(self, conn: Conn, user_ids: Sequence[str]) -> dict[str, int]:
        """Each user's unread notifications over all rooms (a push's badge count)."""
        rows = await conn.fetch(
            "SELECT user_id, sum(notification_count)::int AS n FROM push_counts"
            " WHERE user_id = ANY($1::text[]) GROUP BY user_id", list(user_ids))
        return {r["user_id"]: int(r["n"]) for r in rows}

    async def delete_read_before(self, conn: Conn, cutoff_ts: int, limit: int) -> int:
        """Up to `limit` read notifications written before `cutoff_ts`; how many went."""
        return int((await conn.execute(
            "DELETE FROM push_notifications WHERE ctid = ANY(ARRAY("
            " SELECT ctid FROM push_notifications WHERE NOT unread AND ts < $1 LIMIT $2))",
            cutoff_ts, limit)).split()[-1])

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
                            position: int, device_id: str | None = None) -> None:
        """A new pusher starts at `position`; an updated one keeps its place in the queue.
        It belongs to `device_id` (the session that set it last) if that device exists."""
        await conn.execute(
            "INSERT INTO pusher_devices (user_id, app_id, pushkey, device_id)"
            " VALUES ($1, $2, $3,"
            " (SELECT device_id FROM devices WHERE user_id = $1 AND device_id = $4))"
            " ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET device_id = EXCLUDED.device_id",
            user_id, app_id, pushkey, device_id)
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
