"""Wakes the sync requests (long-polls and sockets) of the users an event concerns.

It carries no data: a woken waiter recomputes its response from the caches and database. Waiters
subscribe *before* computing, so a write that lands between "compute" and "wait" still wakes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Notifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self.closed = False

    def subscribe(self, user_id: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_result(None)
            return fut
        self._waiters.setdefault(user_id, set()).add(fut)
        return fut

    def close(self) -> None:
        """On shutdown: answer every parked long-poll now instead of holding the exit up."""
        self.closed = True
        self.notify_users(list(self._waiters))

    def unsubscribe(self, user_id: str, fut: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(user_id)
        if waiters is not None:
            waiters.discard(fut)
            if not waiters:
                del self._waiters[user_id]
        if not fut.done():
            fut.cancel()

    def notify_users(self, user_ids: Iterable[str]) -> None:
        for user_id in user_ids:
            waiters = self._waiters.pop(user_id, None)
            if waiters:
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)

    @property
    def waiting_users(self) -> int:
        return len(self._waiters)
