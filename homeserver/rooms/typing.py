"""Typing notifications (m.typing): who is typing in which room, in memory only.

Typing is ephemeral by design (the spec's server "does not remember" it), so nothing is written to
the database. Each change of a room's typing set bumps one in-memory position; a sync asks which
rooms changed in (since, upto] and gets each such room's whole current set (clients REPLACE their
list). Positions restart at 0 with the process; SyncToken.capped turns older tokens into "now".

Expiry uses no task per user: `TypingTimers` is a pure heap of deadlines with lazy deletion (a
refreshed or stopped user leaves a stale heap entry that is skipped when popped), and one
background task sleeps until the earliest deadline or until an earlier one is added.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Callable

from homeserver.errors import forbidden
from homeserver.rooms.state import RoomData, RoomRegistry
from homeserver.storage.streams import Stream
from homeserver.streams.notifier import Notifier
from homeserver.types import JsonDict

log = logging.getLogger(__name__)

MAX_TIMEOUT_MS = 120_000
DEFAULT_TIMEOUT_MS = 30_000
REMOTE_TIMEOUT_MS = 30_000  # m.typing EDUs carry no timeout: the receiver picks one (Synapse's)

# (room_id, user_id, typing): a local user's typing notice, for federation to send on.
TypingHook = Callable[[str, str, bool], None]


class TypingTimers:
    """Pure bookkeeping: (room, user) -> deadline, and a heap to find the expired ones."""

    def __init__(self) -> None:
        self._deadline: dict[tuple[str, str], float] = {}
        self._by_room: dict[str, dict[str, None]] = {}  # insertion-ordered user sets
        self._heap: list[tuple[float, str, str]] = []

    def start(self, room_id: str, user_id: str, deadline: float) -> bool:
        """Mark the user typing until `deadline`; True if the room's set changed."""
        key = (room_id, user_id)
        was = key in self._deadline
        self._deadline[key] = deadline
        self._by_room.setdefault(room_id, {})[user_id] = None
        heapq.heappush(self._heap, (deadline, room_id, user_id))
        return not was

    def stop(self, room_id: str, user_id: str) -> bool:
        """Remove the user; True if they were typing (the heap entry goes stale)."""
        if self._deadline.pop((room_id, user_id), None) is None:
            return False
        users = self._by_room[room_id]
        del users[user_id]
        if not users:
            del self._by_room[room_id]
        return True

    def expire(self, now: float) -> list[tuple[str, str]]:
        """Remove and return every (room, user) whose deadline is at or before `now`."""
        out: list[tuple[str, str]] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, room_id, user_id = heapq.heappop(self._heap)
            if self._deadline.get((room_id, user_id)) == deadline:
                self.stop(room_id, user_id)
                out.append((room_id, user_id))
        return out

    def next_deadline(self) -> float | None:
        """The earliest live deadline (stale entries at the top are dropped on the way)."""
        while self._heap:
            deadline, room_id, user_id = self._heap[0]
            if self._deadline.get((room_id, user_id)) == deadline:
                return deadline
            heapq.heappop(self._heap)
        return None

    def users(self, room_id: str) -> list[str]:
        return list(self._by_room.get(room_id, ()))

    def rooms(self) -> list[str]:
        return list(self._by_room)

    def __len__(self) -> int:
        return len(self._deadline)


