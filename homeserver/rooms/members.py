"""Each user's current membership per room, in memory, for sync and /joined_rooms.

Loaded per user on first use and updated by `RoomWriter` on every membership event, so sync never
queries the database to learn which rooms to look at.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.rooms.store import RoomStore
from homeserver.storage.database import Database


@dataclass(frozen=True, slots=True)
class Membership:
    membership: str
    stream_ordering: int
    event_id: str


class MembershipIndex:
    def __init__(self, db: Database, store: RoomStore) -> None:
        self._db = db
        self._store = store
        self._users: dict[str, dict[str, Membership]] = {}
        self._pending: dict[str, dict[str, Membership]] = {}

    async def rooms_of(self, user_id: str) -> dict[str, Membership]:
        got = self._users.get(user_id)
        if got is not None:
            return got
        async with self._db.connection() as conn:
            rows = await self._store.user_memberships(conn, user_id)
        got = self._users.get(user_id)  # a write may have raced the load: it wins
        if got is not None:
            return got
        got = {r["room_id"]: Membership(r["membership"], r["stream_ordering"], r["event_id"])
               for r in rows}
        # Writes that landed while we were reading: keep whichever is newer.
        for room_id, m in self._pending.pop(user_id, {}).items():
            old = got.get(room_id)
            if old is None or old.stream_ordering <= m.stream_ordering:
                got[room_id] = m
        self._users[user_id] = got
        return got

    def update(self, user_id: str, room_id: str, m: Membership) -> None:
        rooms = self._users.get(user_id)
        if rooms is not None:
            rooms[room_id] = m
        else:
            self._pending.setdefault(user_id, {})[room_id] = m

    def invalidate(self, user_id: str) -> None:
        """Forget a user's memberships (changed by another process); reloaded on next use."""
        self._users.pop(user_id, None)
        self._pending.pop(user_id, None)

    async def joined_rooms(self, user_id: str) -> list[str]:
        return [r for r, m in (await self.rooms_of(user_id)).items() if m.membership == "join"]

    async def forgotten(self, user_id: str) -> set[str]:
        """Rooms the user has left and then forgotten (asked only when a left room matters)."""
        async with self._db.connection() as conn:
            return await self._store.forgotten(conn, user_id)
