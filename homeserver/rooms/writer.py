"""The single writer of room events, with two doors and one persist path.

- `persist` is the local door: RoomService builds an event from the room's forward extremities
  and current state, and the writer checks it against that state and writes it.
- `accept` is the door for a PDU from elsewhere (a remote server, a backfilled or fetched
  event). It runs the spec's receipt checks in order: format, signatures and content hash
  (`events/checks.py`), auth against the event's own auth_events and against the state before
  it (either failing: stored as *rejected*, never state nor an extremity), then against the
  room's current state (failing: *soft-failed*, stored and state at its place in the DAG, but
  not an extremity and not served to clients).
- `store_outlier` keeps an event known without its state (an auth chain, an invite or knock
  over federation); `accept` later de-outliers it.
- `store_out_of_band` keeps a membership event of a room this server is not in (an invite
  from another server, or the local rejection of one) as the room's only state, so that the
  user sees it in sync; `forget_out_of_band` drops that state when the server joins.

The state before an event is computed from its prev_events: the state after each of them,
resolved with state resolution when they differ; current state is the resolution of the forward
extremities. For a local event built on every extremity this is exactly the current state held
in memory, so the common path computes nothing and makes one round trip.

Callers hold `room.lock` (RoomService does, from building the event to persisting it), so the
DAG, depth and state of a room are read and written by one task at a time. Served events take
positions from the events stream; events that are never served take negative positions, so no
sync range can include them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from homeserver.events.auth import AuthError, check_auth, check_auth_events_list
from homeserver.events.checks import InvalidPdu, KeyFetcher, check_pdu
from homeserver.events.format import event_ids_of as event_refs
from homeserver.events.hashing import create_event_id_for_room, room_id_for_create_event
from homeserver.events.model import EventEntry, client_format, mark_redacted, relation_of
from homeserver.events.state_res import resolve_state
from homeserver.events.store import EventStore, StateGroupStore
from homeserver.rooms.members import Membership, MembershipIndex
from homeserver.rooms.state import (
    SNAPSHOT_EVERY,
    EventCache,
    RoomData,
    StateGroups,
    StateKey,
    entry_from_row,
)
from homeserver.rooms.store import RoomStore
from homeserver.storage.database import Conn, Database
from homeserver.storage.streams import IdPool, Stream
from homeserver.types import JsonDict


class MissingEvents(Exception):
    """The PDU cites events this server does not have (federation fetches them, then retries)."""

    def __init__(self, kind: str, event_ids: list[str]) -> None:
        super().__init__(f"missing {kind}: {', '.join(event_ids)}")
        self.kind = kind
        self.event_ids = event_ids


@dataclass(slots=True)
class PersistEvent:
    """One event on its way into a room, and everything the writer works out about it once."""

    event_id: str
    pdu: JsonDict
    txn: tuple[str, str, str] | None = None
    new_room: tuple[str, bool] | None = None  # (creator, is_public) with the create event
    # Filled in by the writer.
    pos: int = 0
    group: int = 0
    group_before: int = 0
    chain_len: int = 0
    new_state: dict[StateKey, str] | None = None  # full state after, if a new group is made
    delta: dict[StateKey, str] = field(default_factory=dict)
    prev_group: int | None = None
    before_group_row: tuple[int, int | None, int, dict[StateKey, str]] | None = None
    prev_state: EventEntry | None = None
    relates_to: str | None = None
    rel_type: str | None = None
    redacts: str | None = None
    rejected: str | None = None
    soft_failed: bool = False
    outlier: bool = False
    deoutlier: bool = False
    # History fetched with /backfill: state at its place in the DAG, shown by /messages, but
    # never current state, an extremity, nor in the events stream (so not synced or pushed).
    backfilled: bool = False
    # Current-state changes beyond the event itself (a merge resolved by state resolution).
    current_delta: dict[StateKey, str | None] | None = None
    # Whether the room's current state afterwards is the state after this event (so its group
    # is the room's current group); False after a merge whose resolution no group holds yet.
    current_is_after: bool = True
    # Whether a state event is the current value of its key afterwards (False when state
    # resolution of a merge keeps the other branch's event for that key).
    current_own: bool = True

    @property
    def served(self) -> bool:
        return (self.rejected is None and not self.soft_failed and not self.outlier
                and not self.backfilled)

    @property
    def state_key(self) -> str | None:
        sk = self.pdu.get("state_key")
        return sk if isinstance(sk, str) else None


@dataclass(slots=True)
class Batch:
    """Events of a room being created (or a group of messages): applied in memory as they are
    built (each is checked against the state the previous ones made) and written in ONE
    transaction by `RoomWriter.commit`, so a failure half-way leaves no rows behind."""

    events: list[PersistEvent] = field(default_factory=list)
    entries: list[EventEntry] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


# (room, user_id, new membership): runs after the change is in memory; must not block.
MembershipHook = Callable[[RoomData, str, str], None]
class PersistHook(Protocol):
    """Work that must commit with events (push actions, unread counts).

    `write` runs inside the transaction of the events the hook `wants`, once per transaction
    (a group commit hands it the whole batch, in stream order), so its rows commit with them
    or not at all. What it returns comes back to `finished` after the transaction, committed
    or not, before readers are woken; that is where in-memory state may follow the rows.
    An event no hook wants keeps the plain path: one statement, no BEGIN/COMMIT.
    """

    def wants(self, room: RoomData, ev: PersistEvent) -> bool: ...

    async def write(self, conn: Conn, room: RoomData,
                    events: Sequence[PersistEvent]) -> Any: ...

    def finished(self, room: RoomData, written: Any, committed: bool) -> None: ...


class _Fetcher:
    """State resolution's view of the events: PDUs by id, from the cache or the database."""

    def __init__(self, cache: EventCache, pending: Mapping[str, JsonDict] | None = None) -> None:
        self._cache = cache
        self._pending = pending or {}  # the event being persisted, not yet stored

    async def get_events(self, event_ids: Iterable[str]) -> Mapping[str, JsonDict]:
        ids = list(event_ids)
        got = await self._cache.get_many([i for i in ids if i not in self._pending])
        out = {k: e.pdu for k, e in got.items() if e.rejected is None}
        out.update({i: self._pending[i] for i in ids if i in self._pending})
        return out


