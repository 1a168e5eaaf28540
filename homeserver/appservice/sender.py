"""Pushing events to application services (spec "Pushing events"): one consumer of the room
event stream per AS (`EventConsumer("appservice:<id>")`, homeserver/rooms/feed.py), one
transaction in flight per AS, in stream order.

An event is the AS's when (spec "Registration"): its sender or, for a membership event, its
target is a user the AS is interested in (its sender or a local user of its users
namespaces); a joined member of its room is such a user; the room id is in its rooms
namespace; or one of the room's aliases is in its aliases namespace. Membership and aliases are
read as they are now, when the consumer reaches the event, as Synapse does.

Durability: the events of a batch become a transaction row (`appservice_txns`, with the next
transaction id) in the same database transaction that moves the consumer's position past
them. The row is sent until the AS answers 2xx, then deleted; a retry, or a restart, sends
the same bytes with the same id (the spec forbids adding events to a transaction on retry).
A failure backs off exponentially (saved, so a restart does not hammer a dead AS); the
consumer does not read further while a transaction waits, so the order holds.

Ephemeral data (spec v1.13 "Pushing ephemeral data", for an AS with `receive_ephemeral`):
local users' typing (the room's current typing users, as /sync shows them) and public read
receipts, in rooms the AS is interested in by the same room rule as events, ride in the
`ephemeral` list of the next transaction. They wait in memory, one per room for typing and
per (room, type, user, thread) for receipts, so a newer one replaces one not yet sent; a
restart may lose them (they describe a moment, not history). Local users' presence goes, one
per user, to an AS whose namespace covers the user or that has a user in one of the user's
rooms.

End-to-bridge encryption (to-device messages, MSC3202 device lists and key counts) comes from
each AS's `DeviceFeed` (homeserver/appservice/device_data.py): read after its own saved
positions, added to the same transaction, and its positions saved in the database transaction
that writes it.

Of several processes on one database, the holder of an AS's lease (`appservice_state.holder`,
renewed as it works, taken over LEASE_MS after it stops) sends to that AS; a new transaction
is made only while the lease is held (checked in the transaction that makes it). A request
outliving the lease may be sent again by the process taking over: same id, same events.

Timeouts: a transaction the AS has not answered in FIRST_TIMEOUT_S counts as failed and is
sent again (same id: the spec has the AS treat a repeat as done), and each consecutive
failure doubles the time allowed, up to MAX_TIMEOUT_S. A request lost on the way (an AS that
restarted under a kept-alive connection, a proxy that dropped it) then costs seconds, not a
minute of silence; and an AS that is merely slow is not cut off for it, since its allowance
grows until it answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import orjson

from homeserver.appservice.client import (
    AppServiceClient,
    AppServiceHttpError,
    AppServiceUnreachable,
)
from homeserver.appservice.device_data import DeviceData, DeviceFeed
from homeserver.appservice.registration import AppService
from homeserver.appservice.store import AppServiceStore
from homeserver.events.model import EventEntry
from homeserver.events.store import EventStore
from homeserver.rooms.feed import EventConsumer
from homeserver.rooms.state import EventCache, RoomRegistry
from homeserver.storage.database import Database
from homeserver.storage.streams import Stream
from homeserver.types import JsonDict

log = logging.getLogger(__name__)

MAX_EVENTS = 100  # per transaction
FIRST_TIMEOUT_S = 5.0
MAX_TIMEOUT_S = 60.0
LEASE_MS = 30_000


def _now() -> int:
    return int(time.time() * 1000)


class AppServiceSender:
    def __init__(self, db: Database, store: AppServiceStore, services: tuple[AppService, ...],
                 events: EventStore, cache: EventCache, stream: Stream, rooms: RoomRegistry,
                 client: AppServiceClient, instance: str = "main",
                 to_device: Stream | None = None, device_lists: Stream | None = None) -> None:
        self._db = db
        self.instance = instance
        self._store = store
        self._rooms = rooms
        self._client = client
        self.backoff_base_ms = 2_000
        self.backoff_max_ms = 300_000
        self.first_timeout_s = FIRST_TIMEOUT_S
        self._queues = [_ServiceQueue(self, s, EventConsumer(
            f"appservice:{s.id}", db, events, cache, stream, batch_size=MAX_EVENTS),
            DeviceFeed(db, store, s, to_device, device_lists, self._shares_room,
                       self._room_members))
            for s in services if s.url is not None]
        self._tasks: list[asyncio.Task[None]] = []
        # The users typing in a room now (TypingService.users), for m.typing ephemerals.
        self.typing_users: Callable[[str], list[str]] | None = None
        # The rooms a user is joined to (MembershipIndex.joined_rooms), for m.presence.
        self.joined_rooms: Callable[[str], Awaitable[list[str]]] | None = None

    async def start(self) -> None:
        for q in self._queues:
            await q.consumer.position()  # a new AS starts at the stream's current position
            await q.devices.start()
            self._tasks.append(asyncio.get_running_loop().create_task(
                q.run(), name=f"appservice-{q.service.id}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        await self._client.close()

    def retry_now(self, as_id: str) -> None:
        """The AS showed it is up (it pinged us): send its waiting transaction now."""
        for q in self._queues:
            if q.service.id == as_id:
                q.retry.set()

    # ------------------------------------------------------------------ ephemeral data

    def keys_changed(self, user_id: str, device_id: str) -> None:
        """DeviceKeyService hook: one-time or fallback keys of a local device were uploaded
        or claimed (MSC3202 key counts)."""
        for q in self._queues:
            q.devices.keys_changed(user_id, device_id)
            if q.devices.key_users:
                q.wake.set()

    def typing_changed(self, room_id: str, user_id: str, typing: bool) -> None:
        """TypingService hook (local users): the room's typing list goes out next."""
        for q in self._queues:
            if q.service.receive_ephemeral:
                q.ephemeral[("m.typing", room_id)] = {"type": "m.typing", "room_id": room_id}
                q.wake.set()

    def receipt_written(self, room_id: str, receipt_type: str, user_id: str, event_id: str,
                        data: JsonDict) -> None:
        """ReceiptService hook (local users' public read receipts)."""
        edu = {"type": "m.receipt", "room_id": room_id,
               "content": {event_id: {receipt_type: {user_id: data}}}}
        key = ("m.receipt", room_id, receipt_type, user_id, str(data.get("thread_id", "")))
        for q in self._queues:
            if q.service.receive_ephemeral:
                q.ephemeral[key] = edu
                q.wake.set()

    def presence_changed(self, user_id: str, content: JsonDict) -> None:
        """PresenceService hook (local users)."""
        for q in self._queues:
            if q.service.receive_ephemeral:
                q.ephemeral[("m.presence", user_id)] = {
                    "type": "m.presence", "sender": user_id, "content": content}
                q.wake.set()

    async def _room_members(self, room_id: str) -> set[str]:
        room = await self._rooms.get(room_id)
        return set(room.joined_members()) if room is not None else set()

    async def _shares_room(self, service: AppService, user_id: str) -> bool:
        if service.is_interested_in_user(user_id):
            return True
        rooms = await self.joined_rooms(user_id) if self.joined_rooms is not None else []
        return any((await self._interested_rooms(service, sorted(rooms))).values())

    async def ephemeral_for(self, service: AppService,
                            items: list[JsonDict]) -> list[JsonDict]:
        """The waiting ephemerals `service` is to have (room ones of rooms it is interested
        in, presence of users it shares a room with), filled in."""
        wanted = await self._interested_rooms(
            service, sorted({i["room_id"] for i in items if "room_id" in i}))
        out = []
        for item in items:
            if item["type"] == "m.presence":
                if await self._shares_room(service, item["sender"]):
                    out.append(item)
                continue
            if not wanted[item["room_id"]]:
                continue
            if item["type"] == "m.typing":
                users = self.typing_users(item["room_id"]) if self.typing_users else []
                item = {**item, "content": {"user_ids": users}}
            out.append(item)
        return out

    # ------------------------------------------------------------------ interest

    async def _interested_rooms(self, service: AppService,
                                room_ids: list[str]) -> dict[str, bool]:
        """For each room: whether all its events are the AS's (room id or alias in its
        namespaces, or one of its users joined)."""
        aliases: dict[str, list[str]] = {}
        if service.aliases:
            async with self._db.connection() as conn:
                aliases = await self._store.aliases_of_rooms(conn, room_ids)
        by_room: dict[str, bool] = {}
        for room_id in room_ids:
            interested = service.is_interested_in_room_id(room_id) or any(
                service.is_interested_in_alias(a) for a in aliases.get(room_id, ()))
            if not interested:
                room = await self._rooms.get(room_id)
                interested = room is not None and any(
                    service.is_interested_in_user(u) for u in room.joined_members())
            by_room[room_id] = interested
        return by_room

    async def interesting(self, service: AppService,
                          entries: list[EventEntry]) -> list[EventEntry]:
        """The entries `service` is interested in, in order."""
        by_room = await self._interested_rooms(service, sorted({e.room_id for e in entries}))
        return [e for e in entries if by_room[e.room_id]
                or service.is_interested_in_user(e.sender)
                or (e.type == "m.room.member" and e.state_key is not None
                    and service.is_interested_in_user(e.state_key))]


