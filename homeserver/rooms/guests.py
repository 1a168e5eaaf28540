"""Guests in rooms (spec "Guest access", "Server behaviour"): they join only rooms whose
m.room.guest_access is `can_join`, and when a room stops allowing that, "the server MUST set
those users' m.room.member state to `leave`".

`guests_can_join` is the rule (RoomService checks it on every guest join). `GuestRevocation`
does the second part: a room writer persist hook, so it sees every m.room.guest_access event
that becomes current state, sent here or received from another server, and once the event is
committed it makes each local guest joined to (or invited into) the room leave, as the guest
itself, as the reference server does (no power level is needed, and the decision stays with
the guest's own server). Whether a member is a guest is read from the users table, so a guest
who upgraded to a full account stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeserver.rooms.state import RoomData
from homeserver.rooms.writer import PersistEvent
from homeserver.storage.database import Conn
from homeserver.types import Requester

log = logging.getLogger(__name__)


def guests_can_join(room: RoomData) -> bool:
    """Whether the room's current m.room.guest_access is `can_join` (absent: forbidden)."""
    ev = room.state.get(("m.room.guest_access", ""))
    return ev is not None and ev.pdu.get("content", {}).get("guest_access") == "can_join"


class GuestRevocation:
    """PersistHook (homeserver/rooms/writer.py) and background service (its stop waits for
    the leaves under way)."""

    def __init__(self, server_name: str,
                 guests_among: Callable[[list[str]], Awaitable[list[str]]]) -> None:
        self._server_name = server_name
        self._guests_among = guests_among
        # RoomService.leave, set when wiring (the room service is built after the writer).
        self.leave: Callable[[Requester, str], Awaitable[str]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -------------------------------------------------------------- PersistHook

    def wants(self, room: RoomData, ev: PersistEvent) -> bool:
        pdu = ev.pdu
        if pdu.get("type") != "m.room.guest_access" or ev.state_key != "":
            return False
        content = pdu.get("content")
        return (ev.served and ev.current_own
                and not (isinstance(content, dict) and content.get("guest_access") == "can_join"))

    async def write(self, conn: Conn, room: RoomData, events: Sequence[PersistEvent]) -> Any:
        return None  # nothing to write with the event; the leaves follow it

    def finished(self, room: RoomData, written: Any, committed: bool) -> None:
        if not committed or self.leave is None:
            return
        # After the writer's lock is released: each leave takes it again.
        task = asyncio.get_running_loop().create_task(self._revoke(room))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -------------------------------------------------------------- the leaves

    async def _revoke(self, room: RoomData) -> None:
        assert self.leave is not None
        if guests_can_join(room):
            return  # allowed again meanwhile
        suffix = ":" + self._server_name
        local = [k for (t, k), e in room.state.items()
                 if t == "m.room.member" and k.endswith(suffix)
                 and e.membership in ("join", "invite")]
        try:
            guests = await self._guests_among(local)
        except Exception:
            log.exception("guest access revoked in %s: could not list its guests", room.room_id)
            return
        for user_id in guests:
            try:
                await self.leave(Requester(user_id, "", is_guest=True), room.room_id)
            except Exception:
                log.exception("guest access revoked in %s: %s could not be made to leave",
                              room.room_id, user_id)

    # -------------------------------------------------------------- background

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
