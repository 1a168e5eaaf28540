"""The processes sharing one database, and the stream floors they publish to each other.

Each Parley process has a unique instance name and a row in the `instances` table. In it, it
publishes, per persisted stream, a floor: every position it will ever commit is above it (see
`Stream.publishable_floor`). A process reads the other live rows and bounds each stream's
`current` by the lowest of their floors, so a sync on one process never shows a position past
an event another process has allocated but not yet committed.

A process that starts while others are live waits until each of them lists it in its `peers`
column: from then on they bound their own `current` by its floor, so nothing it commits can be
skipped by their readers. Alone, a process only heartbeats every `idle_interval`; with peers it
publishes and reads every `busy_interval` and gives back idle reserved blocks. Waking a long-poll
on one process for a write on another is worker mode, a later step: here the reader notices the
other's writes on its next poll (`on_advance` refreshes its caches first).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from homeserver.storage.database import Database
from homeserver.storage.streams import Stream

log = logging.getLogger(__name__)

DEAD_AFTER_MS = 10_000
# Called with (stream name, previous current, new current) before readers see the new current.
OnAdvance = Callable[[str, int, int], Awaitable[None]]

_NOW_MS = "(extract(epoch from clock_timestamp()) * 1000)::bigint"


class InstanceRegistry:
    def __init__(self, db: Database, name: str, streams: list[Stream],
                 on_advance: OnAdvance | None = None,
                 on_peers: list[Callable[[list[str]], None]] | None = None,
                 idle_interval: float = 1.0,
                 busy_interval: float = 0.05, release_idle_after: float = 0.05) -> None:
        self._db = db
        self.name = name
        self._streams = streams
        self._on_advance = on_advance
        self._on_peers = on_peers or []
        self._idle_interval = idle_interval
        self._busy_interval = busy_interval
        self._release_after = release_idle_after
        self.peers: list[str] = []
        self._refreshed: dict[str, int] = {}  # per stream: others' writes refreshed up to here
        self._task: asyncio.Task[None] | None = None
        self._started_ms = int(time.time() * 1000)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, wait_for_peers: float = 15.0) -> None:
        """Register, then wait until every live peer has seen us (so it bounds by our floor)."""
        await self.tick()
        deadline = time.monotonic() + wait_for_peers
        while True:
            rows = await self._peer_rows()
            pending = [r["name"] for r in rows if self.name not in (r["peers"] or [])]
            if not pending or time.monotonic() > deadline:
                if pending:
                    log.warning("peers %s did not acknowledge this instance", pending)
                break
            await asyncio.sleep(self._busy_interval)
            await self.tick()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        try:
            await self._db.execute("DELETE FROM instances WHERE name = $1", self.name)
        except Exception:  # the pool may be closing; the row expires by itself
            log.debug("could not remove instance row", exc_info=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._busy_interval if self.peers else self._idle_interval)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not self._db.outage(e):
                    log.exception("instance registry tick failed")

    # ------------------------------------------------------------------ one round

    async def tick(self) -> None:
        """Publish our floors and heartbeat, read the peers' floors, apply them."""
        if self.peers:
            now = time.monotonic()
            for s in self._streams:
                if not s._in_flight and now - s.last_handout > self._release_after:
                    s.release_reserved()
        await self._publish()
        rows = await self._peer_rows()
        peers = sorted(r["name"] for r in rows)
        if peers != self.peers:
            for hook in self._on_peers:
                hook(peers)
        self.peers = peers
        floors: dict[str, int] = {}
        for r in rows:
            theirs = orjson.loads(r["floors"]) if r["floors"] else {}
            for s in self._streams:
                v = theirs.get(s.name)
                if isinstance(v, int):
                    floors[s.name] = min(floors.get(s.name, v), v)
                else:  # a peer that does not publish this stream yet holds it back
                    floors[s.name] = min(floors.get(s.name, 0), 0)
        for s in self._streams:
            new = floors.get(s.name) if rows else None
            if new is None:
                self._refreshed.pop(s.name, None)
            elif self._on_advance is not None:
                # Everything the others wrote up to their new floor is refreshed in our caches
                # before any reader can be shown it, however our own writes move `current`.
                done = self._refreshed.setdefault(s.name, s.current)
                if new > done:
                    await self._on_advance(s.name, done, new)
                    self._refreshed[s.name] = new
            s.set_others_floor(new)

    async def _publish(self) -> None:
        locks = [s.lock for s in self._streams]
        for lock in locks:
            await lock.acquire()
        try:
            known: list[int | None] = [s.publishable_floor() for s in self._streams]
            parts = []
            args: list[object] = [self.name, self._started_ms, self.peers]
            for s, v in zip(self._streams, known, strict=True):
                args.append(v)
                parts.append(f"'{s.name}', COALESCE(${len(args)}::bigint,"
                             f" pg_sequence_last_value('{s.sequence}'::regclass), 0)")
            floors = f"jsonb_build_object({', '.join(parts)})"
            await self._db.execute(
                "INSERT INTO instances (name, started_ms, heartbeat_ms, floors, peers)"
                f" VALUES ($1, $2, {_NOW_MS}, {floors}, $3::text[])"
                " ON CONFLICT (name) DO UPDATE SET started_ms = EXCLUDED.started_ms,"
                " heartbeat_ms = EXCLUDED.heartbeat_ms, floors = EXCLUDED.floors,"
                " peers = EXCLUDED.peers", *args)
        finally:
            for lock in locks:
                lock.release()

    async def _peer_rows(self) -> list[dict[str, Any]]:
        rows = await self._db.fetch(
            "SELECT name, floors::text AS floors, peers FROM instances"
            f" WHERE name <> $1 AND heartbeat_ms > {_NOW_MS} - $2", self.name, DEAD_AFTER_MS)
        return [dict(r) for r in rows]