def _in_room(room: RoomData, pdu: Any, event_id: str) -> JsonDict:
    """A PDU handed to this room's writer must belong to this room (a v12 create event has no
    room_id: its id is the room's)."""
    if not isinstance(pdu, dict):
        raise InvalidPdu("PDU is not an object")
    if room.version.room_id_is_create_event_hash and pdu.get("type") == "m.room.create" \
            and "room_id" not in pdu:
        if room_id_for_create_event(event_id) != room.room_id:
            raise InvalidPdu("the create event belongs to another room")
        return pdu
    if pdu.get("room_id") != room.room_id:
        raise InvalidPdu("the PDU belongs to another room")
    return pdu


class RoomWriter:
    def __init__(
        self, db: Database, events: EventStore, groups_store: StateGroupStore,
        rooms: RoomStore, cache: EventCache, groups: StateGroups, members: MembershipIndex,
        stream: Stream, group_ids: IdPool,
        on_membership: list[MembershipHook] | None = None,
        on_persist: list[PersistHook] | None = None,
    ) -> None:
        self._db = db
        self._events = events
        self._groups_store = groups_store
        self._rooms = rooms
        self._cache = cache
        self._groups = groups
        self._members = members
        self.stream = stream
        self._group_ids = group_ids
        self._fetcher = _Fetcher(cache)
        # Called after a committed membership change is applied in memory (e.g. typing drops
        # a user who left); the list is the caller's, so hooks can be added after wiring.
        self._on_membership = on_membership if on_membership is not None else []
        # Run inside the persist transaction of the events they want (see PersistHook); the
        # list is the caller's, so hooks can be added after wiring.
        self._on_persist = on_persist if on_persist is not None else []
        # Told (events written, seconds the write took) after each commit (metrics).
        self.on_written: Callable[[int, float], None] | None = None

    # ------------------------------------------------------------------ the local door

    async def persist(self, room: RoomData, ev: PersistEvent,
                      batch: Batch | None = None) -> EventEntry:
        """Check a locally built event, write it and its state in one transaction, update the
        caches, wake. Raises AuthError (nothing stored) if the event is not allowed."""
        assert room.lock.locked()
        prevs = event_refs(ev.pdu.get("prev_events"))
        if set(prevs) == set(room.extremities):
            check_auth(room.version, ev.pdu, room.state_pdus())
            await self._plan_on_current(room, ev)
        else:  # built on a subset of many extremities: the state before is a resolution
            before = await self._state_before(room, prevs)
            check_auth(room.version, ev.pdu, await self._pdus(before))
            await self._plan_general(room, ev, before, prevs)
        return await self._persist_planned(room, ev, batch)

    async def _plan_on_current(self, room: RoomData, ev: PersistEvent) -> None:
        """The state before is the current state: reuse its group, delta-chain the next."""
        self._describe(room, ev)
        base, chain = room.state_group, room.chain_len
        if base == 0 and room.state:  # current state is an unsaved resolution: save it first
            base, chain = await self._group_ids.take(), 0
            full = {k: e.event_id for k, e in room.state.items()}
            ev.before_group_row = (base, None, 0, full)
            self._groups.remember(base, full)
        ev.group_before = ev.group = base
        ev.chain_len = chain
        state_key = ev.state_key
        if state_key is not None:
            key = (ev.pdu["type"], state_key)
            ev.prev_state = room.state.get(key)
            full = {k: e.event_id for k, e in room.state.items()}
            full[key] = ev.event_id
            ev.new_state = full
            if base == 0 or chain + 1 >= SNAPSHOT_EVERY:
                ev.delta, ev.chain_len, ev.prev_group = full, 0, None
            else:
                ev.delta, ev.chain_len, ev.prev_group = {key: ev.event_id}, chain + 1, base

    def _describe(self, room: RoomData, ev: PersistEvent) -> None:
        content = ev.pdu.get("content", {})
        ev.relates_to, ev.rel_type = relation_of(content)
        if ev.pdu["type"] == "m.room.redaction":
            redacts = content.get("redacts") if isinstance(content, dict) else None
            if not isinstance(redacts, str):
                redacts = ev.pdu.get("redacts")
            ev.redacts = redacts if isinstance(redacts, str) else None

    async def _persist_planned(self, room: RoomData, ev: PersistEvent,
                               batch: Batch | None) -> EventEntry:
        if ev.new_state is not None:
            ev.group = await self._group_ids.take()
        if ev.served:
            ev.pos = await self.stream.allocate()
        else:
            ev.pos = await self._events.next_hidden_position(self._db)
        if batch is not None:
            batch.events.append(ev)
            if ev.served:
                batch.positions.append(ev.pos)
            entry = self._apply(room, ev, deferred=True)
            batch.entries.append(entry)
            return entry
        written: list[tuple[PersistHook, Any]] = []
        started = time.perf_counter()
        wanted = self._wanted(room, [ev])
        try:
            if self._plain_shape(ev) and not wanted:
                async with self._db.connection() as conn:
                    await self._insert_plain(conn, room, ev)
            else:
                try:
                    async with self._db.transaction() as conn:
                        await self._write_all(conn, room, ev)
                        await self._hooks_write(conn, room, wanted, written)
                except BaseException:
                    self._hooks_finished(room, written, False)
                    raise
                self._hooks_finished(room, written, True)
            entry = self._apply(room, ev)
        except BaseException:
            if ev.served:
                self.stream.finish(ev.pos)
            raise
        if self.on_written is not None:
            self.on_written(1, time.perf_counter() - started)
        self._finish(room, entry, ev)
        return entry

    def _plain_shape(self, ev: PersistEvent) -> bool:
        """A served message-like event on the current state: its rows are one statement."""
        return (ev.new_state is None and ev.redacts is None and ev.new_room is None
                and ev.served and not ev.deoutlier and ev.before_group_row is None
                and not ev.current_delta)

    def _wanted(self, room: RoomData, events: Sequence[PersistEvent],
                ) -> list[tuple[PersistHook, list[PersistEvent]]]:
        """Each hook with the events it wants (asked once per write: a hook's `wants` may
        look at every member of the room)."""
        out: list[tuple[PersistHook, list[PersistEvent]]] = []
        for hook in self._on_persist:
            evs = [ev for ev in events if hook.wants(room, ev)]
            if evs:
                out.append((hook, evs))
        return out

    @staticmethod
    async def _hooks_write(conn: Conn, room: RoomData,
                           wanted: list[tuple[PersistHook, list[PersistEvent]]],
                           written: list[tuple[PersistHook, Any]]) -> None:
        """Each hook writes the events it wants; `written` collects what they return (also
        when a later hook fails, so that every hook that wrote is told how it ended)."""
        for hook, evs in wanted:
            written.append((hook, await hook.write(conn, room, evs)))

    @staticmethod
    def _hooks_finished(room: RoomData, written: list[tuple[PersistHook, Any]],
                        committed: bool) -> None:
        for hook, result in written:
            hook.finished(room, result, committed)
        written.clear()

    # ------------------------------------------------------------------ the remote door

    async def accept(self, room: RoomData, event_id: str, pdu: JsonDict, keys: KeyFetcher,
                     state_before: Mapping[StateKey, str] | None = None,
                     backfilled: bool = False) -> EventEntry:
        """Run the receipt checks on a PDU from elsewhere and store it as accepted, rejected
        or soft-failed. `state_before` (state ids at the event, e.g. from /state_ids) is needed
        only when its prev_events are unknown here. A `backfilled` event (history) is not
        checked against current state and does not change it (see PersistEvent).

        Raises:
            InvalidPdu: malformed or badly signed (nothing stored).
            MissingEvents: auth events (or prev events, without `state_before`) are unknown.
        """
        assert room.lock.locked()
        existing = (await self._cache.get_many([event_id])).get(event_id)
        if existing is not None and not existing.outlier:
            return existing
        pdu = await check_pdu(room.version, _in_room(room, pdu, event_id), event_id, keys)
        ev = PersistEvent(event_id, pdu, deoutlier=existing is not None, backfilled=backfilled)
        ev.rejected = await self._check_against_auth_events(room, pdu)
        prevs = event_refs(pdu.get("prev_events"))
        if state_before is None:
            known = await self._cache.get_many(prevs)
            missing = [p for p in prevs if p not in known or known[p].outlier]
            if missing:
                raise MissingEvents("prev_events", missing)
            before = await self._state_before(room, prevs)
        else:
            before = dict(state_before)
        if ev.rejected is None:
            try:
                check_auth(room.version, pdu, await self._pdus(before))
            except AuthError as e:
                ev.rejected = f"not allowed by the state before it: {e}"
        if ev.rejected is not None:
            ev.backfilled = False
            self._describe(room, ev)
            return await self._persist_planned(room, ev, None)
        if ("m.room.create", "") in room.state and not backfilled:  # else: joining
            try:
                check_auth(room.version, pdu, room.state_pdus())
            except AuthError:
                ev.soft_failed = True
        await self._plan_general(room, ev, before, prevs)
        return await self._persist_planned(room, ev, None)

    async def store_outlier(self, room: RoomData, event_id: str, pdu: JsonDict,
                            keys: KeyFetcher) -> EventEntry:
        """Keep an event known without its state; its own auth events must be known (or be
        stored first, in auth-chain order), and it is rejected if they do not allow it."""
        assert room.lock.locked()
        existing = (await self._cache.get_many([event_id])).get(event_id)
        if existing is not None:
            return existing
        pdu = await check_pdu(room.version, _in_room(room, pdu, event_id), event_id, keys)
        ev = PersistEvent(event_id, pdu, outlier=True)
        ev.rejected = await self._check_against_auth_events(room, pdu)
        self._describe(room, ev)
        return await self._persist_planned(room, ev, None)

    async def store_out_of_band(self, room: RoomData, event_id: str,
                                pdu: JsonDict) -> EventEntry:
        """A membership event of a room this server is not in (no create event in its
        current state): served, so the user sees it in sync, and the room's only state beside
        the other such events. Its signatures are the caller's to check; the auth rules cannot
        be, without the room's state."""
        assert room.lock.locked()
        if ("m.room.create", "") in room.state:
            raise ValueError("the server is in this room: not an out-of-band membership")
        existing = (await self._cache.get_many([event_id])).get(event_id)
        if existing is not None:
            return existing
        ev = PersistEvent(event_id, _in_room(room, pdu, event_id))
        before = {k: e.event_id for k, e in room.state.items()}
        await self._drop_extremities(room)
        await self._plan_general(room, ev, before, [])
        return await self._persist_planned(room, ev, None)

    async def forget_out_of_band(self, room: RoomData, server_name: str | None = None) -> None:
        """Before joining a room known only through out-of-band memberships, or left behind
        (`RoomData.left_behind`): its current state and extremities are dropped (the events
        stay), so the join's state is the room's. `server_name` (ours) allows the second case."""
        assert room.lock.locked()
        if ("m.room.create", "") in room.state and not (
                server_name is not None and room.left_behind(server_name)):
            raise ValueError("the server is in this room")
        await self._drop_extremities(room)
        async with self._db.connection() as conn:
            await self._rooms.clear_current_state(conn, room.room_id)
        room.state.clear()
        room.state_group, room.chain_len = 0, 0

    async def _drop_extremities(self, room: RoomData) -> None:
        async with self._db.connection() as conn:
            await self._rooms.clear_extremities(conn, room.room_id)
        room.extremities = []

    async def _check_against_auth_events(self, room: RoomData, pdu: JsonDict) -> str | None:
        """Why the event's own auth events do not allow it, or None. Raises MissingEvents if
        some of them are not known here."""
        auth_ids = event_refs(pdu.get("auth_events"))
        found = await self._cache.get_many(auth_ids)
        missing = [a for a in auth_ids if a not in found]
        if missing:
            raise MissingEvents("auth_events", missing)
        auth = list(found.values())
        if any(a.rejected is not None for a in auth):
            return "cites a rejected auth event"
        try:
            check_auth_events_list(room.version, pdu, [a.pdu for a in auth])
            state = {(a.type, a.state_key or ""): a.pdu for a in auth}
            if room.version.room_id_is_create_event_hash and pdu.get("type") != "m.room.create":
                create = room.state.get(("m.room.create", ""))
                if create is None:  # a room being joined: its create event is its id
                    create_id = create_event_id_for_room(room.room_id)
                    create = (await self._cache.get_many([create_id])).get(create_id)
                if create is not None:
                    state[("m.room.create", "")] = create.pdu
            check_auth(room.version, pdu, state)
        except AuthError as e:
            return f"not allowed by its auth events: {e}"
        return None

    # ------------------------------------------------------------------ state from the DAG

    async def _state_before(self, room: RoomData, prevs: list[str]) -> dict[StateKey, str]:
        """The state after each prev event, resolved when they differ."""
        entries = await self._cache.get_many(prevs)
        groups = sorted({e.state_group for e in entries.values() if e.state_group})
        if not groups:
            return {}
        maps = [dict(await self._groups.state_ids(g)) for g in groups]
        if all(m == maps[0] for m in maps[1:]):
            return maps[0]
        return await resolve_state(room.version, maps, self._fetcher)

    async def _pdus(self, state: Mapping[StateKey, str]) -> dict[StateKey, JsonDict]:
        got = await self._cache.get_many(list(state.values()))
        return {k: got[v].pdu for k, v in state.items() if v in got}

    async def _plan_general(self, room: RoomData, ev: PersistEvent,
                            before: dict[StateKey, str], prevs: list[str]) -> None:
        """State groups for an event whose state before is not simply current state, and the
        current state after it (the resolution of the new forward extremities)."""
        self._describe(room, ev)
        ev.group_before = await self._group_for(room, before, ev)
        after = dict(before)
        state_key = ev.state_key
        if state_key is not None:
            after[(ev.pdu["type"], state_key)] = ev.event_id
            ev.new_state = after
            ev.delta, ev.chain_len, ev.prev_group = ({(ev.pdu["type"], state_key): ev.event_id},
                                                      self._chain_of(ev, room) + 1,
                                                      ev.group_before)
            if ev.chain_len >= SNAPSHOT_EVERY or not ev.group_before:  # no group to chain to
                ev.delta, ev.chain_len, ev.prev_group = after, 0, None
        else:
            ev.group = ev.group_before
            ev.chain_len = self._chain_of(ev, room)
        if ev.soft_failed or ev.backfilled:
            return
        # Current state: the event replaces its prev events among the extremities.
        extremities = [e for e in room.extremities if e not in set(prevs)] + [ev.event_id]
        if len(extremities) == 1:
            new_current = after
        else:
            others = await self._cache.get_many([e for e in extremities if e != ev.event_id])
            maps = [after]
            for o in others.values():
                maps.append(dict(await self._groups.state_ids(o.state_group))
                            if o.state_group else {})
            new_current = await resolve_state(room.version, maps,
                                              _Fetcher(self._cache, {ev.event_id: ev.pdu}))
        old = {k: e.event_id for k, e in room.state.items()}
        delta: dict[StateKey, str | None] = {k: v for k, v in new_current.items()
                                              if old.get(k) != v}
        for k in old:
            if k not in new_current:
                delta[k] = None
        own = (ev.pdu["type"], state_key) if state_key is not None else None
        if own is not None and delta.get(own) == ev.event_id:
            del delta[own]
            ev.prev_state = room.state.get(own)
        ev.current_delta = delta or None
        ev.current_is_after = new_current == after
        ev.current_own = own is None or new_current.get(own) == ev.event_id
        if ev.current_delta:
            needed = [v for v in ev.current_delta.values() if v is not None]
            await self._cache.get_many(needed)  # warm: _apply reads them synchronously

    def _chain_of(self, ev: PersistEvent, room: RoomData) -> int:
        if ev.before_group_row is not None:
            return ev.before_group_row[2]
        return room.chain_len if ev.group_before == room.state_group else SNAPSHOT_EVERY

    async def _group_for(self, room: RoomData, state: dict[StateKey, str],
                         ev: PersistEvent) -> int:
        """A state group holding exactly `state`: the current one if equal, else a new one
        (a delta over the current group when nothing was removed, else a snapshot)."""
        if not state:
            return 0
        current = {k: e.event_id for k, e in room.state.items()}
        if state == current and room.state_group:
            return room.state_group
        group = await self._group_ids.take()
        if room.state_group and all(k in state for k in current) \
                and room.chain_len + 1 < SNAPSHOT_EVERY:
            delta = {k: v for k, v in state.items() if current.get(k) != v}
            ev.before_group_row = (group, room.state_group, room.chain_len + 1, delta)
        else:
            ev.before_group_row = (group, None, 0, dict(state))
        self._groups.remember(group, dict(state))
        return group

    # ------------------------------------------------------------------ writing

    async def _insert_plain(self, conn: Conn, room: RoomData, ev: PersistEvent) -> None:
        pdu = ev.pdu
        await self._events.insert_plain_event(
            conn, stream_ordering=ev.pos, event_id=ev.event_id, room_id=room.room_id,
            type=pdu["type"], sender=pdu["sender"], depth=pdu["depth"],
            origin_server_ts=pdu["origin_server_ts"], state_group=ev.group,
            relates_to=ev.relates_to, rel_type=ev.rel_type, json=orjson.dumps(pdu).decode(),
            prev_events=event_refs(pdu.get("prev_events")),
            auth_events=event_refs(pdu.get("auth_events")),
            txn=ev.txn, now_ms=int(time.time() * 1000))

    async def _write_all(self, conn: Conn, room: RoomData, ev: PersistEvent) -> None:
        """The event's rows (persist hooks are the caller's)."""
        if self._plain_shape(ev):
            await self._insert_plain(conn, room, ev)
            return
        if ev.new_room is not None:
            await self._rooms.insert_room(
                conn, room.room_id, room.version.identifier, ev.new_room[0], ev.new_room[1],
                int(time.time() * 1000),
            )
        if ev.before_group_row is not None:
            g, prev, chain, entries = ev.before_group_row
            await self._groups_store.insert_group(conn, g, room.room_id, prev, chain, entries)
        if ev.new_state is not None and ev.group and ev.group != ev.group_before:
            await self._groups_store.insert_group(
                conn, ev.group, room.room_id, ev.prev_group, ev.chain_len, ev.delta)
        await self._write(conn, room, ev)

    async def _write(self, conn: Conn, room: RoomData, ev: PersistEvent) -> None:
        pdu = ev.pdu
        state_key = ev.state_key
        has_state = ev.rejected is None and not ev.outlier
        await self._events.insert_event(
            conn, stream_ordering=ev.pos, event_id=ev.event_id, room_id=room.room_id,
            type=pdu["type"], state_key=state_key, sender=pdu["sender"], depth=pdu["depth"],
            origin_server_ts=pdu["origin_server_ts"],
            state_group=(ev.group or None) if has_state else None,
            state_group_before=(ev.group_before or None) if has_state else None,
            relates_to=ev.relates_to, rel_type=ev.rel_type,
            json=orjson.dumps(pdu).decode(), prev_events=event_refs(pdu.get("prev_events")),
            auth_events=event_refs(pdu.get("auth_events")), outlier=ev.outlier,
            rejected=ev.rejected, soft_failed=ev.soft_failed, replace=ev.deoutlier,
            backfilled=ev.backfilled,
        )
        if not ev.served:
            return
        await self._events.set_forward_extremities(
            conn, room.room_id, event_refs(pdu.get("prev_events")), ev.event_id
        )
        if state_key is not None:
            membership = None
            if pdu["type"] == "m.room.member":
                membership = pdu["content"]["membership"]
                await self._rooms.insert_membership(
                    conn, ev.event_id, room.room_id, state_key, pdu["sender"], membership,
                    ev.pos)
            if ev.current_own and (ev.current_delta is None
                                   or (pdu["type"], state_key) not in ev.current_delta):
                await self._rooms.upsert_current_state(
                    conn, room.room_id, pdu["type"], state_key, ev.event_id, membership)
        if ev.current_delta:
            for (t, k), eid in ev.current_delta.items():
                if eid is None:
                    await self._rooms.delete_current_state(conn, room.room_id, t, k)
                    continue
                e = self._cache.peek(eid)
                m = e.membership if e is not None else None
                await self._rooms.upsert_current_state(conn, room.room_id, t, k, eid, m)
        if ev.txn is not None:
            await self._rooms.insert_txn(conn, ev.txn[0], ev.txn[1], ev.txn[2], ev.event_id,
                                         int(time.time() * 1000))
        if ev.redacts is not None:
            await self._events.mark_redacted(conn, ev.redacts, ev.event_id)

    def abort(self, batch: Batch) -> None:
        """Give back the positions of a batch that will not be committed."""
        for pos in batch.positions:
            self.stream.finish(pos)
        batch.positions.clear()

    async def commit(self, room: RoomData, batch: Batch,
                     extra: Callable[[Conn], Awaitable[None]] | None = None) -> None:
        """Write a batch (and `extra`, e.g. the room's alias) in one transaction, then publish
        its events to the caches and wake their readers. On failure nothing is written and
        the caller must undo the batch in memory (`RoomData.restore` or dropping the room)."""
        written: list[tuple[PersistHook, Any]] = []
        committed = False
        started = time.perf_counter()
        wanted = self._wanted(room, batch.events)
        messages = extra is None and bool(batch.events) and all(
            self._plain_shape(ev) for ev in batch.events)
        try:
            if messages and not wanted:
                # A group of messages is ONE statement, hence atomic without BEGIN/COMMIT.
                async with self._db.connection() as conn:
                    await self._events.insert_plain_events(conn, room.room_id, [
                        self._plain_row(ev) for ev in batch.events])
            elif messages:
                # Messages a hook wants: the same statement, and the hooks' writes for the
                # whole batch, in one transaction.
                async with self._db.transaction() as conn:
                    await self._events.insert_plain_events(conn, room.room_id, [
                        self._plain_row(ev) for ev in batch.events])
                    await self._hooks_write(conn, room, wanted, written)
            else:
                async with self._db.transaction() as conn:
                    for ev in batch.events:
                        await self._write_all(conn, room, ev)
                    await self._hooks_write(conn, room, wanted, written)
                    if extra is not None:
                        await extra(conn)
            committed = True
            self._hooks_finished(room, written, True)
            for entry in batch.entries:
                self._publish(room, entry)
        except BaseException:
            if not committed:
                self._hooks_finished(room, written, False)
            self.abort(batch)
            raise
        batch.positions.clear()
        if self.on_written is not None:
            self.on_written(len(batch.events), time.perf_counter() - started)
        for ev, entry in zip(batch.events, batch.entries, strict=True):
            self._finish(room, entry, ev)

    def _plain_row(self, ev: PersistEvent) -> tuple[object, ...]:
        pdu = ev.pdu
        return (ev.pos, ev.event_id, pdu["type"], pdu["sender"], pdu["depth"],
                pdu["origin_server_ts"], ev.group, ev.relates_to, ev.rel_type,
                orjson.dumps(pdu).decode(), event_refs(pdu.get("prev_events")),
                event_refs(pdu.get("auth_events")), ev.txn)

    # ------------------------------------------------------------------ memory

    def _apply(self, room: RoomData, ev: PersistEvent, deferred: bool = False) -> EventEntry:
        pdu = ev.pdu
        client = client_format(ev.event_id, pdu, room.room_id)
        if ev.redacts is not None:
            client["redacts"] = ev.redacts
        entry = EventEntry(
            event_id=ev.event_id, room_id=room.room_id, type=pdu["type"],
            state_key=ev.state_key, sender=pdu["sender"], depth=pdu["depth"],
            origin_server_ts=pdu["origin_server_ts"], stream_ordering=ev.pos,
            state_group=ev.group if ev.rejected is None and not ev.outlier else 0,
            state_group_before=ev.group_before, pdu=pdu, client=client, txn=ev.txn,
            rejected=ev.rejected, outlier=ev.outlier, soft_failed=ev.soft_failed,
        )
        if ev.prev_state is not None:
            entry.extra_unsigned = {
                "prev_content": ev.prev_state.pdu.get("content", {}),
                "replaces_state": ev.prev_state.event_id,
                "prev_sender": ev.prev_state.sender,
            }
        if ev.new_state is not None and ev.rejected is None and not ev.outlier:
            self._groups.remember(ev.group, ev.new_state)
        if not ev.served:
            self._cache.put(entry)
            return entry
        room.append(entry)
        prev = set(event_refs(pdu.get("prev_events")))
        room.extremities = [e for e in room.extremities if e not in prev] + [ev.event_id]
        room.depth = max(room.depth, pdu["depth"])
        if ev.current_delta:
            for key, eid in ev.current_delta.items():
                if eid is None:
                    room.state.pop(key, None)
                else:
                    e = self._cache.peek(eid)
                    if e is not None:
                        room.state[key] = e
        if ev.state_key is not None and ev.current_own and (
                ev.current_delta is None or (entry.type, ev.state_key) not in ev.current_delta):
            room.state[(entry.type, ev.state_key)] = entry
        if ev.current_is_after:
            room.state_group = ev.group
            room.chain_len = ev.chain_len
        else:  # current state is a resolution no group holds yet; the next event makes one
            room.state_group, room.chain_len = 0, 0
        if not deferred:
            self._publish(room, entry, ev.current_delta, ev.current_own)
        if ev.redacts is not None:
            target = self._cache.peek(ev.redacts)
            if target is not None and target.room_id == room.room_id:
                mark_redacted(target, entry, room.version)
        return entry

    def _publish(self, room: RoomData, entry: EventEntry,
                 current_delta: Mapping[StateKey, str | None] | None = None,
                 current_own: bool = True) -> None:
        """Make a committed event findable by id and update the members index, for the event
        itself and for memberships a merge changed (state resolution picked another branch's
        member event, or none)."""
        self._cache.put(entry)
        if entry.type == "m.room.member" and entry.membership is not None and current_own:
            assert entry.state_key is not None
            self._members.update(entry.state_key, room.room_id,
                                 Membership(entry.membership, entry.stream_ordering,
                                            entry.event_id))
        for (etype, user_id), eid in (current_delta or {}).items():
            if etype != "m.room.member" or eid == entry.event_id:
                continue
            member = self._cache.peek(eid) if eid is not None else None
            if member is not None and member.membership is not None:
                # Shown to sync as a change at this event's position, so it is noticed.
                self._members.update(user_id, room.room_id, Membership(
                    member.membership, entry.stream_ordering, member.event_id))
            else:
                self._members.update(user_id, room.room_id,
                                     Membership("leave", entry.stream_ordering, entry.event_id))

    def _finish(self, room: RoomData, entry: EventEntry, ev: PersistEvent) -> None:
        """The event is committed and in memory: make its position visible and wake readers."""
        if not ev.served:
            return
        users = room.joined_members()
        if entry.type == "m.room.member" and entry.state_key is not None:
            users.append(entry.state_key)
        if ev.current_delta:  # members a merge removed learn it too
            users += [k for (t, k) in ev.current_delta if t == "m.room.member"]
        self.stream.finish(ev.pos, wake=users)
        if entry.type == "m.room.member" and entry.state_key is not None and ev.current_own \
                and entry.membership is not None:
            for hook in self._on_membership:
                hook(room, entry.state_key, entry.membership)


__all__ = ["Batch", "MembershipHook", "MissingEvents", "PersistEvent", "PersistHook",
           "RoomWriter", "entry_from_row"]
