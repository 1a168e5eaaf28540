"""Devices (spec "Device Management"): listing, renaming and deleting a user's devices, and the
last-seen time and IP of each, which every authenticated request updates.

Writing last seen on every request would put a database write on every request, so `LastSeen`
keeps the values in memory and one background task writes them in batches, at most once per
device per interval; reads overlay the fresher in-memory value on the stored one. Deleting a
device ends its sessions, so DeviceService also drops the device's cached tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import asyncpg

from homeserver.errors import not_found
from homeserver.storage.database import Conn, Database
from homeserver.types import JsonDict, Requester
from homeserver.users.store import UserStore
from homeserver.users.tokens import TokenCache

log = logging.getLogger(__name__)

_DeviceKey = tuple[str, str]  # (user_id, device_id)


def _now() -> int:
    return int(time.time() * 1000)


class LastSeen:
    """Last seen (ts, ip) per device, written to the devices table in batches.

    `_seen` holds values not yet known to be in the DB (including ones being written),
    `_seen_dirty` the devices not yet handed to a flush, `_seen_flushed` when each device was
    last flushed (monotonic; pruned once the interval has passed). A device never flushed yet
    is written at the next wake-up.
    """

    def __init__(self, db: Database, store: UserStore, flush_interval_s: float = 60.0) -> None:
        self._db = db
        self._store = store
        self._seen_interval = flush_interval_s
        self._seen: dict[_DeviceKey, tuple[int, str | None]] = {}
        self._seen_dirty: set[_DeviceKey] = set()
        self._seen_flushed: dict[_DeviceKey, float] = {}
        self._seen_wakeup = asyncio.Event()
        self._seen_lock = asyncio.Lock()
        self._seen_task: asyncio.Task[None] | None = None

    def record(self, requester: Requester, ip: str | None) -> None:
        key = (requester.user_id, requester.device_id)
        self._seen[key] = (_now(), ip)
        self._seen_dirty.add(key)
        if key not in self._seen_flushed:
            self._seen_wakeup.set()  # first request since login (or in a while): write soon

    def forget(self, user_id: str, device_ids: list[str] | None) -> None:
        for key in [k for k in self._seen if k[0] == user_id
                    and (device_ids is None or k[1] in device_ids)]:
            self._seen.pop(key, None)
            self._seen_dirty.discard(key)

    def overlay(self, user_id: str, d: JsonDict) -> JsonDict:
        """Overlay the in-memory last seen value (if fresher) on a device's JSON."""
        seen = self._seen.get((user_id, d["device_id"]))
        if seen is not None and seen[0] >= d.get("last_seen_ts", 0):
            d["last_seen_ts"] = seen[0]
            if seen[1] is not None:
                d["last_seen_ip"] = seen[1]
        return d

    async def flush(self, force: bool = True) -> None:
        """Write pending last seen values in one UPDATE: all of them, or (force=False) those
        of devices not flushed within the interval. Flushes run one at a time, so when this
        returns, every value recorded before the call is in the DB."""
        async with self._seen_lock:
            now = time.monotonic()
            for key, at in list(self._seen_flushed.items()):
                if now - at >= self._seen_interval:
                    del self._seen_flushed[key]
            due = [k for k in self._seen_dirty if force or k not in self._seen_flushed]
            if not due:
                return
            batch = [(k, self._seen[k]) for k in due if k in self._seen]
            self._seen_dirty.difference_update(due)
            for k in due:
                self._seen_flushed[k] = now
            try:
                async with self._db.connection() as conn:
                    await self._store.update_last_seen(
                        conn, [k[0] for k, _ in batch], [k[1] for k, _ in batch],
                        [v[0] for _, v in batch], [v[1] for _, v in batch])
            except BaseException:
                for k, v in batch:  # retry later unless a newer value is already pending
                    if self._seen.get(k) == v:
                        self._seen_dirty.add(k)
                raise
            for k, v in batch:
                if self._seen.get(k) == v:
                    del self._seen[k]

    async def start(self) -> None:
        if self._seen_task is None:
            self._seen_task = asyncio.create_task(self._run(), name="last-seen-flush")

    async def stop(self) -> None:
        task, self._seen_task = self._seen_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush()
        except Exception:
            log.exception("Could not write devices' last seen values")

    async def _run(self) -> None:
        tick = max(0.01, min(5.0, self._seen_interval))
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._seen_wakeup.wait(), tick)
            self._seen_wakeup.clear()
            try:
                await self.flush(force=False)
            except Exception as e:
                if not self._db.outage(e):
                    log.exception("Could not write devices' last seen values")
                await asyncio.sleep(tick)


