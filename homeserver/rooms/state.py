"""In-memory room data (current state, extremities, members, recent events) and state groups.

Every local write goes through `RoomWriter` under the room's lock, so these caches are updated in
the same place the database is written and can never disagree with it within this process. Rooms
are loaded lazily from the database on first use, so a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from homeserver.events.model import EventEntry, client_format, mark_redacted
from homeserver.events.room_versions import ROOM_VERSIONS, RoomVersion
from homeserver.events.store import EventStore, StateGroupStore
from homeserver.rooms.store import RoomStore
from homeserver.storage.database import Database
from homeserver.types import JsonDict

StateKey = tuple[str, str]
RECENT_EVENTS = 200  # per room kept in memory for incremental sync
SNAPSHOT_EVERY = 64  # state group chain length before a full snapshot


@dataclass(slots=True)
class RoomData:
    room_id: str
    version: RoomVersion
    state: dict[StateKey, EventEntry]
    state_group: int
    chain_len: int
    extremities: list[str]
    depth: int
    recent: list[EventEntry] = field(default_factory=list)
    floor: int = 0  # every room event with stream_ordering > floor is in `recent`
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Messages waiting for the room's next group commit (see RoomService.send).
    pending: list[Any] = field(default_factory=list)
    flusher: asyncio.Task[None] | None = None

    def snapshot(self) -> tuple[list[EventEntry], list[str], int, int]:
        """What a batch of messages changes in memory, to undo it if the batch fails."""
        return list(self.recent), list(self.extremities), self.depth, self.floor

    def restore(self, snap: tuple[list[EventEntry], list[str], int, int]) -> None:
        self.recent, self.extremities, self.depth, self.floor = (
            snap[0], snap[1], snap[2], snap[3])

    @property
    def last_stream(self) -> int:
        return self.recent[-1].stream_ordering if self.recent else 0

    def membership(self, user_id: str) -> str | None:
        ev = self.state.get(("m.room.member", user_id))
        return ev.membership if ev else None

    def joined_members(self) -> list[str]:
        return [k for (t, k), e in self.state.items()
                if t == "m.room.member" and e.membership == "join"]

    def left_behind(self, server_name: str) -> bool:
        """Whether this is the copy of a room this server has left while others stayed: no
        member of ours is joined and members of other servers are, so the state here stopped
        at our departure and is no base for a new event of ours (a rejoin takes the room's
        state again from a resident server; an invite is kept as out-of-band state)."""
        if ("m.room.create", "") not in self.state:
            return False
        suffix = ":" + server_name
        joined = self.joined_members()
        return bool(joined) and not any(u.endswith(suffix) for u in joined)

    def state_pdus(self) -> Mapping[StateKey, JsonDict]:
        """A read-only view of current state as PDU dicts, built in O(1) for the auth check."""
        return _PduView(self.state)

    def events_after(self, since: int, upto: int) -> list[EventEntry] | None:
        """Events in (since, upto] from memory, or None if memory does not reach back."""
        if since < self.floor:
            return None
        rec = self.recent
        i = len(rec)
        while i > 0 and rec[i - 1].stream_ordering > since:
            i -= 1
        return [e for e in rec[i:] if e.stream_ordering <= upto]

    def append(self, entry: EventEntry) -> None:
        self.recent.append(entry)
        if len(self.recent) > RECENT_EVENTS:
            dropped = self.recent[: len(self.recent) - RECENT_EVENTS]
            self.floor = dropped[-1].stream_ordering
            del self.recent[: len(dropped)]


class _PduView(Mapping[StateKey, JsonDict]):
    __slots__ = ("_state",)

    def __init__(self, state: dict[StateKey, EventEntry]) -> None:
        self._state = state

    def __getitem__(self, key: StateKey) -> JsonDict:
        return self._state[key].pdu

    def __iter__(self) -> Iterator[StateKey]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)


class LRU(OrderedDict[object, object]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_item(self, key: object) -> object | None:
        v = self.get(key)
        if v is not None:
            self.move_to_end(key)
        return v

    def put(self, key: object, value: object) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def entry_from_row(row: object, txn: tuple[str, str, str] | None = None) -> EventEntry:
    r = row  # asyncpg.Record
    pdu = orjson.loads(r["json"])  # type: ignore[index]
    room_id = r["room_id"]  # type: ignore[index]
    event_id = r["event_id"]  # type: ignore[index]
    client = client_format(event_id, pdu, room_id)
    if "redacts" in pdu.get("content", {}) and "redacts" not in client:
        client["redacts"] = pdu["content"]["redacts"]
    elif "redacts" in pdu:
        client["redacts"] = pdu["redacts"]
    return EventEntry(
        event_id=event_id, room_id=room_id, type=r["type"],  # type: ignore[index]
        state_key=r["state_key"], sender=r["sender"], depth=r["depth"],  # type: ignore[index]
        origin_server_ts=r["origin_server_ts"],  # type: ignore[index]
        stream_ordering=r["stream_ordering"], state_group=r["state_group"],  # type: ignore[index]
        state_group_before=r["state_group_before"],  # type: ignore[index]
        pdu=pdu, client=client, redacted_by=r["redacted_by"], txn=txn,  # type: ignore[index]
        rejected=r["rejected"], outlier=r["outlier"],  # type: ignore[index]
        soft_failed=r["soft_failed"],  # type: ignore[index]
    )


class EventCache:
    """Events by id: the recent ones are shared with RoomData.recent."""

    def __init__(self, db: Database, store: EventStore, rooms_store: RoomStore,
                 size: int = 50_000) -> None:
        self._db = db
        self._store = store
        self._rooms = rooms_store
        self._lru = LRU(size)

    def put(self, entry: EventEntry) -> None:
        self._lru.put(entry.event_id, entry)

    def drop(self, event_id: str) -> None:
        self._lru.pop(event_id, None)

    def peek(self, event_id: str) -> EventEntry | None:
        v = self._lru.get_item(event_id)
        return v if isinstance(v, EventEntry) else None

    async def get_many(self, event_ids: Iterable[str]) -> dict[str, EventEntry]:
        out: dict[str, EventEntry] = {}
        missing = []
        for eid in event_ids:
            e = self.peek(eid)
            if e is not None:
                out[eid] = e
            else:
                missing.append(eid)
        if missing:
            async with self._db.connection() as conn:
                rows = await self._store.get_events(conn, missing)
                txns = await self._rooms.txns_for_events(conn, missing)
            tx = {t["event_id"]: (t["user_id"], t["device_id"], t["txn_id"]) for t in txns}
            redacted = []
            for row in rows:
                entry = entry_from_row(row, tx.get(row["event_id"]))
                self.put(entry)
                out[entry.event_id] = entry
                if entry.redacted_by is not None:
                    redacted.append((entry, row["room_version"]))
            if redacted:
                because = await self.get_many([e.redacted_by for e, _ in redacted if e.redacted_by])
                for entry, version in redacted:
                    red = because.get(entry.redacted_by or "")
                    if red is not None:
                        mark_redacted(entry, red, ROOM_VERSIONS[version])
        return out

    async def entries_from_rows(self, rows: list[object]) -> list[EventEntry]:
        ids = [r["event_id"] for r in rows]  # type: ignore[index]
        got = await self.get_many(ids)
        return [got[i] for i in ids if i in got]


class StateGroups:
    """Full state maps of state groups, resolved from delta chains and cached."""

    def __init__(self, db: Database, store: StateGroupStore) -> None:
        self._db = db
        self.store = store
        self._cache = LRU(20_000)

    def remember(self, group: int, state: dict[StateKey, str]) -> None:
        self._cache.put(group, state)

    async def state_ids(self, group: int) -> dict[StateKey, str]:
        got = self._cache.get_item(group)
        if isinstance(got, dict):
            return got
        async with self._db.connection() as conn:
            rows = await self.store.load_chain(conn, group)
        state: dict[StateKey, str] = {}
        for r in rows:  # farthest ancestor first, so nearer deltas win
            state[(r["type"], r["state_key"])] = r["event_id"]
        self._cache.put(group, state)
        return state


class RoomRegistry:
    """Loads `RoomData` on first use and keeps the most recently used `size` rooms.

    The database is the truth and this is a cache of it: a room that is not locked or waiting
    for a write can be dropped at any time and is reloaded on its next use (another process
    writing to the room calls `invalidate`). Asking for a room that does not exist leaves
    nothing behind.
    """

    def __init__(self, db: Database, rooms: RoomStore, events: EventStore,
                 cache: EventCache, groups: StateGroups, size: int = 10_000) -> None:
        self._db = db
        self._rooms = rooms
        self._events = events
        self._cache = cache
        self._groups = groups
        self.size = size
        self._loaded: OrderedDict[str, RoomData] = OrderedDict()
        self._loading: dict[str, asyncio.Lock] = {}
        # A reloaded room keeps the lock of its previous copy while anyone still holds that
        # copy, so one room never has two writers.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    def loaded(self, room_id: str) -> RoomData | None:
        return self._loaded.get(room_id)

    def add(self, room: RoomData) -> None:
        self._loaded[room.room_id] = room
        self._locks[room.room_id] = room.lock
        self._evict()

    def drop(self, room_id: str) -> None:
        self._loaded.pop(room_id, None)

    def invalidate(self, room_id: str) -> None:
        """Forget a room written elsewhere, unless a write of ours is under way in it (then
        the writer holds the newer truth and the next reload happens after it)."""
        room = self._loaded.get(room_id)
        if room is not None and not _busy(room):
            del self._loaded[room_id]

    def _evict(self) -> None:
        if len(self._loaded) <= self.size:
            return
        for room_id in list(self._loaded):
            if len(self._loaded) <= self.size:
                break
            if not _busy(self._loaded[room_id]):
                del self._loaded[room_id]

    async def get(self, room_id: str) -> RoomData | None:
        room = self._loaded.get(room_id)
        if room is not None:
            self._loaded.move_to_end(room_id)
            return room
        lock = self._loading.setdefault(room_id, asyncio.Lock())
        try:
            async with lock:
                room = self._loaded.get(room_id)
                if room is None:
                    room = await self._load(room_id)
                    if room is not None:
                        old_lock = self._locks.get(room_id)
                        if old_lock is not None:
                            room.lock = old_lock
                        self._locks[room_id] = room.lock
                        self._loaded[room_id] = room
                        self._evict()
        finally:
            if not lock.locked() and self._loading.get(room_id) is lock:
                del self._loading[room_id]
        return room

    async def _load(self, room_id: str) -> RoomData | None:
        async with self._db.connection() as conn:
            row = await self._rooms.get_room(conn, room_id)
            if row is None:
                return None
            state_rows = await self._rooms.current_state_ids(conn, room_id)
            extremities = await self._events.forward_extremities(conn, room_id)
            recent_rows = await self._events.room_events_between(
                conn, room_id, 0, 2**62, RECENT_EVENTS
            )
            depth = await self._events.max_depth(conn, room_id)
        ids = [r["event_id"] for r in state_rows]
        entries = await self._cache.get_many(ids)
        state = {(r["type"], r["state_key"]): entries[r["event_id"]] for r in state_rows}
        recent = await self._cache.entries_from_rows(list(recent_rows))
        # The current state's group: the state after the only extremity, else none yet (the
        # current state is a resolution of several; the next local event saves it).
        group, chain_len = 0, 0
        if len(extremities) == 1:
            ext = (await self._cache.get_many(extremities)).get(extremities[0])
            if ext is not None and ext.state_group:
                current = {k: e.event_id for k, e in state.items()}
                if await self._groups.state_ids(ext.state_group) == current:
                    group = ext.state_group
                    async with self._db.connection() as conn:
                        chain_len = await self._groups.store.chain_len(conn, group)
        floor = recent[0].stream_ordering - 1 if len(recent) >= RECENT_EVENTS else 0
        return RoomData(
            room_id=room_id, version=ROOM_VERSIONS[row["room_version"]], state=state,
            state_group=group, chain_len=chain_len, extremities=extremities, depth=depth,
            recent=recent, floor=floor,
        )


def _busy(room: RoomData) -> bool:
    return room.lock.locked() or bool(room.pending) or room.flusher is not None
