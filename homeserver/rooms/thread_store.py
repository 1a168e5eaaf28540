"""SQL for threads: per thread root, its newest event, how many events it has and whether a
user took part (migrations/0029_threads.sql's index)."""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Conn

_SERVED = ("stream_ordering > 0 AND NOT outlier AND rejected IS NULL AND NOT soft_failed")


class ThreadStore:
    async def threads(self, conn: Conn, room_id: str, user_id: str, participated: bool,
                      before: int | None, limit: int) -> list[asyncpg.Record]:
        """The room's threads, the most recently active first: root, latest (the newest
        thread event's id and position), count, participated."""
        return list(await conn.fetch(
            "SELECT t.root, t.latest_pos, t.n, t.mine OR r.sender = $2 AS participated,"
            " (SELECT event_id FROM events WHERE stream_ordering = t.latest_pos) AS latest"
            " FROM (SELECT relates_to AS root, max(stream_ordering) AS latest_pos,"
            "       count(*) AS n, bool_or(sender = $2) AS mine FROM events"
            f"      WHERE room_id = $1 AND rel_type = 'm.thread' AND {_SERVED}"
            "       GROUP BY relates_to) AS t"
            " JOIN events r ON r.event_id = t.root AND r.room_id = $1"
            " WHERE ($4::bigint IS NULL OR t.latest_pos < $4)"
            " AND (NOT $3 OR t.mine OR r.sender = $2)"
            " ORDER BY t.latest_pos DESC LIMIT $5",
            room_id, user_id, participated, before, limit))

    async def summaries(self, conn: Conn, room_id: str, roots: list[str],
                        user_id: str) -> list[asyncpg.Record]:
        """The same for given roots (for bundled aggregations)."""
        return list(await conn.fetch(
            "SELECT t.root, t.n, t.mine OR r.sender = $3 AS participated,"
            " (SELECT event_id FROM events WHERE stream_ordering = t.latest_pos) AS latest"
            " FROM (SELECT relates_to AS root, max(stream_ordering) AS latest_pos,"
            "       count(*) AS n, bool_or(sender = $3) AS mine FROM events"
            f"      WHERE room_id = $1 AND relates_to = ANY($2::text[])"
            f"      AND rel_type = 'm.thread' AND {_SERVED} GROUP BY relates_to) AS t"
            " JOIN events r ON r.event_id = t.root",
            room_id, roots, user_id))
