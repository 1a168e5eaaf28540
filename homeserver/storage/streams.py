"""Stream positions from PostgreSQL sequences, with a "persisted up to" mark shared by processes.

Every feed that sync, federation or push reads (room events, receipts, account data, to-device)
is a table whose rows carry a position from a PostgreSQL sequence, so two processes writing to
one database never hand out the same position. Positions commit out of order (across rooms,
and across processes), so readers are only ever shown `current`: the position below which every
allocated position has finished, here and in every other live process. Without that a sync
could skip an event that commits late.

Allocation reserves a block of sequence values at a time (one round trip per `block`
positions) and hands them out in increasing order, so the hot path costs no extra round trip.
Another process must not assume anything about values we reserved but have not used, so what
we publish for it (`publishable_floor`) stops below our lowest unfinished or unused value; in
multi-process mode an idle block is given back (its values become gaps) so others do not wait.

The "wake the waiters once current covers this position" logic lives here, once: a writer calls
`finish(pos, wake=users)` and those users' long-polls are woken when `current` reaches `pos`.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable

from homeserver.storage.database import Database

Wake = Callable[[Iterable[str]], None]


class Stream:
    def __init__(self, name: str, sequence: str, db: Database | None, current: int,
                 wake: Wake | None = None, block: int = 100) -> None:
        self.name = name
        self.sequence = sequence
        self._db = db
        self._wake = wake
        self.block = block
        self._reserved: deque[int] = deque()
        self._in_flight: list[int] = []  # heap of handed-out, unfinished positions
        self._finished: set[int] = set()
        self._max_handed = current
        self._local = current
        self._others: int | None = None  # floor of the other live processes, None if alone
        self._unwoken: dict[int, set[str]] = {}
        self._lock = asyncio.Lock()  # reservation and publication never interleave
        self.last_handout = 0.0
        self._listeners: list[Callable[[int], None]] = []
        # With other processes around: the positions this process handed out and that their
        # readers (our cache refresher) have not passed yet.
        self._mine: set[int] = set()
        self._announced = current

    def on_advance(self, listener: Callable[[int], None]) -> None:
        """Call `listener(current)` whenever `current` moves forward (background consumers)."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ allocation

    async def allocate(self) -> int:
        return (await self.allocate_many(1))[0]

    async def allocate_many(self, n: int) -> list[int]:
        """`n` new positions, in increasing order, each to be `finish`ed exactly once."""
        while len(self._reserved) < n:
            await self._reserve(max(n, self.block))
        out = [self._reserved.popleft() for _ in range(n)]
        for pos in out:
            heapq.heappush(self._in_flight, pos)
        if self._others is not None:
            self._mine.update(out)
        self._max_handed = max(self._max_handed, out[-1])
        self.last_handout = time.monotonic()
        return out

    async def reserve(self) -> None:
        """Fetch a block now, so the next allocations need no round trip."""
        await self._reserve(self.block)

    async def _reserve(self, n: int) -> None:
        if self._db is None:  # a stream of this process only (tests of pure parts)
            start = max(self._max_handed, self._reserved[-1] if self._reserved else 0) + 1
            self._reserved.extend(range(start, start + n))
            return
        async with self._lock:
            if len(self._reserved) >= n:
                return
            rows = await self._db.fetch(
                "SELECT nextval($1::regclass) AS v FROM generate_series(1, $2)",
                self.sequence, n)
        values = sorted(int(r["v"]) for r in rows)
        if self._reserved and values[0] < self._reserved[-1]:
            merged = sorted([*self._reserved, *values])
            self._reserved = deque(merged)
        else:
            self._reserved.extend(values)

    def finish(self, pos: int, wake: Iterable[str] = ()) -> None:
        """Mark a position done (committed or abandoned) and wake `wake` once it is visible."""
        users = set(wake)
        if users:
            self._unwoken.setdefault(pos, set()).update(users)
        self._finished.add(pos)
        while self._in_flight and self._in_flight[0] in self._finished:
            self._finished.discard(heapq.heappop(self._in_flight))
        self._update_local()
        self._wake_visible()

    def _update_local(self) -> None:
        """Everything we allocated up to `_local` has finished, and nothing we will hand out
        later (reserved values) is at or below it."""
        lowest = []
        if self._in_flight:
            lowest.append(self._in_flight[0])
        if self._reserved:
            lowest.append(self._reserved[0])
        self._local = min(lowest) - 1 if lowest else self._max_handed

    def wake_at(self, pos: int, users: Iterable[str]) -> None:
        """Wake `users` once `current` covers `pos` (for a position finished elsewhere)."""
        self._unwoken.setdefault(pos, set()).update(users)
        self._wake_visible()

    def _wake_visible(self) -> None:
        current = self.current
        if current > self._announced:
            self._announced = current
            for listener in self._listeners:
                listener(current)
        if not self._unwoken or self._wake is None:
            return
        ready = [p for p in self._unwoken if p <= current]
        if not ready:
            return
        users: set[str] = set()
        for p in ready:
            users |= self._unwoken.pop(p)
        self._wake(users)

    # ------------------------------------------------------------------ reading

    @property
    def current(self) -> int:
        """The highest position below which everything, here and elsewhere, has finished."""
        return self.current_with(self._others)

    def current_with(self, others: int | None) -> int:
        """`current` if the other processes' floor were `others`."""
        if others is None:
            return self._local
        if self._in_flight or self._reserved:
            return min(self._local, others)
        return others  # nothing of ours is pending: only the others hold the stream back

    @property
    def local_current(self) -> int:
        return self._local

    # ------------------------------------------------------------------ other processes

    def is_mine(self, pos: int) -> bool:
        return pos in self._mine

    def forget_mine_upto(self, pos: int) -> None:
        self._mine = {p for p in self._mine if p > pos}

    def set_others_floor(self, floor: int | None) -> None:
        """What the other live processes have finished up to (None: no other process)."""
        self._others = floor
        self._wake_visible()

    def publishable_floor(self) -> int | None:
        """What another process may assume of us: every position we will ever commit is above
        it. None means "idle": the caller publishes the sequence's value, read under `lock`."""
        lowest = []
        if self._in_flight:
            lowest.append(self._in_flight[0])
        if self._reserved:
            lowest.append(self._reserved[0])
        return min(lowest) - 1 if lowest else None

    def release_reserved(self) -> None:
        """Give back unused reserved values (they become gaps) so others need not wait."""
        self._reserved.clear()
        self._update_local()
        self._wake_visible()

    @property
    def lock(self) -> asyncio.Lock:
        return self._lock


class IdPool:
    """Unique ids (no order needed, gaps fine) from a sequence, fetched a block at a time:
    state group ids, which a batch must know before its transaction starts."""

    def __init__(self, sequence: str, db: Database, block: int = 100) -> None:
        self._sequence = sequence
        self._db = db
        self._block = block
        self._free: deque[int] = deque()
        self._lock = asyncio.Lock()

    async def take(self) -> int:
        if not self._free:
            async with self._lock:
                if not self._free:
                    rows = await self._db.fetch(
                        "SELECT nextval($1::regclass) AS v FROM generate_series(1, $2)",
                        self._sequence, self._block)
                    self._free.extend(sorted(int(r["v"]) for r in rows))
        return self._free.popleft()
