"""The single writer of room events: auth against current state, one transaction, then wake.

Callers hold `room.lock` (RoomService does, from building the event to persisting it) so that
prev_events, depth and state are always read and written by one task per room.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from homeserver.events.auth import check_auth
from homeserver.events.format import auth_event_ids, prev_event_ids
from homeserver.events.model import EventEntry, client_format, mark_redacted, relation_of
from homeserver.events.store import EventStore, StateGroupStore
from homeserver.rooms.members import Membership, MembershipIndex
from homeserver.rooms.state import SNAPSHOT_EVERY, EventCache, RoomData, StateGroups
from homeserver.rooms.store import RoomStore
from homeserver.storage.database import Conn, Database
from homeserver.storage.streams import StreamIdGen
from homeserver.sync.notifier import Notifier
from homeserver.types import JsonDict


@dataclass(slots=True)
class Batch:
    """Events of a room being created: applied in memory as they are built (each is checked
    against the state the previous ones made) and written in ONE transaction by
    `RoomWriter.commit`, so a createRoom that fails half-way leaves no rows behind."""

    writes: list[Callable[[Conn], Awaitable[None]]] = field(default_factory=list)
    entries: list[EventEntry] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


# (room, user_id, new membership): runs after the change is in memory; must not block.
MembershipHook = Callable[[RoomData, str, str], None]


class RoomWriter:
    def __init__(
        self, db: Database, events: EventStore, groups_store: StateGroupStore,
        rooms: RoomStore, cache: EventCache, groups: StateGroups, members: MembershipIndex,
        stream: StreamIdGen, notifier: Notifier,
        on_membership: list[MembershipHook] | None = None,
    ) -> None:
        self._db = db
        self._events = events
        self._groups_store = groups_store
        self._rooms = rooms
        self._cache = cache
        self._groups = groups
        self._members = members
        self.stream = stream
        self._notifier = notifier
        # Called after a committed membership change is applied in memory (e.g. typing drops
        # a user who left); the list is the caller's, so hooks can be added after wiring.
        self._on_membership = on_membership if on_membership is not None else []
        # Positions finished but maybe not yet visible (an earlier one still in flight): their
        # rooms' members are woken once `current` covers them, or a parked sync misses them.
        self._unwoken: dict[int, list[str]] = {}

    async def persist(
        self, room: RoomData, event_id: str, pdu: JsonDict,
        txn: tuple[str, str, str] | None = None, new_room: tuple[str, bool] | None = None,
        batch: Batch | None = None,
    ) -> EventEntry:
        """Check auth, write the event and its state in one transaction, update caches, wake.

        `new_room` = (creator, is_public) inserts the rooms row in the same transaction as the
        create event. Raises AuthError (nothing stored) if the event is not allowed.
        """
        assert room.lock.locked()
        check_auth(room.version, pdu, room.state_pdus())
        state_key = pdu.get("state_key")
        etype = pdu["type"]
        content = pdu.get("content", {})
        relates_to, rel_type = relation_of(content)
        redacts = content.get("redacts") if etype == "m.room.redaction" else None
        if etype == "m.room.redaction" and not isinstance(redacts, str):
            redacts = pdu.get("redacts")

        group_before = room.state_group
        group, chain_len = group_before, room.chain_len
        new_state: dict[tuple[str, str], str] | None = None
        delta: dict[tuple[str, str], str] = {}
        prev_state = None
        prev_group: int | None = None
        if state_key is not None:
            key = (etype, state_key)
            prev_state = room.state.get(key)
            full = {k: e.event_id for k, e in room.state.items()}
            full[key] = event_id
            new_state = full
            group = self._groups.allocate()
            if group_before == 0 or room.chain_len + 1 >= SNAPSHOT_EVERY:
                delta, chain_len, prev_group = full, 0, None
            else:
                delta, chain_len, prev_group = {key: event_id}, room.chain_len + 1, group_before

        pos = self.stream.allocate()
        if batch is not None:
            args = (room, event_id, pdu, pos, group, group_before, chain_len, new_state, delta,
                    prev_group, relates_to, rel_type, txn, redacts, new_room)

            async def write(conn: Conn) -> None:
                await self._write_all(conn, *args)

            batch.writes.append(write)
            batch.positions.append(pos)
            entry = self._apply(room, event_id, pdu, pos, group, group_before, chain_len,
                                new_state, prev_state, txn, redacts, deferred=True)
            batch.entries.append(entry)
            return entry
        try:
            if new_state is None and redacts is None and new_room is None:
                async with self._db.connection() as conn:
                    await self._insert_plain(conn, room, event_id, pdu, pos, group,
                                             relates_to, rel_type, txn)
            else:
                await self._write_transaction(room, event_id, pdu, pos, group, group_before,
                                              chain_len, new_state, delta, prev_group,
                                              relates_to, rel_type, txn, redacts, new_room)
            entry = self._apply(room, event_id, pdu, pos, group, group_before, chain_len,
                                new_state, prev_state, txn, redacts)
        finally:
            self.stream.finish(pos)
            self._wake_visible()
        self._wake(room, entry)
        return entry

    async def _write_transaction(
        self, room: RoomData, event_id: str, pdu: JsonDict, pos: int, group: int,
        group_before: int, chain_len: int, new_state: dict[tuple[str, str], str] | None,
        delta: dict[tuple[str, str], str], prev_group: int | None, relates_to: str | None,
        rel_type: str | None, txn: tuple[str, str, str] | None, redacts: str | None,
        new_room: tuple[str, bool] | None,
    ) -> None:
        async with self._db.transaction() as conn:
            await self._write_all(conn, room, event_id, pdu, pos, group, group_before,
                                  chain_len, new_state, delta, prev_group, relates_to, rel_type,
                                  txn, redacts, new_room)

    async def _insert_plain(
        self, conn: Conn, room: RoomData, event_id: str, pdu: JsonDict, pos: int, group: int,
        relates_to: str | None, rel_type: str | None, txn: tuple[str, str, str] | None,
    ) -> None:
        await self._events.insert_plain_event(
            conn, stream_ordering=pos, event_id=event_id, room_id=room.room_id,
            type=pdu["type"], sender=pdu["sender"], depth=pdu["depth"],
            origin_server_ts=pdu["origin_server_ts"], state_group=group,
            relates_to=relates_to, rel_type=rel_type, json=orjson.dumps(pdu).decode(),
            prev_events=prev_event_ids(pdu), auth_events=auth_event_ids(pdu),
            txn=txn, now_ms=int(time.time() * 1000))

    async def _write_all(
        self, conn: Conn, room: RoomData, event_id: str, pdu: JsonDict, pos: int, group: int,
        group_before: int, chain_len: int, new_state: dict[tuple[str, str], str] | None,
        delta: dict[tuple[str, str], str], prev_group: int | None, relates_to: str | None,
        rel_type: str | None, txn: tuple[str, str, str] | None, redacts: str | None,
        new_room: tuple[str, bool] | None,
    ) -> None:
        if new_state is None and redacts is None and new_room is None:
            await self._insert_plain(conn, room, event_id, pdu, pos, group, relates_to,
                                     rel_type, txn)
            return
        if new_room is not None:
            await self._rooms.insert_room(
                conn, room.room_id, room.version.identifier, new_room[0], new_room[1],
                int(time.time() * 1000),
            )
        if new_state is not None:
            await self._groups_store.insert_group(
                conn, group, room.room_id, prev_group, chain_len, delta
            )
        await self._write(conn, room, event_id, pdu, pos, group, group_before,
                          relates_to, rel_type, txn, redacts)

    def abort(self, batch: Batch) -> None:
        """Give back the positions of a batch that will not be committed."""
        for pos in batch.positions:
            self.stream.finish(pos)
        batch.positions.clear()
        self._wake_visible()

    async def commit(self, room: RoomData, batch: Batch,
                     extra: Callable[[Conn], Awaitable[None]] | None = None) -> None:
        """Write a batch (and `extra`, e.g. the room's alias) in one transaction, then publish
        its events to the caches and wake their readers. On failure nothing is written and
        the caller must drop the in-memory room."""
        try:
            async with self._db.transaction() as conn:
                for write in batch.writes:
                    await write(conn)
                if extra is not None:
                    await extra(conn)
            for entry in batch.entries:
                self._publish(room, entry)
        finally:
            self.abort(batch)
        for entry in batch.entries:
            self._wake(room, entry)

    async def _write(
        self, conn: Conn, room: RoomData, event_id: str, pdu: JsonDict, pos: int, group: int,
        group_before: int, relates_to: str | None, rel_type: str | None,
        txn: tuple[str, str, str] | None, redacts: str | None,
    ) -> None:
        state_key = pdu.get("state_key")
        await self._events.insert_event(
            conn, stream_ordering=pos, event_id=event_id, room_id=room.room_id,
            type=pdu["type"], state_key=state_key, sender=pdu["sender"], depth=pdu["depth"],
            origin_server_ts=pdu["origin_server_ts"], state_group=group,
            state_group_before=group_before or None, relates_to=relates_to, rel_type=rel_type,
            json=orjson.dumps(pdu).decode(), prev_events=prev_event_ids(pdu),
            auth_events=auth_event_ids(pdu),
        )
        await self._events.set_forward_extremities(
            conn, room.room_id, prev_event_ids(pdu), event_id
        )
        if state_key is not None:
            membership = None
            if pdu["type"] == "m.room.member":
                membership = pdu["content"]["membership"]
                await self._rooms.insert_membership(
                    conn, event_id, room.room_id, state_key, pdu["sender"], membership, pos
                )
            await self._rooms.upsert_current_state(
                conn, room.room_id, pdu["type"], state_key, event_id, membership
            )
        if txn is not None:
            await self._rooms.insert_txn(conn, txn[0], txn[1], txn[2], event_id,
                                         int(time.time() * 1000))
        if redacts is not None:
            await self._events.mark_redacted(conn, redacts, event_id)

    def _apply(
        self, room: RoomData, event_id: str, pdu: JsonDict, pos: int, group: int,
        group_before: int, chain_len: int, new_state: dict[tuple[str, str], str] | None,
        prev_state: EventEntry | None, txn: tuple[str, str, str] | None, redacts: str | None,
        deferred: bool = False,
    ) -> EventEntry:
        client = client_format(event_id, pdu, room.room_id)
        if redacts is not None:
            client["redacts"] = redacts
        entry = EventEntry(
            event_id=event_id, room_id=room.room_id, type=pdu["type"],
            state_key=pdu.get("state_key"), sender=pdu["sender"], depth=pdu["depth"],
            origin_server_ts=pdu["origin_server_ts"], stream_ordering=pos, state_group=group,
            state_group_before=group_before, pdu=pdu, client=client, txn=txn,
        )
        if prev_state is not None:
            entry.extra_unsigned = {
                "prev_content": prev_state.pdu.get("content", {}),
                "replaces_state": prev_state.event_id,
                "prev_sender": prev_state.sender,
            }
        room.append(entry)
        prev = set(prev_event_ids(pdu))
        room.extremities = [e for e in room.extremities if e not in prev] + [event_id]
        room.depth = max(room.depth, pdu["depth"])
        if new_state is not None:
            assert entry.state_key is not None
            room.state[(entry.type, entry.state_key)] = entry
            room.state_group = group
            room.chain_len = chain_len
            self._groups.remember(group, new_state)
        if not deferred:
            self._publish(room, entry)
        if redacts is not None:
            target = self._cache.peek(redacts)
            if target is not None and target.room_id == room.room_id:
                mark_redacted(target, entry, room.version)
        return entry

    def _publish(self, room: RoomData, entry: EventEntry) -> None:
        """Make a committed event findable by id and update the members index."""
        self._cache.put(entry)
        if entry.type == "m.room.member" and entry.membership is not None:
            assert entry.state_key is not None
            self._members.update(entry.state_key, room.room_id,
                                 Membership(entry.membership, entry.stream_ordering,
                                            entry.event_id))

    def _wake(self, room: RoomData, entry: EventEntry) -> None:
        users = room.joined_members()
        if entry.type == "m.room.member" and entry.state_key is not None:
            users.append(entry.state_key)
        self._unwoken.setdefault(entry.stream_ordering, []).extend(users)
        self._wake_visible()
        if entry.type == "m.room.member" and entry.state_key is not None \
                and entry.membership is not None:
            for hook in self._on_membership:
                hook(room, entry.state_key, entry.membership)

    def _wake_visible(self) -> None:
        """Wake the users of every woken-for event that `current` now covers."""
        current = self.stream.current
        ready = [p for p in self._unwoken if p <= current]
        users: set[str] = set()
        for p in ready:
            users.update(self._unwoken.pop(p))
        if users:
            self._notifier.notify_users(users)
