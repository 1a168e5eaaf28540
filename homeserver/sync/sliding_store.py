"""SQL for sliding sync's room list: each room's recency, bump stamp, type and encryption.

Asked only for rooms not already in memory (RoomRegistry), in one statement for all of them:
one index probe per room on events_room_stream, newest first, so a user in hundreds of rooms
gets their ordering without loading every room.
"""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Conn


class SlidingStore:
    async def room_infos(self, conn: Conn, room_ids: list[str], upto: int,
                         bump_types: list[str]) -> list[asyncpg.Record]:
        """Per room: last (newest event's stream position), bump (newest of `bump_types`),
        room_type (the create event's content.type) and encrypted."""
        return list(await conn.fetch(
            "SELECT r.room_id,"
            " (SELECT e.stream_ordering FROM events e WHERE e.room_id = r.room_id"
            "   AND e.stream_ordering > 0 AND e.stream_ordering <= $2"
            "   ORDER BY e.stream_ordering DESC LIMIT 1) AS last,"
            " (SELECT e.stream_ordering FROM events e WHERE e.room_id = r.room_id"
            "   AND e.stream_ordering > 0 AND e.stream_ordering <= $2 AND e.type = ANY($3)"
            "   ORDER BY e.stream_ordering DESC LIMIT 1) AS bump,"
            " (SELECT e.json::jsonb -> 'content' ->> 'type' FROM current_state cs"
            "   JOIN events e ON e.event_id = cs.event_id WHERE cs.room_id = r.room_id"
            "   AND cs.type = 'm.room.create' AND cs.state_key = '') AS room_type,"
            " EXISTS (SELECT 1 FROM current_state cs WHERE cs.room_id = r.room_id"
            "   AND cs.type = 'm.room.encryption' AND cs.state_key = '') AS encrypted"
            " FROM unnest($1::text[]) AS r(room_id)",
            room_ids, upto, bump_types))
