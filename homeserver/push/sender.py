"""The HTTP pusher sender: delivers each pusher's notifications to its push gateway.

Each pusher is a consumer with a saved position (`pushers.position`, the stream ordering of the
last notification its gateway accepted) over the user's rows in push_notifications, which were
committed with their events. It reads only up to the event stream's `current` (so a position
still in flight is never skipped), sends one notification at a time in stream order, and saves
the new position after each 2xx answer. A failure (connection error, timeout, non-2xx) is
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
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult

from homeserver.outbound import OutboundPolicy
from homeserver.push.notifications import NotificationService
from homeserver.push.notify_store import NotificationStore
from homeserver.rooms.state import EventCache, RoomRegistry
from homeserver.storage.database import Database
from homeserver.storage.streams import Stream
from homeserver.types import JsonDict

log = logging.getLogger(__name__)

BATCH = 50
LEASE_MS = 15_000


class _PolicyResolver(AbstractResolver):
    """DNS answers filtered by the outbound policy (checked after resolution, so a name that
    points into a denied range is refused like the address itself)."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        infos = await self._inner.resolve(host, port, family)
        allowed = [i for i in infos if self._policy.permits(i["host"])]
        if not allowed:
            raise OSError(f"{host} resolves to no address the outbound policy permits")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class GatewayError(Exception):
    pass


class PusherSender:
    def __init__(self, db: Database, store: NotificationStore, notifications: NotificationService,
                 cache: EventCache, rooms: RoomRegistry, stream: Stream, policy: OutboundPolicy,
                 instance: str = "main", backoff_s: float = 1.0, max_backoff_s: float = 300.0,
                 timeout_s: float = 20.0) -> None:
        self._db = db
        self._store = store
        self._notifications = notifications
        self._cache = cache
        self._rooms = rooms
        self._stream = stream
        self._policy = policy
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._timeout = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._dirty: set[int] = set()
        self._retry_at: dict[int, float] = {}
        self._failures: dict[int, int] = {}
        self._instance = instance
        self._stopping = False
        self._lease_until = 0.0  # monotonic time until which our lease surely holds
        stream.on_advance(lambda _pos: self.wake())

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=_PolicyResolver(self._policy),
                                           use_dns_cache=False, limit=100),
            timeout=aiohttp.ClientTimeout(total=self._timeout))
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="pusher-sender")

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in [self._task, *self._workers.values()] if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
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
                async with self._db.connection() as conn:
                    if self._lease_until - time.monotonic() < LEASE_MS / 1000 * 2 / 3:
                        t = time.monotonic()
                        if await self._store.take_lease(conn, self._instance,
                                                        int(time.time() * 1000), LEASE_MS):
                            self._lease_until = t + LEASE_MS / 1000
                    if self._lease_until <= time.monotonic():
                        continue  # another process sends
                    pushers = await self._store.pushers(conn)
            except Exception as e:  # database hiccup: try again on the next tick
                if not self._db.outage(e):
                    log.exception("loading pushers")
                continue
            now = time.monotonic()
            for p in pushers:
                pid = int(p["id"])
                if self._retry_at.get(pid, 0) > now:
                    continue
                worker = self._workers.get(pid)
                if worker is not None and not worker.done():
                    self._dirty.add(pid)
                    continue
                self._workers[pid] = asyncio.create_task(self._drain(pid))

    # ------------------------------------------------------------------ one pusher

    async def _drain(self, pid: int) -> None:
        while True:
            self._dirty.discard(pid)
            async with self._db.connection() as conn:
                pusher = await self._store.pusher(conn, pid)
                if pusher is None:
                    return
                rows = await self._store.after(conn, pusher["user_id"], int(pusher["position"]),
                                               self._stream.current, BATCH)
            if not rows:
                if pid in self._dirty:
                    continue
                return
            for row in rows:
                try:
                    rejected = await self._send(pusher, row)
                except Exception as e:  # retried with backoff from this notification
                    n = self._failures.get(pid, 0)
                    self._failures[pid] = n + 1
                    delay = min(self._max_backoff, self._backoff * 2 ** n)
                    self._retry_at[pid] = time.monotonic() + delay
                    log.info("pusher %s: %s; retrying in %.1fs", pid, e, delay)
                    return
                self._failures.pop(pid, None)
                self._retry_at.pop(pid, None)
                async with self._db.transaction() as conn:
                    if pusher["pushkey"] in rejected:
                        await self._store.delete_pusher_id(conn, pid)
                        log.info("pusher %s: pushkey rejected by the gateway, removed", pid)
                        return
                    await self._store.advance(conn, pid, int(row["stream_ordering"]))

    async def _body(self, pusher: Any, row: Any) -> JsonDict:
        data = orjson.loads(pusher["data"])
        device_data = {k: v for k, v in data.items() if k != "url"}
        actions = orjson.loads(row["actions"])
        tweaks: JsonDict = {}
        for a in actions:
            if isinstance(a, dict) and isinstance(a.get("set_tweak"), str):
                tweaks[a["set_tweak"]] = a.get("value", True) if a["set_tweak"] == "highlight" \
                    else a.get("value")
        unread = await self._notifications.total_unread(pusher["user_id"])
        note: JsonDict = {
            "event_id": row["event_id"], "room_id": row["room_id"],
            "counts": {"unread": unread},
            "prio": "high" if tweaks.get("highlight") or "sound" in tweaks else "low",
            "devices": [{"app_id": pusher["app_id"], "pushkey": pusher["pushkey"],
                         "pushkey_ts": int(pusher["created_ts"]) // 1000,
                         "data": device_data, "tweaks": tweaks}],
        }
        if data.get("format") != "event_id_only":
            entry = (await self._cache.get_many([row["event_id"]])).get(row["event_id"])
            if entry is not None:
                pdu = entry.pdu
                note["type"] = pdu.get("type")
                note["sender"] = pdu.get("sender")
                note["content"] = pdu.get("content", {})
                if pdu.get("type") == "m.room.member":
                    note["user_is_target"] = pdu.get("state_key") == pusher["user_id"]
                room = await self._rooms.get(row["room_id"])
                if room is not None:
                    state = room.state_pdus()
                    member = state.get(("m.room.member", str(pdu.get("sender"))))
                    name = member.get("content", {}).get("displayname") if member else None
                    if isinstance(name, str):
                        note["sender_display_name"] = name
                    room_name = state.get(("m.room.name", ""))
                    if room_name and isinstance(room_name.get("content", {}).get("name"), str):
                        note["room_name"] = room_name["content"]["name"]
                    alias = state.get(("m.room.canonical_alias", ""))
                    if alias and isinstance(alias.get("content", {}).get("alias"), str):
                        note["room_alias"] = alias["content"]["alias"]
        return {"notification": note}

    async def _send(self, pusher: Any, row: Any) -> set[str]:
        """POST one notification; the rejected pushkeys. Raises on anything but a 2xx."""
        url = orjson.loads(pusher["data"])["url"]
        host = urlsplit(url).hostname or ""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None and not self._policy.permits(str(literal)):
            raise GatewayError(f"{host} is not an address the outbound policy permits")
        assert self._session is not None
        body = await self._body(pusher, row)
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
