"""SQL for push_notifications, push_read and pushers (migrations/0021_push.sql,
0037_push_read_positions.sql)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from homeserver.storage.database import Conn

_PUSHER_COLUMNS = ("id, user_id, kind, app_id, pushkey, app_display_name, device_display_name,"
                   " profile_tag, lang, data, created_ts, position")


# A notification row `n` is unread when it is after both its user's position in its room
# (thread_id '') and the one in its thread: `_UNREAD` is that condition, with `r` and `t` the
# two push_read rows LEFT JOINed by `_POSITIONS`.
_POSITIONS = (" LEFT JOIN push_read r ON r.user_id = n.user_id AND r.room_id = n.room_id"
              " AND r.thread_id = ''"
              " LEFT JOIN push_read t ON t.user_id = n.user_id AND t.room_id = n.room_id"
              " AND t.thread_id = n.thread_id")
_UNREAD = ("n.stream_ordering > GREATEST(COALESCE(r.stream_ordering, 0),"
           " COALESCE(t.stream_ordering, 0))")
# Per wanted (user, room) `w`: its unread rows, read from the room's position on (the index on
# user, room and stream ordering), each then checked against its thread's position.
_UNREAD_OF = (
    " CROSS JOIN LATERAL (SELECT n.thread_id, n.highlight FROM push_notifications n"
    "   LEFT JOIN push_read t ON t.user_id = n.user_id AND t.room_id = n.room_id"
    "   AND t.thread_id = n.thread_id"
    "   WHERE n.user_id = w.user_id AND n.room_id = w.room_id"
    "   AND n.stream_ordering > COALESCE((SELECT r.stream_ordering FROM push_read r"
    "     WHERE r.user_id = w.user_id AND r.room_id = w.room_id AND r.thread_id = ''), 0)"
    "   AND n.stream_ordering > COALESCE(t.stream_ordering, 0)) u")
# Each room a user has notifications in, one index probe per room (a skip scan), for the
# users in $1: `w`.
_USER_ROOMS = (
    "WITH RECURSIVE w (user_id, room_id) AS ("
    "  SELECT x.user_id, (SELECT min(p.room_id) FROM push_notifications p"
    "    WHERE p.user_id = x.user_id) FROM unnest($1::text[]) AS x (user_id)"
    "  UNION ALL"
    "  SELECT w.user_id, (SELECT min(p.room_id) FROM push_notifications p"
    "    WHERE p.user_id = w.user_id AND p.room_id > w.room_id)"
    "  FROM w WHERE w.room_id IS NOT NULL)")
# Moves read positions forward (never back), from a SELECT of (user, room, thread, upto).
_READ_UPTO = (
    "INSERT INTO push_read (user_id, room_id, thread_id, stream_ordering) {source}"
    " ON CONFLICT (user_id, room_id, thread_id) DO UPDATE"
    " SET stream_ordering = EXCLUDED.stream_ordering"
    " WHERE push_read.stream_ordering < EXCLUDED.stream_ordering")


class NotificationStore:
    # ------------------------------------------------------------------ written with the event

    async def write(self, conn: Conn, room_id: str, ts: int,
                    rows: Sequence[tuple[str, int, str, str, str, bool]],
                    readers: Sequence[str], uptos: Sequence[int]) -> None:
        """One room's notifications (user, stream ordering, event id, thread, actions,
        highlight), each row written once, and each of `readers` has read the whole room
        up to their `uptos` (their own send): one statement."""
        parts: list[str] = []
        args: list[object] = [room_id]
        if rows:
            parts.append(
                "n AS (INSERT INTO push_notifications (user_id, stream_ordering, room_id,"
                "  event_id, thread_id, actions, highlight, ts)"
                "  SELECT u, p, $1, e, t, a, h, $2::bigint"
                "  FROM unnest($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[],"
                "    $8::bool[]) AS x (u, p, e, t, a, h)"
                "  ON CONFLICT DO NOTHING)")
            args += [ts, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                     [r[3] for r in rows], [r[4] for r in rows], [r[5] for r in rows]]
        if readers:
            u, p = len(args) + 1, len(args) + 2
            parts.append("r AS (" + _READ_UPTO.format(
                source=f"SELECT u, $1::text, '', p FROM unnest(${u}::text[], ${p}::bigint[])"
                " AS y (u, p)") + ")")
            args += [list(readers), list(uptos)]
        if parts:
            await conn.execute("WITH " + ", ".join(parts) + " SELECT 1", *args)

    async def mark_read(self, conn: Conn, user_id: str, room_id: str, upto: int,
                        thread_id: str | None) -> None:
        """Notifications at or before `upto` (in `thread_id`, or every thread) are read: the
        user's position there moves forward to `upto` (never back)."""
        await conn.execute(
            _READ_UPTO.format(source="VALUES ($1, $2, $3, $4::bigint)"),
            user_id, room_id, thread_id or "", upto)

    # ------------------------------------------------------------------ reads

    async def counts(self, conn: Conn, user_id: str,
                     room_ids: Sequence[str]) -> list[asyncpg.Record]:
        """(room_id, thread_id, notification_count, highlight_count) of the user's unread
        notifications in `room_ids`, for each room and thread that has any."""
        return list(await conn.fetch(
            "SELECT w.room_id, u.thread_id, count(*)::int AS notification_count,"
            " (count(*) FILTER (WHERE u.highlight))::int AS highlight_count"
            " FROM (SELECT $1::text AS user_id, x AS room_id"
            "   FROM unnest($2::text[]) AS x) w" + _UNREAD_OF +
            " GROUP BY w.room_id, u.thread_id", user_id, list(room_ids)))

    async def total_unread(self, conn: Conn, user_id: str) -> int:
        return (await self.unread_totals(conn, [user_id])).get(user_id, 0)

    async def page(self, conn: Conn, user_id: str, before: int | None, limit: int,
                   only_highlight: bool) -> list[asyncpg.Record]:
        """Newest first, strictly before `before` (a stream ordering) when given; `unread`
        says whether each is after the user's read positions."""
        return list(await conn.fetch(
            "SELECT n.stream_ordering, n.room_id, n.event_id, n.actions, n.ts,"
            " " + _UNREAD + " AS unread"
            " FROM push_notifications n" + _POSITIONS +
            " WHERE n.user_id = $1"
            " AND ($2::bigint IS NULL OR n.stream_ordering < $2) AND (NOT $3 OR n.highlight)"
            " ORDER BY n.stream_ordering DESC LIMIT $4", user_id, before, only_highlight, limit))

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
        """Each user's unread notifications over all rooms (a push's badge count): per room
        they have notifications in, the rows after their read positions."""
        rows = await conn.fetch(
            _USER_ROOMS + " SELECT w.user_id, count(*)::int AS n FROM w" + _UNREAD_OF +
            " WHERE w.room_id IS NOT NULL GROUP BY w.user_id", list(user_ids))
        return {r["user_id"]: int(r["n"]) for r in rows}

    async def rooms_of(self, conn: Conn, user_ids: Sequence[str]) -> list[asyncpg.Record]:
        """(user_id, room_id) for each room each user has notifications in."""
        return list(await conn.fetch(
            _USER_ROOMS + " SELECT user_id, room_id FROM w WHERE room_id IS NOT NULL",
            list(user_ids)))

    async def delete_read_before(self, conn: Conn, cutoff_ts: int, limit: int) -> int:
        """Up to `limit` read notifications written before `cutoff_ts`; how many went."""
        return int((await conn.execute(
            "DELETE FROM push_notifications WHERE ctid = ANY(ARRAY("
            " SELECT n.ctid FROM push_notifications n" + _POSITIONS +
            " WHERE n.ts < $1 AND NOT " + _UNREAD + " LIMIT $2))",
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
