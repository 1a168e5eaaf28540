"""Room previews (spec "Room Previews"): GET /events?room_id= for a room the user has not
joined, the event stream of that one room, readable by anyone (guests included) while its
history visibility is `world_readable`.

"For clients which have not joined a room, servers are required to only return events where
the room state at the event had the m.room.history_visibility state event present with
history_visibility value world_readable": the room's timeline goes through `Visibility` as a
non-member's. Besides the timeline a peeker gets what a member's stream has of the room
itself: its typing notices and receipts, and the presence of its joined members (as the
reference server's peeking stream does). The user's own rooms are not in it; a user who has
joined the room reads the ordinary stream instead.

Tokens are the sync tokens of /sync and GET /events, so a peeker moves between the two
freely. A long poll waits as /sync does (subscribed before computing, so no wake-up is lost),
woken by the notifier for any of the room's joined members: every room event, typing notice
and receipt wakes them all, and so does a member's presence change, so a peeker hears of each
without a key of its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from homeserver.errors import forbidden
from homeserver.presence.service import PresenceService
from homeserver.rooms.state import RoomData, RoomRegistry
from homeserver.rooms.visibility import Visibility
from homeserver.streams.notifier import Notifier
from homeserver.streams.tokens import SyncToken
from homeserver.sync.service import SyncService
from homeserver.types import JsonDict, Requester

TIMELINE_LIMIT = 100  # as GET /events: the newest events of a longer gap


def world_readable(room: RoomData) -> bool:
    hv = room.state.get(("m.room.history_visibility", ""))
    return hv is not None and hv.pdu.get("content", {}).get("history_visibility") == \
        "world_readable"


@dataclass(slots=True)
class PeekResult:
    chunk: list[JsonDict]
    end: SyncToken


class RoomPeek:
    def __init__(self, rooms: RoomRegistry, sync: SyncService, visibility: Visibility,
                 notifier: Notifier, presence: PresenceService | None = None) -> None:
        self._rooms = rooms
        self._sync = sync
        self._visibility = visibility
        self._notifier = notifier
        self._presence = presence

    async def peeking(self, requester: Requester, room_id: str) -> bool:
        """Whether a GET /events naming `room_id` is a peek (the user is not joined to it).

        Raises:
            MatrixError: 403 M_FORBIDDEN for a room the user is not joined to and may not
                peek into (not world-readable, or unknown).
        """
        room = await self._rooms.get(room_id)
        if room is not None and room.membership(requester.user_id) == "join":
            return False
        if room is None or not world_readable(room):
            raise forbidden("You are not in this room and it is not world-readable")
        return True

    async def events(self, requester: Requester, room_id: str, since: SyncToken,
                     timeout_ms: int) -> PeekResult:
        """The room's events after `since`; with nothing new, waits up to `timeout_ms`.

        Raises:
            MatrixError: 403 as `peeking` when the room is not (or no longer) world-readable.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0, timeout_ms) / 1000
        waits = timeout_ms > 0
        while True:
            room = await self._room(room_id)
            keys = [requester.user_id, *room.joined_members()]
            fut = self._notifier.subscribe_many(keys, deadline if waits else None)
            try:
                result = await self._compute(requester, room, since)
                if result.chunk or not waits or loop.time() >= deadline:
                    return result
                if not await fut or self._notifier.closed:
                    return await self._compute(requester, await self._room(room_id), since)
            finally:
                self._notifier.unsubscribe_many(keys, fut, deadline if waits else None)

    async def _room(self, room_id: str) -> RoomData:
        room = await self._rooms.get(room_id)
        if room is None or not world_readable(room):
            raise forbidden("You are not in this room and it is not world-readable")
        return room

    async def _compute(self, requester: Requester, room: RoomData,
                       since: SyncToken) -> PeekResult:
        now = self._sync.current_token()
        since = since.capped(now)
        uid, dev = requester.user_id, requester.device_id
        chunk: list[JsonDict] = []
        if since.events < now.events:
            events, _ = await self._sync.timeline(room, since.events, now.events,
                                                  TIMELINE_LIMIT)
            events = await self._visibility.filter(uid, events, currently_joined=False)
            chunk += [e.to_client(uid, dev) for e in events]
        sources = self._sync.sources
        for source, start, upto in ((sources.typing, since.typing, now.typing),
                                    (sources.receipts, since.receipts, now.receipts)):
            if source is not None and start < upto:
                got = await source.for_rooms(uid, [room.room_id], start, upto)
                chunk += [{**e, "room_id": room.room_id} for e in got.get(room.room_id, [])]
        if self._presence is not None:
            for e in self._presence.for_users(room.joined_members(), since.presence,
                                              now.presence):
                # The legacy stream's presence content names its user, as it did in r0.
                chunk.append({**e, "content": {**e["content"], "user_id": e["sender"]}})
        return PeekResult(chunk, now)
