"""The HTTP pusher sender: delivers each pusher's notifications to its push gateway.

Each pusher is a consumer with a saved position (`pushers.position`, the stream ordering of the
last notification its gateway accepted) over the user's rows in push_notifications, which were
committed with their events. The sender reads only up to the event stream's `current` (so a
position still in flight is never skipped), sends one notification at a time per pusher in
stream order, and saves the new position after each 2xx answer.

The work per event is kept small, since it competes for the CPU with the sync wake-ups of the
same event: one query reads the new notifications of every user with a pusher and hands each
pusher its rows (their unread totals, the badge, come from NotificationService's counts in
memory when it keeps them); a pusher reads from the database itself only to
catch up (after a start, a new pusher or a failure). The pushers are kept in memory, reloaded
when this process changes one and at least every PUSHERS_RELOAD_S for other processes'
changes. A round of more than SMALL_ROUND notifications (a message into a big room) is handed
out DELAY_S later, so that the members' /sync responses, which people watch, go first: measured
in a 100-member room where every member has a pusher, pushing at once made the last member's
/sync 20-30% later, and 0.25 s later made it as fast as with no pushers (bench/bench.py b and
p). A push then reaches a phone through APNs or FCM, which add more than that. Small rounds (a
direct message, a small group) go out at once.

A failure (connection error, timeout, non-2xx) is
retried with exponential backoff, from the same notification; nothing is dropped. A restart
resumes after the saved position: what the gateway accepted is not sent again, except one
notification when the process dies between the gateway's answer and the position's commit
(gateways deduplicate on event_id, as the Push Gateway API advises). Pushkeys the gateway
`rejected` lose their pusher.

Every notification is pushed, whether or not the user is syncing at the time (the spec allows
skipping active devices; Parley does not guess which device is active).

Of several processes on one database only the holder of the sender lease (a row renewed every
few seconds, taken over LEASE_MS after its holder stops renewing) sends.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from homeserver.outbound import OutboundPolicy
from homeserver.outbound_resolver import PolicyResolver
from homeserver.push.notify_store import NotificationStore
from homeserver.rooms.state import EventCache, RoomRegistry
from homeserver.storage.database import Database
from homeserver.storage.streams import Stream
from homeserver.types import JsonDict

log = logging.getLogger(__name__)

BATCH = 50
LEASE_MS = 15_000
QUEUE_MAX = 500  # notifications held in memory per pusher; beyond, it catches up from the DB
PUSHERS_RELOAD_S = 1.0
STOP_GRACE_S = 2.0
DELAY_S = 0.25
SMALL_ROUND = 20  # notifications in a round that go out at once

# (user ids) -> each one's unread notifications over all rooms (NotificationService keeps
# them in memory; by default they are read from the database).
UnreadTotals = Callable[[list[str]], Awaitable[dict[str, int]]]


@dataclass(slots=True)
class _Note:
    """One notification to push, with the user's unread total when it was read."""

    stream_ordering: int
    room_id: str
    event_id: str
    actions: str
    unread: int

    @classmethod
    def of(cls, row: Any, unread: int) -> _Note:
        return cls(int(row["stream_ordering"]), row["room_id"], row["event_id"], row["actions"],
                   unread)


@dataclass(slots=True)
class _Pusher:
    row: Any  # the pushers row (its data may change; its position is ours)
    position: int  # last notification the gateway accepted (saved after each)
    # Notifications up to this stream ordering are sent or in `queue`; below the sender's
    # `seen`, the pusher catches up from the database.
    synced_to: int
    queue: deque[_Note] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    badge: bool = False  # the user's unread total changed without a notification: push it


class GatewayError(Exception):
    pass


