"""SQL for the receipts table."""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Conn

_COLUMNS = "room_id, receipt_type, user_id, thread_id, event_id, data, stream_id"


class ReceiptStore:
    async def upsert(self, conn: Conn, room_id: str, receipt_type: str, user_id: str,
                     thread_id: str, event_id: str, data: str, stream_id: int) -> None:
        await conn.execute(
            f"INSERT INTO receipts ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE"
            " SET event_id = EXCLUDED.event_id, data = EXCLUDED.data,"
            " stream_id = EXCLUDED.stream_id",
            room_id, receipt_type, user_id, thread_id, event_id, data, stream_id,
        )

    async def event_of(self, conn: Conn, room_id: str, receipt_type: str, user_id: str,
                       thread_id: str) -> str | None:
        """The event the user's receipt of this type and thread points at now."""
        got = await conn.fetchval(
            "SELECT event_id FROM receipts WHERE room_id = $1 AND receipt_type = $2"
            " AND user_id = $3 AND thread_id = $4", room_id, receipt_type, user_id, thread_id)
        return str(got) if got is not None else None

    async def changed_between(self, conn: Conn, room_ids: list[str], viewer: str,
                              since: int, upto: int) -> list[asyncpg.Record]:
        """Receipts in `room_ids` written in (since, upto] that `viewer` may see (their own
        private ones, everybody's public ones)."""
        return list(await conn.fetch(
            f"SELECT {_COLUMNS} FROM receipts"
            " WHERE stream_id > $1 AND stream_id <= $2 AND room_id = ANY($3::text[])"
            " AND (receipt_type <> 'm.read.private' OR user_id = $4)"
            " ORDER BY stream_id",
            since, upto, room_ids, viewer,
        ))

    async def latest_per_room(self, conn: Conn, room_ids: list[str], viewer: str, upto: int,
                              limit: int) -> list[asyncpg.Record]:
        """The newest `limit` receipts (at or below `upto`) of each room that `viewer` may see."""
        return list(await conn.fetch(
            f"SELECT r.{_COLUMNS.replace(', ', ', r.')}"
            " FROM unnest($1::text[]) AS wanted (room_id)"
            " CROSS JOIN LATERAL ("
            f"   SELECT {_COLUMNS} FROM receipts"
            "    WHERE receipts.room_id = wanted.room_id AND stream_id <= $2"
            "    AND (receipt_type <> 'm.read.private' OR user_id = $3)"
            "    ORDER BY stream_id DESC LIMIT $4) AS r"
            " ORDER BY r.stream_id",
            room_ids, upto, viewer, limit,
        ))

    async def rooms_changed_between(self, conn: Conn, after: int,
                                    upto: int) -> list[asyncpg.Record]:
        """Each room with receipts in (after, upto], with its newest position there."""
        return list(await conn.fetch(
            "SELECT room_id, MAX(stream_id) AS pos FROM receipts WHERE stream_id > $1"
            " AND stream_id <= $2 GROUP BY room_id", after, upto))
