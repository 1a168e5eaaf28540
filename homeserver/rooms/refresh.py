"""Keeps this process's room caches true when another process shares the database.

Room data, the membership index and the event cache are caches of the database that the local
writer keeps current. Events another process wrote reach us only as a higher stream floor
(storage/instances.py); before our readers are shown that floor, this drops what the caches
hold of the rooms, users and redacted events those events touch, so the next read reloads
them from the database.
"""

from __future__ import annotations

import orjson

from homeserver.events.store import EventStore
from homeserver.rooms.members import MembershipIndex
from homeserver.rooms.state import EventCache, RoomRegistry
from homeserver.storage.database import Database
from homeserver.storage.instances import OnAdvance
from homeserver.storage.streams import Stream

PAGE = 500


class RoomCacheRefresher:
    def __init__(self, db: Database, events: EventStore, rooms: RoomRegistry,
                 cache: EventCache, members: MembershipIndex, stream: Stream) -> None:
        self._stream = stream
        self._db = db
        self._events = events
        self._rooms = rooms
        self._cache = cache
        self._members = members

        # Other streams whose caches need the same treatment (receipts), by stream name.
        self.others: dict[str, OnAdvance] = {}

    async def on_advance(self, stream: str, before: int, after: int) -> None:
        if stream != "events":
            handler = self.others.get(stream)
            if handler is not None:
                await handler(stream, before, after)
            return
        pos = before
        while pos < after:
            async with self._db.connection() as conn:
                rows = await self._events.events_between(conn, pos, after, PAGE)
            if not rows:
                break
            for r in rows:
                if self._stream.is_mine(r["stream_ordering"]):
                    continue  # ours: the writer already updated every cache
                self._cache.drop(r["event_id"])
                self._rooms.invalidate(r["room_id"])
                if r["type"] == "m.room.member" and r["state_key"] is not None:
                    self._members.invalidate(r["state_key"])
                if r["type"] == "m.room.redaction":
                    pdu = orjson.loads(r["json"])
                    target = pdu.get("redacts") or pdu.get("content", {}).get("redacts")
                    if isinstance(target, str):
                        self._cache.drop(target)
            pos = int(rows[-1]["stream_ordering"])
            if len(rows) < PAGE:
                break
        self._stream.forget_mine_upto(after)