class DeviceChanges(Protocol):
    """The device list stream (e2ee/device_lists.py): others' clients learn from it that a
    device went or was renamed, in the same transaction as the change."""

    def change(self, user_id: str, only_self: bool = False
               ) -> AbstractAsyncContextManager[int]: ...

    async def record(self, conn: Conn, pos: int, user_id: str,
                     device_ids: list[str]) -> None: ...


class DeviceService:
    def __init__(self, db: Database, store: UserStore, tokens: TokenCache,
                 last_seen: LastSeen, changes: DeviceChanges | None = None) -> None:
        self._db = db
        self._store = store
        self._tokens = tokens
        self._last_seen = last_seen
        self.changes = changes

    async def devices(self, user_id: str) -> list[JsonDict]:
        async with self._db.connection() as conn:
            rows = await self._store.devices(conn, user_id)
        return [self._last_seen.overlay(user_id, _device_json(user_id, r)) for r in rows]

    async def device(self, user_id: str, device_id: str) -> JsonDict:
        async with self._db.connection() as conn:
            row = await self._store.device(conn, user_id, device_id)
        if row is None:
            raise not_found("Unknown device")
        return self._last_seen.overlay(user_id, _device_json(user_id, row))

    async def has_device(self, user_id: str, device_id: str) -> bool:
        async with self._db.connection() as conn:
            return await self._store.device(conn, user_id, device_id) is not None

    async def create_device(self, user_id: str, device_id: str, name: str | None) -> bool:
        """A device with no access token (an application service manages its users'
        encryption this way, spec v1.17); False if the user has it already."""
        if self.changes is None:
            async with self._db.connection() as conn:
                return bool(await self._store.upsert_device(conn, user_id, device_id, name,
                                                             _now(), None))
        async with self.changes.change(user_id) as pos, self._db.transaction() as conn:
            new = bool(await self._store.upsert_device(conn, user_id, device_id, name, _now(),
                                                       None))
            if new:
                await self.changes.record(conn, pos, user_id, [device_id])
            return new

    async def rename_device(self, user_id: str, device_id: str, name: str) -> None:
        if self.changes is None:
            async with self._db.connection() as conn:
                if not await self._store.rename_device(conn, user_id, device_id, name):
                    raise not_found("Unknown device")
            return
        # The display name is part of what /keys/query shows, so a rename is a change.
        async with self.changes.change(user_id) as pos, self._db.transaction() as conn:
            if not await self._store.rename_device(conn, user_id, device_id, name):
                raise not_found("Unknown device")
            await self.changes.record(conn, pos, user_id, [device_id])

    async def delete_devices(self, user_id: str, device_ids: list[str] | None) -> None:
        """Delete these devices of the user (None: all of them), ending their sessions; their
        keys go with them, and users sharing a room are told."""
        if self.changes is None:
            async with self._db.transaction() as conn:
                await self._store.delete_devices(conn, user_id, device_ids)
        else:
            async with self.changes.change(user_id) as pos, self._db.transaction() as conn:
                gone = await self._store.delete_devices(conn, user_id, device_ids)
                if gone:
                    await self.changes.record(conn, pos, user_id, gone)
        self._tokens.forget_devices(user_id, device_ids)
        self._last_seen.forget(user_id, device_ids)


def _device_json(user_id: str, r: asyncpg.Record) -> JsonDict:
    # display_name is always present (null when unset): matrix-nio rejects a device without it.
    d: JsonDict = {"device_id": r["device_id"], "user_id": user_id,
                   "display_name": r["display_name"]}
    if r["last_seen_ts"] is not None:
        d["last_seen_ts"] = r["last_seen_ts"]
    if r["last_seen_ip"] is not None:
        d["last_seen_ip"] = r["last_seen_ip"]
    return d
