"""What a server admin reads of a room's events regardless of membership (Synapse's rooms admin
API: `forward_extremities`, `context/{eventId}`, `timestamp_to_event`; and `fetch_event`), and
the clearing of extra forward extremities.

Forward extremities: the engine's rule is that a room's current state is the resolution of the
states after its forward extremities, and that a local event built on all of them starts from
that current state (homeserver/rooms/writer.py). Synapse's DELETE keeps only the latest
extremity and lets the next event's state come from that one alone, which changes the room's
state whenever the others carried state the latest lacks. Here the extra extremities are
deleted only when the state after the latest one *is* the current state (the usual case: the
branches differ only in messages), so nothing about the room's state changes and the invariant
holds; otherwise the request is refused (400) and nothing is deleted. It runs under the room's
writer lock, and the in-memory copy of the room is updated with the database.
"""

from __future__ import annotations

import logging

from homeserver.admin.store import AdminStore
from homeserver.errors import Codes, MatrixError, invalid_param, not_found
from homeserver.events.filter import EventFilter
from homeserver.rooms.reader import RoomReader
from homeserver.rooms.service import RoomService
from homeserver.rooms.state import EventCache, StateGroups
from homeserver.rooms.timestamps import TimestampStore
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester, is_valid_event_id, is_valid_room_id

log = logging.getLogger(__name__)


class RoomEventsAdmin:
    def __init__(self, db: Database, store: AdminStore, rooms: RoomService, reader: RoomReader,
                 cache: EventCache, groups: StateGroups,
                 timestamps: TimestampStore | None = None) -> None:
        self._db = db
        self._store = store
        self._rooms = rooms
        self._reader = reader
        self._cache = cache
        self._groups = groups
        self._timestamps = timestamps if timestamps is not None else TimestampStore()

    async def _room_id(self, room_id: str) -> str:
        if not is_valid_room_id(room_id):
            raise invalid_param("Invalid room id")
        await self._rooms.get_room(room_id)  # 404 for a room this server does not hold
        return room_id

    # ------------------------------------------------------------------ forward extremities

    async def forward_extremities(self, room_id_or_alias: str) -> list[JsonDict]:
        room_id = await self._rooms.resolve_room(room_id_or_alias)
        await self._rooms.get_room(room_id)
        async with self._db.connection() as conn:
            rows = await self._store.forward_extremities(conn, room_id)
        # received_ts: Parley does not record when an event arrived (Synapse's may be null).
        return [{"event_id": r["event_id"], "state_group": int(r["state_group"]),
                 "depth": int(r["depth"]), "received_ts": None} for r in rows]

    async def delete_extra_extremities(self, room_id_or_alias: str) -> int:
        """Keep only the latest forward extremity (by stream ordering, as Synapse) when that
        changes nothing about the room's state (see the module docstring); the number
        deleted."""
        room_id = await self._rooms.resolve_room(room_id_or_alias)
        async with self._rooms.locked(room_id) as room:
            async with self._db.connection() as conn:
                rows = await self._store.forward_extremities(conn, room_id)
            if len(rows) <= 1:
                return 0
            keep = rows[-1]
            after_keep = await self._groups.state_ids(int(keep["state_group"]))
            current = {k: e.event_id for k, e in room.state.items()}
            if after_keep != current:
                raise MatrixError(
                    400, Codes.UNKNOWN,
                    "The room's forward extremities do not agree on its state: keeping only "
                    "the latest would change the room's state, so none were deleted")
            async with self._db.transaction() as conn:
                deleted = await self._store.delete_extremities_but(conn, room_id,
                                                                   keep["event_id"])
            room.extremities = [keep["event_id"]]
        log.info("deleted %d extra forward extremities of %s", deleted, room_id)
        return deleted

    # ------------------------------------------------------------------ events

    async def context(self, requester: Requester, room_id: str, event_id: str, limit: int,
                      flt: EventFilter) -> JsonDict:
        if not is_valid_event_id(event_id):
            raise invalid_param("Invalid event id")
        room = await self._rooms.get_room(await self._room_id(room_id))
        return await self._reader.context(requester, room, event_id, limit, flt, as_admin=True)

    async def timestamp_to_event(self, room_id: str, ts: int, forwards: bool) -> JsonDict:
        """The first event at or after `ts` (forwards) or the last at or before it, of the
        events this server holds, whoever may see them."""
        room_id = await self._room_id(room_id)
        async with self._db.connection() as conn:
            rows = await self._timestamps.near(conn, room_id, ts, None, forwards, 1)
        if not rows:
            raise not_found(f"No event found {'after' if forwards else 'before'} {ts}")
        return {"event_id": rows[0]["event_id"],
                "origin_server_ts": int(rows[0]["origin_server_ts"])}

    async def fetch_event(self, event_id: str) -> JsonDict:
        """The event as stored (its PDU, redacted or not: the content is kept), with
        `event_id` and what the server adds in `unsigned`; 404 when unknown or rejected (as
        Synapse, which does not serve rejected events here)."""
        if not is_valid_event_id(event_id):
            raise invalid_param("Invalid event id")
        ev = (await self._cache.get_many([event_id])).get(event_id)
        if ev is None or ev.rejected is not None:
            raise not_found("Event not found")
        out: JsonDict = {**ev.pdu, "event_id": ev.event_id}
        unsigned: JsonDict = dict(out.get("unsigned") or {})
        unsigned.update(ev.extra_unsigned or {})
        if ev.redacted_by is not None:
            unsigned["redacted_because"] = ev.redacted_because or {"event_id": ev.redacted_by}
            unsigned["redacted_by"] = ev.redacted_by
        if unsigned:
            out["unsigned"] = unsigned
        return out
