"""MSC2753 peeking through /sync (unstable): a device peeks into a world-readable room with
`POST /peek/{roomIdOrAlias}` and from then on its /sync carries the room under `rooms.peek`,
shaped like a joined room, until `POST /unpeek/{roomId}` or until the user joins the room.

Only SyTest-era clients use it (tests/31sync/17peeking.pl); it is not advertised in /versions.
The room previews of the stable spec are GET /events?room_id= (homeserver/sync/peek.py); both
share `world_readable`.

A peek belongs to the device that asked (MSC2753: "Peeked rooms only turn up in the sync for
the device who peeked them") and lives in the database (`room_peeks`), so it survives a restart
and goes with its device or room (foreign keys). Each peek takes a position of the events
stream when it starts. That position is what lets a sync tell a new peek from an old one
without a stream of its own: a sync from before it sends the room as a newly joined room is
sent (from its start, within the timeline limit), a later sync only what is new. The position
is a gap in the events stream (no event has it), which the stream's readers already allow for
(a reserved block given back leaves gaps too); finishing it wakes the peeker's long poll.

Joining the room ends the peek: the membership hook deletes the user's peeks of that room, so
leaving it later does not bring the peek back.

Peeks are rare and /sync is the hot path: the process keeps the set of users who have any peek
(re-read every PEEKERS_TTL_S, so a peek started through another process sharing the database
is seen within that time), and a sync or a join of anyone else costs no query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from homeserver.errors import Codes, MatrixError, forbidden, not_found
from homeserver.rooms.state import RoomData, RoomRegistry
from homeserver.storage.database import Conn, Database
from homeserver.storage.streams import Stream
from homeserver.sync.peek import world_readable
from homeserver.types import Requester

log = logging.getLogger(__name__)

PEEKERS_TTL_S = 10.0


class PeekStore:
    async def add(self, conn: Conn, user_id: str, device_id: str, room_id: str,
                  pos: int) -> None:
        """A peek; one already there keeps its position (peeking twice changes nothing)."""
        await conn.execute(
            "INSERT INTO room_peeks (user_id, device_id, room_id, stream_pos)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            user_id, device_id, room_id, pos)

    async def remove(self, conn: Conn, user_id: str, device_id: str, room_id: str) -> None:
        await conn.execute(
            "DELETE FROM room_peeks WHERE user_id = $1 AND device_id = $2 AND room_id = $3",
            user_id, device_id, room_id)

    async def remove_user_room(self, conn: Conn, user_id: str, room_id: str) -> None:
        """Every peek of `user_id` (all devices) into `room_id`."""
        await conn.execute(
            "DELETE FROM room_peeks WHERE room_id = $1 AND user_id = $2", room_id, user_id)

    async def peekers(self, conn: Conn) -> set[str]:
        return {str(r["user_id"]) for r in await conn.fetch(
            "SELECT DISTINCT user_id FROM room_peeks")}

    async def of_device(self, conn: Conn, user_id: str, device_id: str) -> dict[str, int]:
        rows = await conn.fetch(
            "SELECT room_id, stream_pos FROM room_peeks WHERE user_id = $1 AND device_id = $2",
            user_id, device_id)
        return {str(r["room_id"]): int(r["stream_pos"]) for r in rows}


class SyncPeeks:
    """Starts and ends peeks, and tells /sync which rooms a device peeks into (the
    `PeekSource` of homeserver/sync/streams.py)."""

    def __init__(self, db: Database, store: PeekStore, rooms: RoomRegistry,
                 resolve: Callable[[str], Awaitable[str]], event_stream: Stream) -> None:
        self._db = db
        self._store = store
        self._rooms = rooms
        self._resolve = resolve
        self._stream = event_stream
        self._tasks: set[asyncio.Task[None]] = set()
        self._peekers: set[str] = set()
        self._peekers_at = -PEEKERS_TTL_S  # monotonic time of the last read; never read yet

    async def _has_peeks(self, user_id: str) -> bool:
        if time.monotonic() - self._peekers_at >= PEEKERS_TTL_S:
            async with self._db.connection() as conn:
                self._peekers = await self._store.peekers(conn)
            self._peekers_at = time.monotonic()
        return user_id in self._peekers

    async def peek(self, requester: Requester, room_id_or_alias: str) -> str:
        """Start peeking; returns the room id.

        Raises:
            MatrixError: 404 M_NOT_FOUND for an unknown room or alias, 400 M_INVALID_PARAM
                for a malformed one, 403 M_FORBIDDEN for a room that is not world-readable.
        """
        room_id = await self._resolve(room_id_or_alias)
        room = await self._rooms.get(room_id)
        if room is None:
            raise not_found("Unknown room")
        if not world_readable(room):
            raise forbidden("Only a world-readable room can be peeked into")
        if room.membership(requester.user_id) == "join":
            return room_id  # a member reads the room in `join`; there is nothing to peek at
        if not requester.device_id:  # an application service acting without a device
            raise forbidden("A peek belongs to a device; name one with device_id")
        pos = await self._stream.allocate()
        try:
            async with self._db.connection() as conn:
                await self._store.add(conn, requester.user_id, requester.device_id, room_id,
                                      pos)
            self._peekers.add(requester.user_id)
        except asyncpg.ForeignKeyViolationError:  # the device was deleted meanwhile
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown device") from None
        finally:
            self._stream.finish(pos, wake=[requester.user_id])
        return room_id

    async def unpeek(self, requester: Requester, room_id: str) -> None:
        """End a peek (ending one that is not there is not an error: the client is where it
        wanted to be)."""
        async with self._db.connection() as conn:
            await self._store.remove(conn, requester.user_id, requester.device_id, room_id)

    async def of_device(self, user_id: str, device_id: str) -> dict[str, int]:
        """room id -> the events-stream position its peek started at."""
        if not await self._has_peeks(user_id):
            return {}
        async with self._db.connection() as conn:
            return await self._store.of_device(conn, user_id, device_id)

    def on_membership(self, room: RoomData, user_id: str, membership: str) -> None:
        """The writer's membership hook: a join ends the user's peeks of the room (in the
        background; until it lands, sync leaves out a peek of a joined room anyway)."""
        if membership != "join" or (user_id not in self._peekers
                                    and time.monotonic() - self._peekers_at < PEEKERS_TTL_S):
            return
        task = asyncio.get_running_loop().create_task(self._end(user_id, room.room_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end(self, user_id: str, room_id: str) -> None:
        try:
            async with self._db.connection() as conn:
                await self._store.remove_user_room(conn, user_id, room_id)
        except Exception:  # the database going away: the peek stays hidden behind the join
            log.warning("could not end the peeks of %s in %s", user_id, room_id, exc_info=True)

    async def start(self) -> None:
        """Nothing to start (the app's Background protocol)."""

    async def stop(self) -> None:
        """On shutdown: let the pending peek endings finish."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
