"""Wakes the sync requests (long-polls and sockets) of the users an event concerns.

It carries no data: a woken waiter recomputes its response from the caches and database. Waiters
subscribe *before* computing, so a write that lands between "compute" and "wait" still wakes them.

A waiter may carry a deadline: its future then resolves False when the deadline passes (True when
it is notified), so a parked long-poll holds only that future. Deadlines are grouped into slots of
`DEADLINE_GRAIN` seconds served by one loop timer, so a thousand parked polls share one timer
instead of owning a timer, a waiter future and a wait_for frame each (about 1 kB of memory per
poll); a timed-out poll answers at most one grain late.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Iterable, Sequence

DEADLINE_GRAIN = 0.05  # seconds


class Notifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[bool]]] = {}
        # slot number (deadline // grain, rounded up) -> its futures; None once all left early.
        self._slots: dict[int, set[asyncio.Future[bool]] | None] = {}
        self._slot_heap: list[int] = []  # the keys of _slots, earliest first
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0
        self.closed = False
        self.last_wake = 0.0  # time.monotonic() of the last notify (for metrics)

    def subscribe(self, user_id: str, deadline: float | None = None) -> asyncio.Future[bool]:
        """A future that resolves True when `user_id` is notified, or False at `deadline` (in
        the running loop's `time()`), whichever comes first. Pass the same deadline to
        `unsubscribe`."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        if self.closed:
            fut.set_result(True)
            return fut
        self._waiters.setdefault(user_id, set()).add(fut)
        if deadline is not None:
            slot = math.ceil(deadline / DEADLINE_GRAIN)
            if slot not in self._slots:
                heapq.heappush(self._slot_heap, slot)
                if self._timer is None or slot < self._timer_slot:
                    self._arm(loop, slot)
            futs = self._slots.get(slot)
            if futs is None:
                futs = self._slots[slot] = set()
            futs.add(fut)
        return fut

    def subscribe_many(self, keys: Sequence[str],
                       deadline: float | None = None) -> asyncio.Future[bool]:
        """One future woken by a notification of any of `keys` (a room peeker listens for
        the room's members, whom every change in the room wakes: see homeserver/sync/peek.py).
        Pass the same keys and deadline to `unsubscribe_many`."""
        fut = self.subscribe(keys[0], deadline)
        if not fut.done():
            for key in keys[1:]:
                self._waiters.setdefault(key, set()).add(fut)
        return fut

    def unsubscribe_many(self, keys: Sequence[str], fut: asyncio.Future[bool],
                         deadline: float | None = None) -> None:
        for key in keys[1:]:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(fut)
                if not waiters:
                    del self._waiters[key]
        self.unsubscribe(keys[0], fut, deadline)

    def close(self) -> None:
        """On shutdown: answer every parked long-poll now instead of holding the exit up."""
        self.closed = True
        self.notify_users(list(self._waiters))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._slots.clear()
        self._slot_heap.clear()

    def unsubscribe(self, user_id: str, fut: asyncio.Future[bool],
                    deadline: float | None = None) -> None:
        waiters = self._waiters.get(user_id)
        if waiters is not None:
            waiters.discard(fut)
            if not waiters:
                del self._waiters[user_id]
        if deadline is not None:
            slot = math.ceil(deadline / DEADLINE_GRAIN)
            futs = self._slots.get(slot)
            if futs is not None:
                futs.discard(fut)
                if not futs:
                    self._slots[slot] = None  # frees the set; the key waits for its timer
        if not fut.done():
            fut.cancel()

    def notify_users(self, user_ids: Iterable[str]) -> None:
        self.last_wake = time.monotonic()
        for user_id in user_ids:
            waiters = self._waiters.pop(user_id, None)
            if waiters:
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(True)

    @property
    def waiting_users(self) -> int:
        return len(self._waiters)

    def _arm(self, loop: asyncio.AbstractEventLoop, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_slot = slot
        self._timer = loop.call_at(slot * DEADLINE_GRAIN, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer: time out every slot that is due, then wait for the next one."""
        self._timer = None
        # The slot the timer was set for is due even if the loop clock reads a hair earlier.
        due = max(self._timer_slot, math.floor(loop.time() / DEADLINE_GRAIN))
        heap = self._slot_heap
        while heap and heap[0] <= due:
            futs = self._slots.pop(heapq.heappop(heap), None)
            if futs:
                for fut in futs:
                    if not fut.done():
                        fut.set_result(False)
        if heap:
            self._arm(loop, heap[0])
