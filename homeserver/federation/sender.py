"""The federation sender: local events out to the other servers in their rooms.

It is a consumer of the room event stream (`EventConsumer("federation-sender")`): for each
served event sent by a local user it writes one outbox row per destination (the servers with
joined members in the room, and the target's server of a membership change) in the same
transaction that saves its position, so a crash or restart loses nothing and sends nothing
twice. One `DestinationQueue` per server then sends its outbox in transactions of at most 50
PDUs, one in flight at a time; a failure backs off exponentially (saved in the database), and
a destination that comes back after failures first has its outbox trimmed to each room's latest
events (it fetches the rest with /get_missing_events). Each destination has its own task, so a
dead or slow server delays nobody else, and client requests never wait for any of them.

EDUs ride in the same transactions (homeserver/federation/edus.py says which): durable ones
(to-device, device list and signing key updates) come from `federation_edu_outbox`, written
in the transaction of the change; ephemeral ones (typing, receipts, presence) wait in the
queue's memory, one per key, so a newer one replaces an older one not yet sent (presence of
many users goes out as one m.presence EDU).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import asyncpg
import orjson

from homeserver.events.checks import third_party_redeemer
from homeserver.events.model import EventEntry
from homeserver.federation.serving import domain, servers_of
from homeserver.federation.store import FederationStore
from homeserver.federation.transport import RemoteError, Transport, Unreachable, fed_path
from homeserver.rooms.feed import EventConsumer
from homeserver.rooms.state import EventCache, RoomRegistry
from homeserver.storage.database import Conn, Database
from homeserver.types import JsonDict

log = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_DURABLE_EDUS = 50  # per transaction; ephemeral ones fill the rest of the spec's 100
MAX_EPHEMERAL_EDUS = 50
MAX_PRESENCE_PER_EDU = 500
CATCH_UP_PER_ROOM = 5


class FederationSender:
    def __init__(self, server_name: str, db: Database, store: FederationStore,
                 consumer: EventConsumer, registry: RoomRegistry, cache: EventCache,
                 transport: Transport) -> None:
        self.server_name = server_name
        self._db = db
        self._store = store
        self._consumer = consumer
        self._registry = registry
        self._cache = cache
        self._t = transport
        self.backoff_base_ms = 1_000
        self.backoff_max_ms = 300_000
        self._queues: dict[str, DestinationQueue] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self._db.connection() as conn:
            pending = await self._store.pending_destinations(conn)
        for d in pending:
            self.queue(d).wake()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        if self._task is not None:
            tasks.append(self._task)
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

    def queue(self, destination: str) -> DestinationQueue:
        q = self._queues.get(destination)
        if q is None:
            q = self._queues[destination] = DestinationQueue(self, destination)
        return q

    # ------------------------------------------------------------------ EDUs

    def send_ephemeral(self, destinations: Iterable[str], key: tuple[str, ...],
                       edu_type: str, content: JsonDict) -> None:
        """Queue an EDU that may be lost with the process (typing, receipts, presence); a
        later one with the same key replaces it while it waits."""
        for d in destinations:
            if d != self.server_name:
                q = self.queue(d)
                q.ephemeral[key] = (edu_type, content)
                q.wake()

    async def enqueue_durable(self, conn: Conn, rows: list[tuple[str, str, JsonDict]]) -> None:
        """Queue (destination, edu_type, content) EDUs in the caller's transaction; call
        `wake` with their destinations once it committed."""
        rows = [r for r in rows if r[0] != self.server_name]
        if rows:
            await self._store.enqueue_edus(conn, rows)

    def wake(self, destinations: Iterable[str]) -> None:
        for d in destinations:
            if d != self.server_name:
                self.queue(d).wake()

    def retry(self, destination: str) -> None:
        """Send the destination's queue now, whatever its backoff said (an admin reset it)."""
        if destination != self.server_name:
            self.queue(destination).retry_now()

    def remote_alive(self, destination: str) -> None:
        """The destination just talked to us: retry it now rather than at its backoff."""
        q = self._queues.get(destination)
        if q is not None:
            q.retry_now()

    # ------------------------------------------------------------------ the feed

    async def _destinations(self, entry: EventEntry) -> set[str]:
        room = await self._registry.get(entry.room_id)
        if room is None:
            return set()
        servers = set(servers_of(room))
        if entry.type == "m.room.member" and entry.state_key and entry.membership != "invite":
            servers.add(domain(entry.state_key))  # a kicked or banned user's server learns it
        servers.discard(self.server_name)
        return servers

    def _redeemed_here(self, e: EventEntry) -> bool:
        """A third-party invite this server redeemed for its user, as the remote inviter
        (homeserver/identity/invites.py): sent from here, as its signature is ours."""
        sigs = e.pdu.get("signatures")
        return (third_party_redeemer(e.pdu) == self.server_name and isinstance(sigs, dict)
                and self.server_name in sigs and domain(e.sender) not in sigs)

    async def _run(self) -> None:
        while True:
            try:
                entries, end = await self._consumer.next_batch()
                if not entries and end <= await self._consumer.position():
                    await self._consumer.wait(timeout=30.0)
                    continue
                rows = []
                for e in entries:
                    if domain(e.sender) != self.server_name and not self._redeemed_here(e):
                        continue  # remote events are their origin's to send
                    for d in await self._destinations(e):
                        rows.append((d, e.stream_ordering, e.room_id, e.event_id))
                async with self._db.transaction() as conn:
                    if rows:
                        await self._store.enqueue(conn, rows)
                    await self._consumer.save(end, conn)
                for d in {r[0] for r in rows}:
                    self.queue(d).wake()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not self._db.outage(e):
                    log.exception("federation sender feed failed; retrying")
                await asyncio.sleep(1.0)

    async def forward(self, entry: EventEntry, exclude: Iterable[str]) -> None:
        """Send a remote server's event to the room's other servers (a join or leave it made
        through us: it sent the event to us alone)."""
        skip = set(exclude) | {self.server_name}
        rows = [(d, entry.stream_ordering, entry.room_id, entry.event_id)
                for d in await self._destinations(entry) if d not in skip]
        if not rows or entry.stream_ordering <= 0:
            return
        async with self._db.connection() as conn:
            await self._store.enqueue(conn, rows)
        for r in rows:
            self.queue(r[0]).wake()


