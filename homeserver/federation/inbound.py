"""Inbound transactions (PUT /_matrix/federation/v1/send/{txnId}).

A transaction is processed once per (origin, txn id): the answer is saved with it and a retry
gets the same answer. Transactions of one origin are processed one at a time, PDUs in the
order sent, each through `RoomWriter.accept` (the spec's receipt checks). A PDU citing
events unknown here gets them fetched, outside the room's lock so local writes go on:
- unknown auth events: the event's auth chain (/event_auth), stored as outliers;
- unknown prev events: /get_missing_events back to our forward extremities, each accepted in
  turn; if a gap remains, the state before the PDU is asked for (/state at each missing prev
  event, plus the event itself) and the PDU is accepted with it.
A PDU from a server the room's server ACL denies is refused (an error for it in the answer).
EDUs follow the PDUs, in order, through `edus` (homeserver/federation/edus.py), which applies
the ACL to room EDUs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from homeserver.errors import MatrixError, bad_json
from homeserver.events.checks import InvalidPdu, KeyFetcher
from homeserver.events.hashing import compute_event_id
from homeserver.events.model import EventEntry
from homeserver.events.state_res import resolve_state
from homeserver.federation.outliers import store_outliers
from homeserver.federation.serving import check_acl
from homeserver.federation.store import FederationStore
from homeserver.federation.transport import RemoteError, Transport, Unreachable, fed_path
from homeserver.rooms.service import RoomService
from homeserver.rooms.state import EventCache, StateKey
from homeserver.rooms.writer import MissingEvents, RoomWriter
from homeserver.storage.database import Database
from homeserver.types import JsonDict

log = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
MAX_FETCH_DEPTH = 3


class _Fetcher:
    def __init__(self, cache: EventCache) -> None:
        self._cache = cache

    async def get_events(self, event_ids: Iterable[str]) -> Mapping[str, JsonDict]:
        got = await self._cache.get_many(list(event_ids))
        return {k: e.pdu for k, e in got.items() if e.rejected is None}


class Inbound:
    def __init__(self, server_name: str, db: Database, store: FederationStore,
                 rooms: RoomService, writer: RoomWriter, cache: EventCache, keys: KeyFetcher,
                 transport: Transport) -> None:
        self.server_name = server_name
        self._db = db
        self._store = store
        self._rooms = rooms
        self._writer = writer
        self._cache = cache
        self._keys = keys
        self._t = transport
        self._origins: dict[str, asyncio.Lock] = {}
        # Told when an origin talks to us, so the sender can stop backing off from it.
        self.on_origin: Callable[[str], None] | None = None
        self.edus: Callable[[str, list[Any]], Awaitable[None]] | None = None

    async def transaction(self, origin: str, txn_id: str, body: Any) -> JsonDict:
        if not isinstance(body, dict):
            raise bad_json("The transaction must be an object")
        pdus, edus = body.get("pdus", []), body.get("edus", [])
        if not isinstance(pdus, list) or not isinstance(edus, list):
            raise bad_json("pdus and edus must be lists")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise bad_json(f"At most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs per transaction")
        if body.get("origin", origin) != origin:
            raise bad_json("The transaction's origin is not the requesting server")
        if self.on_origin is not None:
            self.on_origin(origin)
        lock = self._origins.setdefault(origin, asyncio.Lock())
        async with lock:
            async with self._db.connection() as conn:
                saved = await self._store.inbound_txn(conn, origin, txn_id)
            if saved is not None:
                return dict(saved)
            results: dict[str, JsonDict] = {}
            for pdu in pdus:
                outcome = await self._one(origin, pdu)
                if outcome is not None:
                    results[outcome[0]] = outcome[1]
            if edus and self.edus is not None:
                await self.edus(origin, edus)
            response: JsonDict = {"pdus": results}
            async with self._db.connection() as conn:
                await self._store.save_inbound_txn(conn, origin, txn_id, response,
                                                   int(time.time() * 1000))
            return response

    async def _one(self, origin: str, pdu: Any) -> tuple[str, JsonDict] | None:
        if not isinstance(pdu, dict) or not isinstance(pdu.get("room_id"), str):
            return None
        room = await self._rooms.rooms.get(pdu["room_id"])
        if room is None or ("m.room.create", "") not in room.state:
            log.info("PDU from %s for a room this server is not in: ignored", origin)
            return None
        try:
            event_id = compute_event_id(pdu, room.version)
        except ValueError:
            return None
        try:
            check_acl(origin, room)
        except MatrixError:
            return event_id, {"error": "The origin is denied by the room's server ACL"}
        try:
            entry = await self.receive_pdu(origin, room.room_id, event_id, pdu)
        except (InvalidPdu, MissingEvents, RemoteError, Unreachable) as e:
            return event_id, {"error": str(e)[:500]}
        if entry.rejected is not None:
            return event_id, {"error": f"rejected: {entry.rejected}"[:500]}
        return event_id, {}

    async def receive_pdu(self, origin: str, room_id: str, event_id: str, pdu: JsonDict,
                          depth: int = 0) -> EventEntry:
        """Accept one PDU, fetching what it cites when needed."""
        state_before: dict[StateKey, str] | None = None
        fetched_prevs = False
        for _ in range(4):
            async with self._rooms.locked(room_id) as room:
                try:
                    return await self._writer.accept(room, event_id, pdu, self._keys,
                                                     state_before=state_before)
                except MissingEvents as e:
                    missing = e
                extremities = list(room.extremities)
            if depth >= MAX_FETCH_DEPTH:
                raise missing
            if missing.kind == "auth_events":
                await self.fetch_auth(origin, room_id, event_id)
            elif not fetched_prevs:
                fetched_prevs = True
                await self._fetch_missing(origin, room_id, event_id, extremities, depth)
            else:
                state_before = await self.state_at(origin, room_id, missing.event_ids)
        raise MissingEvents("events", [event_id])

    async def _store_fetched(self, room_id: str, pdus: Any) -> set[str]:
        if not isinstance(pdus, list):
            return set()
        async with self._rooms.locked(room_id) as room:
            events: dict[str, JsonDict] = {}
            for p in pdus:
                if isinstance(p, dict):
                    try:
                        events[compute_event_id(p, room.version)] = p
                    except ValueError:
                        continue
            return await store_outliers(self._writer, room, events, self._keys)

    async def fetch_auth(self, origin: str, room_id: str, event_id: str) -> None:
        resp = await self._t.request(origin, "GET", fed_path(
            "/_matrix/federation/v1/event_auth/%s/%s", room_id, event_id))
        await self._store_fetched(room_id, resp.get("auth_chain"))

    async def _fetch_missing(self, origin: str, room_id: str, event_id: str,
                             extremities: list[str], depth: int) -> None:
        try:
            resp = await self._t.request(origin, "POST", fed_path(
                "/_matrix/federation/v1/get_missing_events/%s", room_id), body={
                "earliest_events": extremities, "latest_events": [event_id], "limit": 20,
                "min_depth": 0})
        except (RemoteError, Unreachable) as e:
            log.info("get_missing_events from %s failed: %s", origin, e)
            return
        events = resp.get("events")
        if not isinstance(events, list):
            return
        room = await self._rooms.get_room(room_id)
        found = []
        for p in events[:20]:
            if isinstance(p, dict) and p.get("room_id") == room_id:
                try:
                    found.append((compute_event_id(p, room.version), p))
                except ValueError:
                    continue
        found.sort(key=lambda x: x[1].get("depth", 0) if isinstance(x[1].get("depth"), int)
                   else 0)
        for eid, p in found:
            try:
                await self.receive_pdu(origin, room_id, eid, p, depth + 1)
            except (InvalidPdu, MissingEvents, RemoteError, Unreachable) as e:
                log.info("missing event %s could not be accepted: %s", eid, e)

    async def state_at(self, origin: str, room_id: str,
                        prev_ids: list[str]) -> dict[StateKey, str]:
        """The state before an event whose prev events are unknown: the state after each of
        them (asked of the origin), resolved when they differ."""
        room = await self._rooms.get_room(room_id)
        maps: list[dict[StateKey, str]] = []
        for prev in prev_ids[:10]:
            resp = await self._t.request(origin, "GET", fed_path(
                "/_matrix/federation/v1/state/%s", room_id), query={"event_id": prev})
            ev = await self._t.request(origin, "GET", fed_path(
                "/_matrix/federation/v1/event/%s", prev))
            pdus = resp.get("pdus") if isinstance(resp.get("pdus"), list) else []
            chain = resp.get("auth_chain") if isinstance(resp.get("auth_chain"), list) else []
            prev_pdu = (ev.get("pdus") or [None])[0] if isinstance(ev.get("pdus"), list) \
                else None
            ok = await self._store_fetched(room_id, chain + pdus + (
                [prev_pdu] if isinstance(prev_pdu, dict) else []))
            state: dict[StateKey, str] = {}
            for p in pdus + ([prev_pdu] if isinstance(prev_pdu, dict) else []):
                if not isinstance(p, dict) or not isinstance(p.get("state_key"), str):
                    continue
                try:
                    eid = compute_event_id(p, room.version)
                except ValueError:
                    continue
                if eid in ok:
                    state[(str(p["type"]), p["state_key"])] = eid
            maps.append(state)
        if not maps:
            return {}
        if all(m == maps[0] for m in maps[1:]):
            return maps[0]
        return await resolve_state(room.version, maps, _Fetcher(self._cache))