class TypingService:
    """RoomEphemeralSource for m.typing, and a Background service (the expiry task)."""

    def __init__(self, rooms: RoomRegistry, notifier: Notifier,
                 stream: Stream | None = None) -> None:
        self._rooms = rooms
        self._notifier = notifier
        self._timers = TypingTimers()
        # Positions from a sequence, so tokens from any process sharing the database compare;
        # typing state itself lives in this process's memory.
        self._stream = stream or Stream("typing", "typing_seq", None, 0, notifier.notify_users)
        self._tasks: set[asyncio.Task[None]] = set()
        self._room_pos: dict[str, int] = {}  # position of each room's latest change
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.on_local: list[TypingHook] = []

    # ------------------------------------------------------------------ writes

    async def set_typing(self, room_id: str, user_id: str, typing: bool,
                         timeout_ms: int) -> None:
        """Start (for up to `timeout_ms`, capped at 120 s) or stop the user's typing notice.

        Raises:
            MatrixError: M_FORBIDDEN if the user is not joined to the room.
        """
        room = await self._rooms.get(room_id)
        if room is None or room.membership(user_id) != "join":
            raise forbidden("You are not joined to this room")
        changed = await self._set(room, user_id, typing, timeout_ms)
        if typing or changed:  # a repeated start renews the other servers' timeout too
            for hook in self.on_local:
                hook(room_id, user_id, typing)

    async def set_remote(self, room_id: str, user_id: str, typing: bool) -> None:
        """An m.typing EDU from the user's server (which the caller checked); ignored for a
        user not joined here."""
        room = await self._rooms.get(room_id)
        if room is not None and room.membership(user_id) == "join":
            await self._set(room, user_id, typing, REMOTE_TIMEOUT_MS)

    async def _set(self, room: RoomData, user_id: str, typing: bool, timeout_ms: int) -> bool:
        room_id = room.room_id
        if typing:
            timeout_ms = min(max(timeout_ms, 0), MAX_TIMEOUT_MS)
            deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
            earliest = self._timers.next_deadline()
            changed = self._timers.start(room_id, user_id, deadline)
            if earliest is None or deadline < earliest:
                self._wakeup.set()  # the expiry task sleeps too long otherwise
        else:
            changed = self._timers.stop(room_id, user_id)
        if changed:
            await self._changed(room_id, room.joined_members())
        return changed

    def on_membership(self, room: RoomData, user_id: str, membership: str) -> None:
        """RoomWriter hook: a user who is no longer joined (left, kicked, banned) stops typing
        at once instead of at their timeout."""
        if membership != "join" and self._timers.stop(room.room_id, user_id):
            for hook in self.on_local:
                hook(room.room_id, user_id, False)
            task = asyncio.get_running_loop().create_task(
                self._changed(room.room_id, room.joined_members()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _changed(self, room_id: str, members: list[str]) -> None:
        pos = await self._stream.allocate()
        self._room_pos[room_id] = pos
        self._stream.finish(pos, wake=members)

    # ------------------------------------------------------------------ sync source

    def current(self) -> int:
        return self._stream.current

    async def for_rooms(self, user_id: str, room_ids: list[str], since: int | None,
                        upto: int) -> dict[str, list[JsonDict]]:
        """Current typing set of each room that changed in (since, upto]; on initial sync
        (since None) every room with someone typing or whose typing changed since this process
        started, an empty set included (as the reference server: a client that starts over
        after someone stopped sees them stopped)."""
        out: dict[str, list[JsonDict]] = {}
        for room_id in room_ids:
            if since is None:
                users = self._timers.users(room_id)
                if not users and room_id not in self._room_pos:
                    continue
            else:
                pos = self._room_pos.get(room_id, 0)
                if not since < pos <= upto:
                    continue
                users = self._timers.users(room_id)
            out[room_id] = [{"type": "m.typing", "content": {"user_ids": users}}]
        return out

    # ------------------------------------------------------------------ expiry task

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="typing-expiry")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wakeup.clear()
            deadline = self._timers.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            try:
                await self._expire(loop.time())
            except Exception:  # keep the timer alive whatever one room does
                log.exception("typing expiry failed")

    async def _expire(self, now: float) -> None:
        rooms: dict[str, None] = {}
        for room_id, user_id in self._timers.expire(now):
            rooms[room_id] = None
            for hook in self.on_local:  # federation sends only its own users' stops
                hook(room_id, user_id, False)
        for room_id in rooms:
            room = self._rooms.loaded(room_id) or await self._rooms.get(room_id)
            await self._changed(room_id, room.joined_members() if room is not None else [])
