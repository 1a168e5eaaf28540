"""SQL for presence: one row per local user with their last computed state (see 0004_presence)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from homeserver.storage.database import Conn


@dataclass(frozen=True, slots=True)
class PresenceRow:
    user_id: str
    presence: str
    explicit: str | None
    status_msg: str | None
    last_active_ts: int | None
    stream_id: int


class PresenceStore:
    async def load_all(self, conn: Conn) -> list[PresenceRow]:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT user_id, presence, explicit, status_msg, last_active_ts, stream_id"
            " FROM presence ORDER BY stream_id")
        return [PresenceRow(r["user_id"], r["presence"], r["explicit"], r["status_msg"],
                            r["last_active_ts"], r["stream_id"]) for r in rows]

    async def upsert_many(self, conn: Conn, rows: Sequence[PresenceRow]) -> None:
        """Write many users' rows in one statement; users that do not exist are skipped."""
        if not rows:
            return
        await conn.execute(
            "INSERT INTO presence"
            " (user_id, presence, explicit, status_msg, last_active_ts, stream_id)"
            " SELECT r.user_id, r.presence, r.explicit, r.status_msg, r.last_active_ts,"
            "        r.stream_id"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],"
            "             $6::bigint[])"
            "      AS r(user_id, presence, explicit, status_msg, last_active_ts, stream_id)"
            " JOIN users u ON u.user_id = r.user_id"
            " ON CONFLICT (user_id) DO UPDATE SET presence = EXCLUDED.presence,"
            "   explicit = EXCLUDED.explicit, status_msg = EXCLUDED.status_msg,"
            "   last_active_ts = EXCLUDED.last_active_ts, stream_id = EXCLUDED.stream_id",
            [r.user_id for r in rows], [r.presence for r in rows], [r.explicit for r in rows],
            [r.status_msg for r in rows], [r.last_active_ts for r in rows],
            [r.stream_id for r in rows],
        )
