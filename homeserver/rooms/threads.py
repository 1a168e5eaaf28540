"""Threads (spec "Threading"): the thread list of a room and the m.thread bundled aggregation
(latest_event, count, current_user_participated) of thread roots.

Served for GET /_matrix/client/v1/rooms/{roomId}/threads, search results, the timelines of
/sync (long poll and WebSocket) and sliding sync, and /messages, /context and /event (through
`RoomReader.served`). History visibility applies to the roots and to the latest event alike.

In a sync timeline the roots are recent events, and every event after a room's memory floor is
in memory (RoomData.recent), replies included: `bundle_in_room` answers those from memory at no
database cost (the common case, e.g. every member's sync after a new message: the new event has
nothing after it), and asks the database only for older roots.
"""

from __future__ import annotations

from bisect import bisect_right

from homeserver.errors import Codes, MatrixError
from homeserver.events.model import EventEntry
from homeserver.rooms.reader import RoomReader
from homeserver.rooms.state import EventCache, RoomData, RoomRegistry
from homeserver.rooms.thread_store import ThreadStore
from homeserver.rooms.visibility import Visibility
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester

MAX_LIMIT = 100


class ThreadService:
    def __init__(self, db: Database, store: ThreadStore, cache: EventCache,
                 visibility: Visibility, reader: RoomReader, rooms: RoomRegistry) -> None:
        self._db = db
        self._store = store
        self._cache = cache
        self._visibility = visibility
        self._reader = reader
        self._rooms = rooms

    async def threads(self, requester: Requester, room_id: str, include: str,
                      from_token: str | None, limit: int) -> JsonDict:
        room = await self._rooms.get(room_id)
        if room is None:
            raise MatrixError(403, Codes.FORBIDDEN, "You are not allowed to view this room")
        joined = await self._reader.check_reader(requester, room)
        before = None
        if from_token is not None:
            if not (from_token.isascii() and from_token.isdigit()) or len(from_token) > 18:
                raise MatrixError(400, Codes.INVALID_PARAM, "Invalid from token")
            before = int(from_token)
        limit = max(1, min(limit, MAX_LIMIT))
        async with self._db.connection() as conn:
            rows = await self._store.threads(conn, room_id, requester.user_id,
                                             include == "participated", before, limit)
        got = await self._cache.get_many(
            [r["root"] for r in rows] + [r["latest"] for r in rows if r["latest"]])
        uid, dev = requester.user_id, requester.device_id
        chunk: list[JsonDict] = []
        for r in rows:
            root, latest = got.get(r["root"]), got.get(r["latest"])
            if root is None or latest is None:
                continue
            if len(await self._visibility.filter(uid, [root, latest], joined)) < 2:
                continue
            chunk.append(_bundled(root.to_client(uid, dev), latest.to_client(uid, dev),
                                  r["n"], r["participated"]))
        out: JsonDict = {"chunk": chunk}
        if len(rows) == limit:
            out["next_batch"] = str(rows[-1]["latest_pos"])
        return out

    async def bundle_in_room(self, requester: Requester, room: RoomData,
                             events: list[EventEntry], served: list[JsonDict], upto: int,
                             joined: bool = True) -> None:
        """`bundle` for events of one room's timeline, seen up to stream position `upto`:
        from memory for roots after the room's memory floor, from the database for others."""
        recent = room.recent
        older: list[int] = []
        if not recent:
            older = list(range(len(events)))
        for i, e in enumerate(events):
            if not recent:
                break
            if e.stream_ordering <= room.floor or e.stream_ordering > recent[-1].stream_ordering:
                older.append(i)
                continue
            start = bisect_right(recent, e.stream_ordering, key=lambda x: x.stream_ordering)
            replies = [x for x in recent[start:]
                       if x.stream_ordering <= upto and thread_root(x) == e.event_id]
            if not replies:
                continue
            visible = await self._visibility.filter(requester.user_id, replies, joined)
            if not visible:
                continue
            uid = requester.user_id
            participated = e.sender == uid or any(x.sender == uid for x in replies)
            _bundled(served[i], visible[-1].to_client(uid, requester.device_id),
                     len(replies), participated)
        if older:
            await self.bundle(requester, [events[i] for i in older],
                              [served[i] for i in older], joined)

    async def bundle(self, requester: Requester, events: list[EventEntry],
                     served: list[JsonDict], joined: bool = True) -> None:
        """Add the m.thread aggregation to each served event (`served[i]` is `events[i]` in
        client format) that is a thread root."""
        by_room: dict[str, list[str]] = {}
        for e in events:
            by_room.setdefault(e.room_id, []).append(e.event_id)
        summaries: dict[str, tuple[str, int, bool]] = {}
        async with self._db.connection() as conn:
            for room_id, ids in by_room.items():
                for r in await self._store.summaries(conn, room_id, ids, requester.user_id):
                    summaries[r["root"]] = (r["latest"], r["n"], r["participated"])
        if not summaries:
            return
        got = await self._cache.get_many(s[0] for s in summaries.values())
        uid, dev = requester.user_id, requester.device_id
        for e, body in zip(events, served, strict=True):
            s = summaries.get(e.event_id)
            latest = got.get(s[0]) if s is not None else None
            if s is None or latest is None or not await self._visibility.filter(
                    uid, [latest], joined):
                continue
            _bundled(body, latest.to_client(uid, dev), s[1], s[2])


def thread_root(ev: EventEntry) -> str | None:
    """The root an event replies to in a thread, if it is a thread reply."""
    rel = ev.pdu.get("content", {}).get("m.relates_to")
    if isinstance(rel, dict) and rel.get("rel_type") == "m.thread":
        root = rel.get("event_id")
        return root if isinstance(root, str) else None
    return None


def _bundled(root: JsonDict, latest: JsonDict, count: int, participated: bool) -> JsonDict:
    # Copies: the event's client dict shares its nested values with the event cache.
    unsigned = dict(root.get("unsigned") or {})
    relations = dict(unsigned.get("m.relations") or {})
    relations["m.thread"] = {"latest_event": latest, "count": count,
                             "current_user_participated": bool(participated)}
    unsigned["m.relations"] = relations
    root["unsigned"] = unsigned
    return root
