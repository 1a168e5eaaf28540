"""Stream position allocation with a "persisted up to" mark.

Positions are handed out in memory (one process owns the database's writes) and may commit out of
order across rooms, so readers are only ever shown `current`: the position below which every
allocated position has finished. Without that a sync could skip an event that commits late.
"""

from __future__ import annotations

import heapq


class StreamIdGen:
    def __init__(self, current: int) -> None:
        self._next = current + 1
        self._in_flight: list[int] = []
        self._finished: set[int] = set()
        self._current = current

    def allocate(self) -> int:
        pos = self._next
        self._next += 1
        heapq.heappush(self._in_flight, pos)
        return pos

    def finish(self, pos: int) -> None:
        """Mark a position done (committed or abandoned); advances `current` when possible."""
        self._finished.add(pos)
        while self._in_flight and self._in_flight[0] in self._finished:
            done = heapq.heappop(self._in_flight)
            self._finished.discard(done)
            self._current = done
        if not self._in_flight:
            self._current = self._next - 1

    @property
    def current(self) -> int:
        return self._current
