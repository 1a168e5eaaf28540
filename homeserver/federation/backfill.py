"""Using /backfill: when a local user pages /messages back past what this server has of a
room it joined over federation, the history before is fetched from a server in the room.

Where the history stops are the backward extremities (prev events not in the DAG here). They
are asked for with GET /backfill at the room's other servers, in turn, until one answers.
The PDUs are accepted oldest first through `RoomWriter.accept(backfilled=True)`: the full
receipt checks, state at their place in the DAG (the state before the oldest is asked for with
/state at its missing prev events, as for a gap in a transaction), but no change to current
state, extremities or the events stream. /messages then serves them in topological order.

A room whose backfill brought nothing new is not asked again for a minute, so a user paging
at the start of the known history does not turn into a request per page. Each request asks
for BACKFILL_LIMIT events, however few the page needs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from homeserver.events.checks import InvalidPdu, KeyFetcher
from homeserver.events.format import event_ids_of
from homeserver.events.hashing import compute_event_id
from homeserver.federation.inbound import Inbound
from homeserver.federation.serving import servers_of
from homeserver.federation.store import FederationStore
from homeserver.federation.transport import RemoteError, Transport, Unreachable, fed_path
from homeserver.rooms.service import RoomService
from homeserver.rooms.state import EventCache, RoomData, StateKey
from homeserver.rooms.writer import MissingEvents, RoomWriter
from homeserver.storage.database import Database
from homeserver.types import JsonDict

log = logging.getLogger(__name__)

MAX_EXTREMITIES = 20  # the spec's /backfill takes a few `v`; Parley serves at most 20
NOTHING_NEW_PAUSE_S = 60.0
MAX_SERVERS = 5
# Events asked for per /backfill, whatever the page wants (as Synapse asks): enough to reach
# back to events this server holds with state (the room's state from the join is kept as
# outliers, which the answer then brings into the DAG), so that the oldest event's state comes
# from the DAG rather than from a /state_ids request.
BACKFILL_LIMIT = 100


class Backfiller:
    def __init__(self, server_name: str, db: Database, store: FederationStore,
                 rooms: RoomService, writer: RoomWriter, cache: EventCache, keys: KeyFetcher,
                 transport: Transport, inbound: Inbound) -> None:
        self.server_name = server_name
        self._db = db
        self._store = store
        self._rooms = rooms
        self._writer = writer
        self._cache = cache
        self._keys = keys
        self._t = transport
        self._inbound = inbound
        self._quiet_until: dict[str, float] = {}

    async def backfill(self, room: RoomData, below_depth: int, limit: int) -> bool:
        """Fetch up to `limit` events of history before `below_depth`; whether any was
        added. Failures are logged, never raised: /messages answers with what it has."""
        room_id = room.room_id
        if self._quiet_until.get(room_id, 0.0) > time.monotonic():
            return False
        async with self._db.connection() as conn:
            extremities = await self._store.backward_extremities(conn, room_id, below_depth,
                                                                  MAX_EXTREMITIES)
        servers = [s for s in servers_of(room) if s != self.server_name][:MAX_SERVERS]
        added = False
        if extremities:
            for server in servers:
                try:
                    resp = await self._t.request(server, "GET", fed_path(
                        "/_matrix/federation/v1/backfill/%s", room_id),
                        query={"v": extremities, "limit": str(BACKFILL_LIMIT)})
                except (RemoteError, Unreachable) as e:
                    log.info("backfill of %s from %s failed: %s", room_id, server, e)
                    continue
                added = await self._accept_all(server, room_id, resp.get("pdus"))
                break
        if not added:
            self._quiet_until[room_id] = time.monotonic() + NOTHING_NEW_PAUSE_S
        return added

    async def _accept_all(self, origin: str, room_id: str, pdus: Any) -> bool:
        if not isinstance(pdus, list):
            return False
        room = await self._rooms.get_room(room_id)
        found: dict[str, JsonDict] = {}
        for p in pdus[:100]:
            # (a v12 create event has no room_id: the writer checks that it is this room's)
            if isinstance(p, dict) and p.get("room_id", room_id) == room_id and isinstance(
                    p.get("depth"), int):
                try:
                    found[compute_event_id(p, room.version)] = p
                except ValueError:
                    continue
        known = await self._cache.get_many(list(found))
        todo = sorted(((eid, p) for eid, p in found.items()
                       if eid not in known or known[eid].outlier),
                      key=lambda x: (x[1]["depth"], x[0]))
        added = False
        for eid, p in todo:
            try:
                entry = await self._accept(origin, room_id, eid, p)
            except (InvalidPdu, MissingEvents, RemoteError, Unreachable) as e:
                log.info("backfilled event %s not accepted: %s", eid, e)
                continue
            added = added or entry.rejected is None
        return added

    async def _accept(self, origin: str, room_id: str, event_id: str, pdu: JsonDict) -> Any:
        state_before: dict[StateKey, str] | None = None
        for _ in range(3):
            async with self._rooms.locked(room_id) as room:
                try:
                    return await self._writer.accept(room, event_id, pdu, self._keys,
                                                     state_before=state_before,
                                                     backfilled=True)
                except MissingEvents as e:
                    missing = e
            if missing.kind == "auth_events":
                await self._inbound.fetch_auth(origin, room_id, event_id, pdu)
            else:
                state_before = await self._inbound.state_at(
                    origin, room_id, event_ids_of(pdu.get("prev_events")))
        raise missing

