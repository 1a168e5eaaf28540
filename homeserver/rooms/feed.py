"""Background consumers of the room event stream: read after a saved position, in order.

The federation sender, pushers and application services are consumers: each has a name, reads
the served events after the position it saved in the database, processes them, then saves the
new position. A restart (or another process taking over) resumes exactly where it left off, and
a crash between processing and saving replays events rather than losing them, so consumers must
be idempotent. A new consumer starts at the stream's current position, not at the beginning.
"""

from __future__ import annotations

import asyncio
import time

from homeserver.events.model import EventEntry
from homeserver.events.store import EventStore
from homeserver.rooms.state import EventCache
from homeserver.storage.database import Conn, Database
from homeserver.storage.streams import Stream


class EventConsumer:
    def __init__(self, name: str, db: Database, events: EventStore, cache: EventCache,
                 stream: Stream, batch_size: int = 100) -> None:
        self.name = name
        self._db = db
        self._events = events
        self._cache = cache
        self._stream = stream
        self._batch_size = batch_size
        self._position: int | None = None
        self._new = asyncio.Event()
        stream.on_advance(lambda _pos: self._new.set())

    async def position(self) -> int:
        if self._position is None:
            row = await self._db.fetchval(
                "SELECT position FROM stream_consumers WHERE name = $1", self.name)
            if row is None:
                start = self._stream.current
                await self._db.execute(
                    "INSERT INTO stream_consumers (name, stream, position, updated_ts)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                    self.name, self._stream.name, start, int(time.time() * 1000))
                row = await self._db.fetchval(
                    "SELECT position FROM stream_consumers WHERE name = $1", self.name)
            self._position = int(row)
        return self._position

    async def next_batch(self) -> tuple[list[EventEntry], int]:
        """Served events after our position, oldest first (at most `batch_size`), and the
        position to save once they are processed. Only committed positions are read."""
        after = await self.position()
        upto = self._stream.current
        if upto <= after:
            return [], after
        async with self._db.connection() as conn:
            rows = await self._events.events_between(conn, after, upto, self._batch_size)
        entries = await self._cache.entries_from_rows(list(rows))
        end = entries[-1].stream_ordering if len(rows) == self._batch_size else upto
        return entries, end

    async def save(self, position: int, conn: Conn | None = None) -> None:
        """Record that everything up to `position` is processed (in `conn`'s transaction, if
        given, so the consumer's own writes and its position commit together)."""
        q = ("UPDATE stream_consumers SET position = GREATEST(position, $2), updated_ts = $3"
             " WHERE name = $1")
        now = int(time.time() * 1000)
        if conn is not None:
            await conn.execute(q, self.name, position, now)
        else:
            await self._db.execute(q, self.name, position, now)
        self._position = max(self._position or 0, position)

    async def wait(self, timeout: float | None = None) -> None:
        """Until the stream moves past our position (or the timeout)."""
        if self._stream.current > await self.position():
            return
        self._new.clear()
        try:
            await asyncio.wait_for(self._new.wait(), timeout)
        except TimeoutError:
            pass
