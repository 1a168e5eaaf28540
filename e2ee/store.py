"""SQL for the e2ee area: the to-device inbox, its transaction ids and its stream position."""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Conn

_INSERT_MESSAGES = """
INSERT INTO to_device_inbox (user_id, device_id, stream_id, sender, type, content)
SELECT DISTINCT ON (d.user_id, d.device_id) d.user_id, d.device_id, $4, $5, $6, m.content
FROM unnest($1::text[], $2::text[], $3::text[]) AS m(user_id, device_id, content)
JOIN devices d ON d.user_id = m.user_id AND (m.device_id = '*' OR d.device_id = m.device_id)
ORDER BY d.user_id, d.device_id, (m.device_id = '*')
RETURNING user_id
"""

# The DELETE in the CTE runs even though the SELECT does not read it; the SELECT sees the
# snapshot from before the DELETE, which cannot matter as the two ranges do not overlap.
_ACK_AND_FETCH = """
WITH acked AS (
    DELETE FROM to_device_inbox WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3
)
SELECT stream_id, sender, type, content FROM to_device_inbox
WHERE user_id = $1 AND device_id = $2 AND stream_id > $3 AND stream_id <= $4
ORDER BY stream_id LIMIT $5
"""

_FETCH = """
SELECT stream_id, sender, type, content FROM to_device_inbox
WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3
ORDER BY stream_id LIMIT $4
"""


class ToDeviceStore:
    async def add_txn(self, conn: Conn, user_id: str, device_id: str, txn_id: str,
                      stream_id: int, now_ms: int) -> bool:
        """Record a sender's txn id; False if it was already there (a resend)."""
        row = await conn.fetchval(
            "INSERT INTO to_device_txns (user_id, device_id, txn_id, stream_id, created_ts)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
            user_id, device_id, txn_id, stream_id, now_ms,
        )
        return row is not None

    async def prune_txns(self, conn: Conn, before_ms: int) -> int:
        """Delete txn ids recorded before `before_ms`; returns how many went."""
        status = await conn.execute("DELETE FROM to_device_txns WHERE created_ts < $1",
                                    before_ms)
        return int(status.split()[-1])

    async def insert_messages(self, conn: Conn, stream_id: int, sender: str, event_type: str,
                              user_ids: list[str], device_ids: list[str],
                              contents: list[str]) -> set[str]:
        """One row per existing target device (`*` = all of that user's devices; an explicit
        device id wins over `*`); unknown users and devices are skipped. Returns recipients."""
        rows = await conn.fetch(_INSERT_MESSAGES, user_ids, device_ids, contents, stream_id,
                                sender, event_type)
        return {r["user_id"] for r in rows}

    async def ack_and_fetch(self, conn: Conn, user_id: str, device_id: str, since: int,
                            upto: int, limit: int) -> list[asyncpg.Record]:
        """Delete the device's messages at or below `since`, then read (since, upto]."""
        return list(await conn.fetch(_ACK_AND_FETCH, user_id, device_id, since, upto, limit))

    async def fetch(self, conn: Conn, user_id: str, device_id: str, upto: int,
                    limit: int) -> list[asyncpg.Record]:
        """The device's pending messages up to `upto`, deleting nothing (initial sync)."""
        return list(await conn.fetch(_FETCH, user_id, device_id, upto, limit))

    async def fetch_after(self, conn: Conn, user_id: str, device_id: str, after: int,
                          limit: int) -> list[asyncpg.Record]:
        """The device's messages after `after`, deleting nothing (a dehydrated device's)."""
        return list(await conn.fetch(
            "SELECT stream_id, sender, type, content FROM to_device_inbox"
            " WHERE user_id = $1 AND device_id = $2 AND stream_id > $3"
            " ORDER BY stream_id LIMIT $4", user_id, device_id, after, limit))
