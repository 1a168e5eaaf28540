"""GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event (spec v1.6, MSC3030): the event
closest to a time, forwards (the first at or after it) or backwards (the last at or before it).

Only events this server holds are searched (the federation fallback the spec allows is not
made), and only events the user may see under the history visibility rules are answered, so
that the endpoint does not tell a user about events they could not read.
"""

from __future__ import annotations

import asyncpg

from homeserver.errors import not_found
from homeserver.rooms.reader import RoomReader
from homeserver.rooms.service import RoomService
from homeserver.rooms.state import EventCache
from homeserver.rooms.visibility import Visibility
from homeserver.storage.database import Conn, Database
from homeserver.types import JsonDict, Requester

_SERVED = ("(stream_ordering > 0 OR backfilled) AND NOT outlier AND rejected IS NULL"
           " AND NOT soft_failed")
BATCH = 50
MAX_LOOKED_AT = 1000  # events looked at past invisible ones, at most


class TimestampStore:
    async def near(self, conn: Conn, room_id: str, ts: int, after: tuple[int, int] | None,
                   forwards: bool, limit: int) -> list[asyncpg.Record]:
        """Up to `limit` event ids from `ts` on (forwards) or back, continuing after the
        (origin_server_ts, stream_ordering) point `after` of a previous batch."""
        if forwards:
            cond = "origin_server_ts >= $2 AND ($3::bigint IS NULL OR" \
                   " (origin_server_ts, stream_ordering) > ($3, $4))"
            order = "ASC"
        else:
            cond = "origin_server_ts <= $2 AND ($3::bigint IS NULL OR" \
                   " (origin_server_ts, stream_ordering) < ($3, $4))"
            order = "DESC"
        return list(await conn.fetch(
            f"SELECT event_id, origin_server_ts, stream_ordering FROM events"
            f" WHERE room_id = $1 AND {cond} AND {_SERVED}"
            f" ORDER BY origin_server_ts {order}, stream_ordering {order} LIMIT $5",
            room_id, ts, after[0] if after else None, after[1] if after else None, limit))


class TimestampLookup:
    def __init__(self, db: Database, store: TimestampStore, rooms: RoomService,
                 reader: RoomReader, cache: EventCache, visibility: Visibility) -> None:
        self._db = db
        self._store = store
        self._rooms = rooms
        self._reader = reader
        self._cache = cache
        self._visibility = visibility

    async def closest(self, requester: Requester, room_id: str, ts: int,
                      forwards: bool) -> JsonDict:
        """Raises:
            MatrixError: 404 M_NOT_FOUND for an unknown room or no such event, 403
                M_FORBIDDEN for a user who may not read the room.
        """
        room = await self._rooms.get_room(room_id)
        joined = await self._reader.check_reader(requester, room)
        after: tuple[int, int] | None = None
        looked = 0
        while looked < MAX_LOOKED_AT:
            async with self._db.connection() as conn:
                rows = await self._store.near(conn, room_id, ts, after, forwards, BATCH)
            if not rows:
                break
            looked += len(rows)
            after = (rows[-1]["origin_server_ts"], rows[-1]["stream_ordering"])
            entries = await self._cache.entries_from_rows(list(rows))
            shown = {e.event_id for e in await self._visibility.filter(
                requester.user_id, entries, joined)}
            for e in entries:
                if e.event_id in shown:
                    return {"event_id": e.event_id, "origin_server_ts": e.origin_server_ts}
        raise not_found(f"No event found {'after' if forwards else 'before'} {ts}")