class _ServiceQueue:
    def __init__(self, sender: AppServiceSender, service: AppService,
                 consumer: EventConsumer, devices: DeviceFeed) -> None:
        self.sender = sender
        self.service = service
        self.consumer = consumer
        self.devices = devices
        self.retry = asyncio.Event()
        self.ephemeral: dict[tuple[str, ...], JsonDict] = {}
        self.wake = asyncio.Event()  # set when ephemeral or device data waits
        devices.on_advance(self.wake.set)
        self._lease_until = 0.0  # monotonic time until which our lease surely holds

    async def _lease(self) -> bool:
        """Whether this process may send to the AS now (renewing its lease when a third of
        it has passed)."""
        if self._lease_until - time.monotonic() > LEASE_MS / 1000 * 2 / 3:
            return True
        s, t = self.sender, time.monotonic()
        async with s._db.connection() as conn:
            held = await s._store.take_lease(conn, self.service.id, s.instance, _now(),
                                             LEASE_MS)
        self._lease_until = t + LEASE_MS / 1000 if held else 0.0
        return held

    async def _idle(self) -> None:
        """Until the event stream moves or ephemeral data waits (or 30 s)."""
        self.wake.clear()
        if self.ephemeral or self.devices.behind():
            return
        tasks = [asyncio.ensure_future(self.consumer.wait(timeout=30.0)),
                 asyncio.ensure_future(self.wake.wait())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()

    async def run(self) -> None:
        s, as_id = self.sender, self.service.id
        while True:
            try:
                if not await self._lease():  # another process sends to this AS
                    self.ephemeral.clear()
                    self.devices.clear()
                    await asyncio.sleep(LEASE_MS / 1000 / 3)
                    continue
                async with s._db.connection() as conn:
                    pending = await s._store.pending(conn, as_id)
                if pending is not None:
                    await self._deliver(int(pending["txn_id"]), bytes(pending["body"]))
                    continue
                entries, end = await self.consumer.next_batch()
                moved = end > await self.consumer.position()
                if not entries and not moved and not self.ephemeral \
                        and not self.devices.behind():
                    await self._idle()
                    continue
                chosen = await s.interesting(self.service, entries)
                waiting, self.ephemeral = list(self.ephemeral.values()), {}
                ephemeral = await s.ephemeral_for(self.service, waiting) if waiting else []
                data = await self.devices.collect(chosen)
                try:
                    await self._write(chosen, ephemeral, data, end if moved else None)
                except BaseException:
                    self.devices.not_written(data)
                    raise
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not s._db.outage(e):
                    log.exception("application service %s sender failed; retrying", as_id)
                await asyncio.sleep(1.0)

    async def _write(self, chosen: list[EventEntry], ephemeral: list[JsonDict],
                     data: DeviceData, end: int | None) -> None:
        """Make the next transaction (if there is anything to send) and move the positions
        past what it took, in one database transaction."""
        s, as_id = self.sender, self.service.id
        make = bool(chosen or ephemeral or data.has_content())
        if make:
            await self.devices.add_counts(data)
        async with s._db.transaction() as conn:
            if not await s._store.holds_lease(conn, as_id, s.instance, _now()):
                self._lease_until = 0.0
                # Lost it meanwhile: the holder makes this transaction.
                self.devices.not_written(data)
                return
            if make:
                body: JsonDict = {"events": [_format(self.service, e) for e in chosen]}
                if ephemeral:
                    body["ephemeral"] = ephemeral
                data.fill(body, self.service)
                await s._store.add_txn(conn, as_id, orjson.dumps(body))
            if end is not None:
                await self.consumer.save(end, conn)
            if data.moves():
                await self.devices.write(conn, data)
        self.devices.written(data)

    async def _deliver(self, txn_id: int, body: bytes) -> None:
        """Send one transaction until the AS takes it (waiting out any saved backoff)."""
        s, as_id = self.sender, self.service.id
        async with s._db.connection() as conn:
            state = await s._store.state(conn, as_id)
        failures = int(state["failures"]) if state else 0
        wait_ms = (int(state["retry_at_ts"]) if state else 0) - _now()
        if wait_ms > 0 and not self.retry.is_set():
            # In slices, so that the caller renews the lease while a long backoff runs.
            # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancellation.
            waiter = asyncio.ensure_future(self.retry.wait())
            try:
                await asyncio.wait({waiter}, timeout=min(wait_ms, LEASE_MS // 3) / 1000)
            finally:
                waiter.cancel()
            if not self.retry.is_set():
                return
        self.retry.clear()
        if not await self._lease():
            return
        timeout = min(MAX_TIMEOUT_S, s.first_timeout_s * 2 ** min(failures, 10))
        try:
            await s._client.send_transaction(self.service, txn_id, body, timeout)
        except (AppServiceUnreachable, AppServiceHttpError) as e:
            failures += 1
            delay = min(s.backoff_max_ms, s.backoff_base_ms * 2 ** min(failures - 1, 20))
            log.warning("application service %s: transaction %d failed (%s); retry in %d s",
                        as_id, txn_id, e, delay // 1000)
            async with s._db.connection() as conn:
                await s._store.set_backoff(conn, as_id, failures, _now() + delay)
            return
        async with s._db.transaction() as conn:
            await s._store.txn_done(conn, as_id, txn_id)


def _format(service: AppService, e: EventEntry) -> JsonDict:
    """The client format of the event (spec: ClientEvent). An event the AS sent for one of
    its users (through its as_token: no device) carries its `unsigned.transaction_id`, as a
    client sees its own sends, so that a bridge can tell its echoes."""
    if e.txn is not None and e.txn[1] == "" and service.is_interested_in_user(e.txn[0]):
        return e.to_client(e.txn[0], "")
    return e.to_client()