class PusherSender:
    def __init__(self, db: Database, store: NotificationStore, cache: EventCache,
                 rooms: RoomRegistry, stream: Stream, policy: OutboundPolicy,
                 instance: str = "main", backoff_s: float = 1.0, max_backoff_s: float = 300.0,
                 timeout_s: float = 20.0, tls: ssl.SSLContext | None = None,
                 unread_totals: UnreadTotals | None = None) -> None:
        self._db = db
        self._store = store
        self._unread_totals = unread_totals if unread_totals is not None \
            else self._unread_from_db
        self._cache = cache
        self._rooms = rooms
        self._stream = stream
        self._policy = policy
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._timeout = timeout_s
        self._tls = tls if tls is not None else ssl.create_default_context()
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pushers: dict[int, _Pusher] = {}
        self._reload_at = 0.0  # monotonic time of the next reload of the pushers
        self._seen = 0  # notifications up to here have been handed to the pushers
        self._retry_at: dict[int, float] = {}
        self._failures: dict[int, int] = {}
        self._instance = instance
        self._stopping = False
        self._lease_until = 0.0  # monotonic time until which our lease surely holds
        stream.on_advance(lambda _pos: self.wake())

    async def _unread_from_db(self, user_ids: list[str]) -> dict[str, int]:
        async with self._db.connection() as conn:
            return await self._store.unread_totals(conn, user_ids)

    def pushers_changed(self) -> None:
        """A pusher was set or removed here: reload them on the next round."""
        self._reload_at = 0.0
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def badge_changed(self, _room_id: str, user_id: str) -> None:
        """The user's read receipt may have lowered their unread total: each of their
        pushers sends a counts-only push (after its queued notifications), so that the
        app's badge drops when the user reads on another device."""
        found = False
        for p in self._pushers.values():
            if p.row["user_id"] == user_id:
                p.badge = found = True
        if found:
            self.wake()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=PolicyResolver(self._policy),
                                           use_dns_cache=False, limit=100, ssl=self._tls),
            timeout=aiohttp.ClientTimeout(total=self._timeout))
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="pusher-sender")

    async def stop(self) -> None:
        """Stops after the notifications in flight: a push the gateway is answering now is
        let finish (for up to STOP_GRACE_S) and its position saved, so a clean restart sends
        nothing twice."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        workers = [p.worker for p in self._pushers.values()
                   if p.worker is not None and not p.worker.done()]
        if workers:
            await asyncio.wait(workers, timeout=STOP_GRACE_S)
        for t in workers:
            t.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._pushers.clear()
        self._seen = 0
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while not self._stopping:
            # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the wake-up does, and stop() would wait forever.
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=1.0)
            finally:
                waiter.cancel()
            self._wake.clear()
            try:
                if await self._holds_lease():
                    await self._round()
            except Exception as e:  # database hiccup: try again on the next tick
                if not self._db.outage(e):
                    log.exception("pusher sender")

    async def _holds_lease(self) -> bool:
        if self._lease_until - time.monotonic() < LEASE_MS / 1000 * 2 / 3:
            t = time.monotonic()
            async with self._db.connection() as conn:
                if await self._store.take_lease(conn, self._instance,
                                                int(time.time() * 1000), LEASE_MS):
                    self._lease_until = t + LEASE_MS / 1000
        if self._lease_until > time.monotonic():
            return True
        if self._pushers:  # another process sends: forget our state, resume from the DB
            for p in self._pushers.values():
                if p.worker is not None:
                    p.worker.cancel()
            self._pushers.clear()
            self._seen = 0
        return False

    async def _round(self) -> None:
        """Hand the notifications committed since the last round to their pushers."""
        now = time.monotonic()
        upto = self._stream.current
        rows: list[Any] = []
        unread: dict[str, int] = {}
        async with self._db.connection() as conn:
            if now >= self._reload_at:
                self._reload(await self._store.pushers(conn))
                self._reload_at = now + PUSHERS_RELOAD_S
            if not self._seen:
                self._seen = upto  # from here on, by rounds; before, each pusher catches up
            elif upto > self._seen and self._pushers:
                users = sorted({str(p.row["user_id"]) for p in self._pushers.values()})
                rows = await self._store.new_for_users(conn, users, self._seen, upto)
        if rows:
            unread = await self._unread_totals(sorted({str(r["user_id"]) for r in rows}))
        if upto > self._seen:
            if len(rows) > SMALL_ROUND:  # a big room's message: its members' syncs go first
                await asyncio.sleep(DELAY_S)
            by_user: dict[str, list[_Note]] = {}
            for r in rows:
                by_user.setdefault(r["user_id"], []).append(
                    _Note.of(r, unread.get(r["user_id"], 0)))
            for p in self._pushers.values():
                if p.synced_to >= self._seen and len(p.queue) < QUEUE_MAX:
                    # (else it is catching up from the database by itself)
                    p.queue.extend(n for n in by_user.get(p.row["user_id"], ())
                                   if n.stream_ordering > p.position)
                    p.synced_to = upto
            self._seen = upto
        for pid, p in self._pushers.items():
            if (p.queue or p.badge or p.synced_to < self._seen) \
                    and self._retry_at.get(pid, 0) <= now \
                    and (p.worker is None or p.worker.done()):
                p.worker = asyncio.create_task(self._drain(pid, p))

    def _reload(self, rows: list[Any]) -> None:
        fresh = {int(r["id"]): r for r in rows}
        for pid in [pid for pid in self._pushers if pid not in fresh]:
            gone = self._pushers.pop(pid)
            if gone.worker is not None:
                gone.worker.cancel()
        for pid, row in fresh.items():
            p = self._pushers.get(pid)
            if p is None:
                position = int(row["position"])
                self._pushers[pid] = _Pusher(row, position, position)
            else:
                p.row = row

    # ------------------------------------------------------------------ one pusher

    async def _drain(self, pid: int, p: _Pusher) -> None:
        while not self._stopping:
            if not p.queue and p.synced_to < self._seen:  # catch up from the database
                target = self._seen
                after = max(p.position, p.synced_to)
                async with self._db.connection() as conn:
                    rows = await self._store.after(conn, p.row["user_id"], after, target,
                                                   BATCH)
                unread = (await self._unread_totals([p.row["user_id"]])).get(
                    p.row["user_id"], 0) if rows else 0
                p.queue.extend(_Note.of(r, unread) for r in rows)
                p.synced_to = int(rows[-1]["stream_ordering"]) if len(rows) == BATCH \
                    else target
            if not p.queue and not p.badge:
                return
            note = p.queue[0] if p.queue else None
            try:
                if note is not None:
                    rejected = await self._send(p.row, note)
                else:
                    p.badge = False  # a receipt from now on asks for another
                    rejected = await self._send_badge(p.row)
            except Exception as e:  # retried with backoff from this notification
                if note is None:
                    p.badge = True
                n = self._failures.get(pid, 0)
                self._failures[pid] = n + 1
                delay = min(self._max_backoff, self._backoff * 2 ** n)
                self._retry_at[pid] = time.monotonic() + delay
                log.info("pusher %s: %s; retrying in %.1fs", pid, e, delay)
                asyncio.get_running_loop().call_later(delay, self.wake)
                return
            self._failures.pop(pid, None)
            self._retry_at.pop(pid, None)
            if p.row["pushkey"] in rejected:
                await self._reject(pid)
                return
            if note is None:
                continue
            async with self._db.connection() as conn:
                await self._store.advance(conn, pid, note.stream_ordering)
            p.position = max(p.position, note.stream_ordering)
            p.queue.popleft()

    async def _reject(self, pid: int) -> None:
        async with self._db.connection() as conn:
            await self._store.delete_pusher_id(conn, pid)
        log.info("pusher %s: pushkey rejected by the gateway, removed", pid)
        self._pushers.pop(pid, None)

    def _device(self, pusher: Any, tweaks: JsonDict) -> JsonDict:
        data = orjson.loads(pusher["data"])
        return {"app_id": pusher["app_id"], "pushkey": pusher["pushkey"],
                "pushkey_ts": int(pusher["created_ts"]) // 1000,
                "data": {k: v for k, v in data.items() if k != "url"}, "tweaks": tweaks}

    async def _body(self, pusher: Any, row: _Note) -> JsonDict:
        data = orjson.loads(pusher["data"])
        actions = orjson.loads(row.actions)
        tweaks: JsonDict = {}
        for a in actions:
            if isinstance(a, dict) and isinstance(a.get("set_tweak"), str):
                tweaks[a["set_tweak"]] = a.get("value", True) if a["set_tweak"] == "highlight" \
                    else a.get("value")
        note: JsonDict = {
            # `id` is the event id under its old name, which Synapse still sends and older
            # gateways and SyTest read.
            "event_id": row.event_id, "id": row.event_id, "room_id": row.room_id,
            "counts": {"unread": row.unread},
            "prio": "high" if tweaks.get("highlight") or "sound" in tweaks else "low",
            "devices": [self._device(pusher, tweaks)],
        }
        if data.get("format") != "event_id_only":
            entry = (await self._cache.get_many([row.event_id])).get(row.event_id)
            if entry is not None:
                pdu = entry.pdu
                note["type"] = pdu.get("type")
                note["sender"] = pdu.get("sender")
                note["content"] = pdu.get("content", {})
                if pdu.get("type") == "m.room.member":
                    note["user_is_target"] = pdu.get("state_key") == pusher["user_id"]
                    membership = pdu.get("content", {}).get("membership")
                    if isinstance(membership, str):
                        note["membership"] = membership  # as Synapse sends it
                room = await self._rooms.get(row.room_id)
                if room is not None:
                    state: Mapping[tuple[str, str], JsonDict] = room.state_pdus()
                    if ("m.room.create", "") not in state:
                        # An invite to a room this server is not in: what the inviter's server
                        # sent of the room's state names it (as the reference server does).
                        state = _stripped_state(pdu)
                    member = state.get(("m.room.member", str(pdu.get("sender"))))
                    name = member.get("content", {}).get("displayname") if member else None
                    if isinstance(name, str):
                        note["sender_display_name"] = name
                    room_name = state.get(("m.room.name", ""))
                    alias = state.get(("m.room.canonical_alias", ""))
                    if alias and isinstance(alias.get("content", {}).get("alias"), str):
                        note["room_alias"] = alias["content"]["alias"]
                    if room_name and isinstance(room_name.get("content", {}).get("name"), str) \
                            and room_name["content"]["name"]:
                        note["room_name"] = room_name["content"]["name"]
                    elif "room_alias" in note:  # the room's display name, as clients show it
                        note["room_name"] = note["room_alias"]
        return {"notification": note}

    async def _send_badge(self, pusher: Any) -> set[str]:
        """POST a counts-only notification with the user's unread total now (the Push
        Gateway API's badge update: no event_id, so the gateway alerts nobody)."""
        async with self._db.connection() as conn:
            unread = (await self._store.unread_totals(conn, [pusher["user_id"]])).get(
                pusher["user_id"], 0)
        body = {"notification": {"counts": {"unread": unread}, "prio": "low",
                                 "devices": [self._device(pusher, {})]}}
        return await self._post(pusher, body)

    async def _send(self, pusher: Any, row: _Note) -> set[str]:
        """POST one notification; the rejected pushkeys. Raises on anything but a 2xx."""
        return await self._post(pusher, await self._body(pusher, row))

    async def _post(self, pusher: Any, body: JsonDict) -> set[str]:
        url = orjson.loads(pusher["data"])["url"]
        host = urlsplit(url).hostname or ""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None and not self._policy.permits(str(literal)):
            raise GatewayError(f"{host} is not an address the outbound policy permits")
        assert self._session is not None
        async with self._session.post(url, data=orjson.dumps(body),
                                      headers={"Content-Type": "application/json"},
                                      allow_redirects=False) as resp:
            if resp.status // 100 != 2:
                raise GatewayError(f"gateway answered {resp.status}")
            try:
                answer = await resp.json(content_type=None)
            except ValueError:
                answer = {}
        rejected = answer.get("rejected") if isinstance(answer, dict) else None
        return {k for k in rejected if isinstance(k, str)} if isinstance(rejected, list) \
            else set()


def _stripped_state(pdu: JsonDict) -> dict[tuple[str, str], JsonDict]:
    """The invite_room_state an invite over federation carries (kept in its `unsigned`), by
    (type, state_key); empty for anything else."""
    got = (pdu.get("unsigned") or {}).get("invite_room_state")
    out: dict[tuple[str, str], JsonDict] = {}
    if isinstance(got, list):
        for ev in got:
            if isinstance(ev, dict) and isinstance(ev.get("type"), str) \
                    and isinstance(ev.get("state_key"), str) \
                    and isinstance(ev.get("content"), dict):
                out[(ev["type"], ev["state_key"])] = ev
    return out
