"""MSC2228 self-destructing ("ephemeral") events, as Synapse's `enable_ephemeral_messages`.

An event whose content has `org.matrix.self_destruct_after` (a timestamp in milliseconds),
from a local client or from another server, is *expired* at that time: its stored JSON is
replaced by the redaction algorithm's result (content {} for a message), with no redaction
event, and every reader (/messages, /event, /context, sync, federation) sees that from then on.
Synapse reads only this field; the proposal's `m.self_destruct` (a duration counted from read
receipts) is not implemented there, nor here. State events are never expired (their content
is room state), nor rejected events or outliers (an outlier is de-outliered through the writer
again, and gets its row then).

Durability: `EventExpiry` is a persist hook, so the (event_id, expiry_ts) row commits in the
event's own transaction. One background task per process sleeps until the earliest row is due
(or a minute, to see rows of other processes), then claims due rows with `DELETE ... FOR UPDATE
SKIP LOCKED ... RETURNING` in the transaction that rewrites the JSON, so each event is expired
once whichever process gets there, and a restart catches up on what fell due while it was down.
The in-memory copies (the event cache and the rooms' recent events, which are the same
objects) are updated at once after the commit. Another process sharing the database does not
learn of an expiry it did not do: its cached copy stays whole until evicted (a known gap: there
is no cross-process cache invalidation for it yet).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from homeserver.events.hashing import prune_event
from homeserver.events.model import mark_expired
from homeserver.events.room_versions import ROOM_VERSIONS
from homeserver.rooms.expiry_store import ExpiryStore
from homeserver.rooms.state import EventCache, RoomData, RoomRegistry
from homeserver.rooms.writer import PersistEvent
from homeserver.storage.database import Conn, Database

log = logging.getLogger(__name__)

FIELD = "org.matrix.self_destruct_after"
# Canonical JSON's integer range: an event cannot carry more, and BIGINT holds it.
MAX_TS = 2**53 - 1
BATCH = 100
IDLE_S = 60.0  # longest sleep: rows other processes wrote are seen within this
RETRY_S = 5.0  # after a failure (e.g. the database is away)


def self_destruct_after(content: Any) -> int | None:
    """The expiry timestamp an event's content asks for, or None: only a non-negative
    integer within canonical JSON's range counts (a bool, a float, a string or a negative
    number is ignored, as if absent)."""
    if not isinstance(content, dict):
        return None
    value = content.get(FIELD)
    if type(value) is not int or not 0 <= value <= MAX_TS:
        return None
    return value


class EventExpiry:
    """Persist hook (writes the expiry rows) and background task (expires due events)."""

    def __init__(self, db: Database, store: ExpiryStore, cache: EventCache,
                 rooms: RoomRegistry, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._store = store
        self._cache = cache
        self._rooms = rooms
        self._clock = clock
        self._wake = asyncio.Event()
        self._next_at: int | None = None  # when the task next looks (ms), if sleeping
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ persist hook

    def wants(self, room: RoomData, ev: PersistEvent) -> bool:
        return (ev.rejected is None and not ev.outlier and ev.state_key is None
                and self_destruct_after(ev.pdu.get("content")) is not None)

    async def write(self, conn: Conn, room: RoomData,
                    events: Sequence[PersistEvent]) -> int:
        rows = []
        for ev in events:
            ts = self_destruct_after(ev.pdu.get("content"))
            if ts is not None:
                rows.append((ev.event_id, ts))
        await self._store.insert(conn, rows)
        return min(ts for _, ts in rows)

    def finished(self, room: RoomData, earliest: int, committed: bool) -> None:
        if committed and (self._next_at is None or earliest < self._next_at):
            self._wake.set()

    # ------------------------------------------------------------------ background task

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-expiry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def expire_due(self) -> list[str]:
        """Expire every event due now (in batches); the ids this process expired."""
        done: list[str] = []
        while True:
            now = self._now_ms()
            pruned: list[tuple[str, str, dict[str, Any]]] = []
            async with self._db.transaction() as conn:
                rows = await self._store.claim_due(conn, now, BATCH)
                for r in rows:
                    rv = ROOM_VERSIONS.get(r["room_version"])
                    if rv is None:
                        continue
                    pdu = prune_event(orjson.loads(r["json"]), rv)
                    pruned.append((r["event_id"], r["room_id"], pdu))
                if pruned:
                    await self._store.set_json(conn, [
                        (eid, orjson.dumps(pdu).decode()) for eid, _, pdu in pruned])
            for eid, room_id, pdu in pruned:
                self._update_memory(eid, room_id, pdu)
                done.append(eid)
            if len(rows) < BATCH:
                return done

    def _update_memory(self, event_id: str, room_id: str, pdu: dict[str, Any]) -> None:
        """The cached event and the room's recent copy (the same object unless the cache
        evicted it) serve the pruned event from now on."""
        seen = set()
        entry = self._cache.peek(event_id)
        if entry is not None:
            mark_expired(entry, pdu)
            seen.add(id(entry))
        room = self._rooms.loaded(room_id)
        if room is not None:
            for e in room.recent:
                if e.event_id == event_id and id(e) not in seen:
                    mark_expired(e, pdu)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            delay = IDLE_S
            try:
                expired = await self.expire_due()
                if expired:
                    log.info("expired %d ephemeral events", len(expired))
                async with self._db.connection() as conn:
                    nxt = await self._store.next_due(conn)
                if nxt is not None:
                    # A row still due was skipped as another process's: look again shortly.
                    delay = min(IDLE_S, max(0.05, (nxt - self._now_ms()) / 1000))
            except Exception:
                log.exception("expiring ephemeral events")
                delay = RETRY_S
            self._next_at = self._now_ms() + int(delay * 1000)
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            self._next_at = None
