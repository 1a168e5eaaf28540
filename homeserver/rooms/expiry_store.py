"""SQL for MSC2228 event expiry (migrations/0038_event_expiry.sql)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from homeserver.storage.database import Conn


class ExpiryStore:
    async def insert(self, conn: Conn, rows: Sequence[tuple[str, int]]) -> None:
        """(event_id, expiry_ts) rows, in the events' transaction; an event seen again (a
        de-outliered one) keeps its first row."""
        await conn.execute(
            "INSERT INTO event_expiry (event_id, expiry_ts)"
            " SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING",
            [r[0] for r in rows], [r[1] for r in rows])

    async def claim_due(self, conn: Conn, now_ms: int, limit: int) -> list[asyncpg.Record]:
        """Delete up to `limit` rows due at `now_ms` and return their events (event_id,
        room_id, json, room_version). Rows another transaction is expiring are skipped
        (SKIP LOCKED), so two processes never expire the same event; the caller rewrites
        the JSON in the same transaction, so a failure leaves the row for the next try."""
        return list(await conn.fetch(
            "WITH due AS (SELECT event_id FROM event_expiry WHERE expiry_ts <= $1"
            "   ORDER BY expiry_ts LIMIT $2 FOR UPDATE SKIP LOCKED),"
            " gone AS (DELETE FROM event_expiry x USING due WHERE x.event_id = due.event_id"
            "   RETURNING x.event_id)"
            " SELECT e.event_id, e.room_id, e.json, r.room_version FROM gone"
            " JOIN events e ON e.event_id = gone.event_id JOIN rooms r ON r.room_id = e.room_id",
            now_ms, limit))

    async def set_json(self, conn: Conn, rows: Sequence[tuple[str, str]]) -> None:
        """Replace the stored JSON of events (event_id, json)."""
        await conn.execute(
            "UPDATE events SET json = v.j FROM unnest($1::text[], $2::text[]) AS v(i, j)"
            " WHERE events.event_id = v.i",
            [r[0] for r in rows], [r[1] for r in rows])

    async def next_due(self, conn: Conn) -> int | None:
        v = await conn.fetchval("SELECT min(expiry_ts) FROM event_expiry")
        return int(v) if v is not None else None