class DestinationQueue:
    def __init__(self, sender: FederationSender, destination: str) -> None:
        self.sender = sender
        self.destination = destination
        self.task: asyncio.Task[None] | None = None
        self._more = asyncio.Event()
        self._retry = asyncio.Event()
        self.ephemeral: dict[tuple[str, ...], tuple[str, JsonDict]] = {}

    def wake(self) -> None:
        self._more.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def retry_now(self) -> None:
        self._retry.set()
        self.wake()

    async def _run(self) -> None:
        s = self.sender
        while True:
            try:
                async with s._db.connection() as conn:
                    state = await s._store.destination(conn, self.destination)
                failures = state["failures"] if state else 0
                retry_at = state["retry_at_ts"] if state else 0
                last_txn = state["last_txn_id"] if state else 0
                wait_ms = retry_at - int(time.time() * 1000)
                if wait_ms > 0 and not self._retry.is_set():
                    try:
                        await asyncio.wait_for(self._retry.wait(), wait_ms / 1000)
                    except TimeoutError:
                        pass
                self._retry.clear()
                self._more.clear()
                async with s._db.connection() as conn:
                    if failures:
                        await s._store.trim_outbox(conn, self.destination, CATCH_UP_PER_ROOM)
                        await s._store.trim_edu_outbox(conn, self.destination)
                    rows = await s._store.outbox(conn, self.destination, MAX_PDUS)
                    edu_rows = await s._store.edu_outbox(conn, self.destination,
                                                         MAX_DURABLE_EDUS)
                if not rows and not edu_rows and not self.ephemeral:
                    await self._more.wait()
                    continue
                await self._send(rows, edu_rows, failures, last_txn + 1)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not s._db.outage(e):
                    log.exception("sending to %s failed unexpectedly", self.destination)
                await asyncio.sleep(1.0)

    def _take_ephemeral(self) -> tuple[dict[tuple[str, ...], tuple[str, JsonDict]],
                                       list[JsonDict]]:
        """The waiting ephemeral EDUs that fit in one transaction (taken out of the queue),
        and their JSON; every user's presence goes in one m.presence EDU."""
        taken: dict[tuple[str, ...], tuple[str, JsonDict]] = {}
        edus: list[JsonDict] = []
        presence: list[JsonDict] = []
        for key, (edu_type, content) in list(self.ephemeral.items()):
            if edu_type == "m.presence":
                if len(presence) >= MAX_PRESENCE_PER_EDU:
                    continue
                presence.append(content)
            elif len(edus) < MAX_EPHEMERAL_EDUS - 1:
                edus.append({"edu_type": edu_type, "content": content})
            else:
                continue
            taken[key] = self.ephemeral.pop(key)
        if presence:
            edus.append({"edu_type": "m.presence", "content": {"push": presence}})
        return taken, edus

    async def _send(self, rows: list[asyncpg.Record], edu_rows: list[asyncpg.Record],
                    failures: int, txn_id: int) -> None:
        s = self.sender
        upto = max((r["stream_ordering"] for r in rows), default=0)
        got = await s._cache.get_many([r["event_id"] for r in rows])
        pdus = [got[r["event_id"]].pdu for r in rows if r["event_id"] in got]
        taken, ephemeral = self._take_ephemeral()
        edus = [{"edu_type": r["edu_type"], "content": orjson.loads(r["content"])}
                for r in edu_rows] + ephemeral
        now = int(time.time() * 1000)
        # The txn id is taken (saved) before the request, so a restart never reuses one.
        async with s._db.connection() as conn:
            await s._store.set_destination(conn, self.destination, failures,
                                           0 if not failures else now, txn_id)
        body = {"origin": s.server_name, "origin_server_ts": now, "pdus": pdus, "edus": edus}
        try:
            await s._t.request(self.destination, "PUT", fed_path(
                "/_matrix/federation/v1/send/%s", str(txn_id)), body=body, timeout=60.0)
        except (RemoteError, Unreachable) as e:
            permanent = isinstance(e, RemoteError) and e.status in (400, 401, 403, 404)
            if not permanent:
                for k, v in taken.items():  # unless a newer one replaced it meanwhile
                    self.ephemeral.setdefault(k, v)
                failures += 1
                delay = min(s.backoff_base_ms * 2 ** min(failures - 1, 30), s.backoff_max_ms)
                log.info("transaction to %s failed (%s); retry in %d ms", self.destination,
                         e, delay)
                now = int(time.time() * 1000)
                async with s._db.connection() as conn:
                    await s._store.destination_failed(conn, self.destination, failures,
                                                      now + delay, txn_id, now)
                return
            log.warning("%s refused a transaction (%s): its PDUs are dropped",
                        self.destination, e)
        async with s._db.transaction() as conn:
            if rows:
                await s._store.sent(conn, self.destination, upto)
            if edu_rows:
                await s._store.edus_sent(conn, self.destination, [r["id"] for r in edu_rows])
            await s._store.destination_ok(conn, self.destination, txn_id, upto)
