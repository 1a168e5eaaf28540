"""Read receipts: write them, and serve them to /sync as m.receipt ephemeral events.

A receipt is one row per (room, receipt type, user, thread), overwritten by each newer receipt
(the spec keeps one event per such tuple and does not forbid moving backwards). Each write takes a
position from the receipts Stream; members are woken only once `current` covers the write,
because positions may commit out of order (a waiter woken earlier would recompute, see nothing
below `current` and park again with no further wake-up).

m.read.private receipts are written like the others but only ever read back for their owner, and
only the owner is woken. m.fully_read is room account data, not a receipt: `set_read_markers`
writes it through AccountDataService and the receipts through ReceiptService.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.events.model import EventEntry
from homeserver.receipts.store import ReceiptStore
from homeserver.rooms.state import EventCache, RoomRegistry
from homeserver.storage.database import Database
from homeserver.storage.streams import Stream
from homeserver.streams.notifier import Notifier
from homeserver.types import JsonDict, Requester
from homeserver.users.account_data import AccountDataService

RECEIPT_TYPES = ("m.read", "m.read.private")
FULLY_READ = "m.fully_read"
MAIN_THREAD = "main"
INITIAL_RECEIPTS_PER_ROOM = 100  # newest receipts per room on an initial sync
THREAD_HOPS = 3  # how far to follow relations to find an event's thread (the spec's advice)

# (conn, room_id, receipt_type, user_id, thread_id or None, the event's stream ordering): runs
# in the receipt's transaction (push notification counts are reset there).
ReceiptHook = Callable[[Any, str, str, str, str | None, int], Awaitable[None]]
# (room_id, user_id): after that receipt's transaction committed, before anyone is woken.
ReceiptCommitted = Callable[[str, str], None]
# (room_id, receipt_type, user_id, event_id, data): a local user's public receipt, written;
# federation sends it on as an m.receipt EDU.
SentHook = Callable[[str, str, str, str, JsonDict], None]


class ReceiptService:
    """RoomEphemeralSource for m.receipt."""

    def __init__(self, db: Database, store: ReceiptStore, rooms: RoomRegistry,
                 cache: EventCache, notifier: Notifier, stream: Stream,
                 on_write: list[ReceiptHook] | None = None,
                 on_committed: list[ReceiptCommitted] | None = None) -> None:
        self._db = db
        self._on_write = on_write if on_write is not None else []
        self._on_committed = on_committed if on_committed is not None else []
        self._store = store
        self._rooms = rooms
        self._cache = cache
        self._notifier = notifier
        self.stream = stream
        # Newest receipt position per room written since start-up: an incremental sync whose
        # rooms have none after `since` needs no query at all.
        self._boot = stream.current
        self._room_pos: dict[str, int] = {}
        self.on_local: list[SentHook] = []

    # ------------------------------------------------------------------ writes

    async def check_event(self, requester: Requester, room_id: str,
                          event_id: str) -> EventEntry:
        """The event a receipt or read marker points at, after checking the requester may
        mark it: 404 for an unknown room or an event not in it, 403 if not joined."""
        if not room_id.startswith("!"):
            raise invalid_param("Invalid room id")
        if not event_id.startswith("$"):
            raise invalid_param("Invalid event id")
        room = await self._rooms.get(room_id)
        if room is None:
            raise not_found("Unknown room")
        if room.membership(requester.user_id) != "join":
            raise forbidden("You are not joined to this room")
        event = (await self._cache.get_many([event_id])).get(event_id)
        if event is None or event.room_id != room_id:
            raise not_found("Unknown event")
        return event

    async def check_receipt(self, requester: Requester, room_id: str, receipt_type: str,
                            event_id: str, thread_id: str | None) -> EventEntry:
        """Every check `post_receipt` makes, without writing (for multi-part requests)."""
        if receipt_type not in RECEIPT_TYPES:
            raise invalid_param(f"Unknown receipt type {receipt_type!r}")
        if thread_id is not None and (
                not thread_id or (thread_id != MAIN_THREAD and not thread_id.startswith("$"))):
            raise invalid_param("thread_id must be 'main' or a thread root's event id")
        event = await self.check_event(requester, room_id, event_id)
        if thread_id is not None:
            actual = await self._thread_of(event)
            if actual is not None and actual != thread_id:
                raise invalid_param(f"Event {event_id} is not in thread {thread_id}")
        return event

    async def post_receipt(self, requester: Requester, room_id: str, receipt_type: str,
                           event_id: str, thread_id: str | None) -> None:
        """Record the requester's receipt and wake who may see it.

        Raises:
            MatrixError: M_INVALID_PARAM (type, ids, thread_id), M_NOT_FOUND (room or event),
                M_FORBIDDEN (not joined).
        """
        event = await self.check_receipt(requester, room_id, receipt_type, event_id, thread_id)
        if await self._is_behind(room_id, receipt_type, requester.user_id, thread_id or "",
                                 event.stream_ordering):
            return
        data: dict[str, Any] = {"ts": int(time.time() * 1000)}
        if thread_id is not None:
            data["thread_id"] = thread_id
        if receipt_type == "m.read.private":
            wake = [requester.user_id]
        else:
            room = await self._rooms.get(room_id)
            wake = room.joined_members() if room is not None else [requester.user_id]
        pos = await self.stream.allocate()
        try:
            async with self._db.transaction() as conn:
                await self._store.upsert(conn, room_id, receipt_type, requester.user_id,
                                         thread_id or "", event_id,
                                         orjson.dumps(data).decode(), pos)
                for hook in self._on_write:
                    await hook(conn, room_id, receipt_type, requester.user_id, thread_id,
                               event.stream_ordering)
        except BaseException:
            self.stream.finish(pos)
            raise
        for cb in self._on_committed:
            cb(room_id, requester.user_id)
        self._room_pos[room_id] = max(pos, self._room_pos.get(room_id, 0))
        self.stream.finish(pos, wake=wake)
        if receipt_type == "m.read":
            for sent in self.on_local:
                sent(room_id, receipt_type, requester.user_id, event_id, data)

    async def _is_behind(self, room_id: str, receipt_type: str, user_id: str, thread_id: str,
                         stream_ordering: int) -> bool:
        """Whether the user's receipt already points at a later event: a receipt only moves
        forwards (as the reference server ratchets it, SyTest "Read receipts are visible to
        /initialSync"), so a stale receipt from a lagging device is accepted and changes
        nothing, and messages already read do not turn unread again."""
        async with self._db.connection() as conn:
            current = await self._store.event_of(conn, room_id, receipt_type, user_id,
                                                 thread_id)
        if current is None or current == "":
            return False
        entry = (await self._cache.get_many([current])).get(current)
        return entry is not None and entry.stream_ordering > stream_ordering

    async def receive_remote(self, room_id: str, receipt_type: str, user_id: str,
                             event_id: str, data: JsonDict) -> None:
        """A receipt from another server (the caller checked the origin, the ACL and that
        the room is known): stored like a local one if the user is joined, and the room's
        members woken. No push counts change (they are local users' own receipts)."""
        room = await self._rooms.get(room_id)
        if room is None or room.membership(user_id) != "join":
            return
        thread_id = data.get("thread_id")
        if not isinstance(thread_id, str) or not thread_id:
            thread_id = ""
        pos = await self.stream.allocate()
        try:
            async with self._db.transaction() as conn:
                await self._store.upsert(conn, room_id, receipt_type, user_id, thread_id,
                                         event_id, orjson.dumps(data).decode(), pos)
        except BaseException:
            self.stream.finish(pos)
            raise
        self._room_pos[room_id] = max(pos, self._room_pos.get(room_id, 0))
        self.stream.finish(pos, wake=room.joined_members())

    async def on_advance(self, stream: str, before: int, after: int) -> None:
        """Receipts another process wrote: note their rooms so sync does not skip them."""
        async with self._db.connection() as conn:
            rows = await self._store.rooms_changed_between(conn, before, after)
        for r in rows:
            self._room_pos[r["room_id"]] = max(int(r["pos"]), self._room_pos.get(r["room_id"], 0))

    async def _thread_of(self, event: EventEntry) -> str | None:
        """'main' or the thread root of `event`, following up to THREAD_HOPS relations;
        None when a related event is unknown to us (then any thread_id is accepted)."""
        current = event
        for _ in range(THREAD_HOPS):
            rel = current.pdu.get("content", {}).get("m.relates_to")
            if not isinstance(rel, dict) or not isinstance(rel.get("event_id"), str):
                return MAIN_THREAD
            if rel.get("rel_type") == "m.thread":
                return str(rel["event_id"])
            parent_id = rel["event_id"]
            parent = (await self._cache.get_many([parent_id])).get(parent_id)
            if parent is None or parent.room_id != event.room_id:
                return None
            current = parent
        return None

    # ------------------------------------------------------------------ sync source

    def current(self) -> int:
        return self.stream.current

    async def for_rooms(self, user_id: str, room_ids: list[str], since: int | None,
                        upto: int) -> dict[str, list[JsonDict]]:
        """m.receipt events per room: receipts written in (since, upto], or on initial sync the
        newest INITIAL_RECEIPTS_PER_ROOM of each room. One event per room and thread."""
        if not room_ids or (since is not None and since >= upto):
            return {}
        if since is not None and since >= self._boot:
            room_ids = [r for r in room_ids if self._room_pos.get(r, 0) > since]
            if not room_ids:
                return {}
        async with self._db.connection() as conn:
            if since is None:
                rows = await self._store.latest_per_room(conn, room_ids, user_id, upto,
                                                         INITIAL_RECEIPTS_PER_ROOM)
            else:
                rows = await self._store.changed_between(conn, room_ids, user_id, since, upto)
        # (room, thread) -> {event_id: {type: {user: data}}}; rows are oldest first, so a
        # later receipt of the same user replaces an earlier one in the same event.
        grouped: dict[str, dict[str, JsonDict]] = {}
        for r in rows:
            content = grouped.setdefault(r["room_id"], {}).setdefault(r["thread_id"], {})
            content.setdefault(r["event_id"], {}).setdefault(r["receipt_type"], {})[
                r["user_id"]] = orjson.loads(r["data"])
        return {room_id: [{"type": "m.receipt", "content": content}
                          for content in threads.values()]
                for room_id, threads in grouped.items()}


async def set_read_markers(receipts: ReceiptService, account_data: AccountDataService,
                           requester: Requester, room_id: str, fully_read: str | None,
                           read: str | None, read_private: str | None) -> None:
    """POST /read_markers: m.fully_read into room account data, m.read / m.read.private as
    receipts. Everything is checked before anything is written."""
    if fully_read is not None:
        await receipts.check_event(requester, room_id, fully_read)
    for rtype, event_id in (("m.read", read), ("m.read.private", read_private)):
        if event_id is not None:
            await receipts.check_receipt(requester, room_id, rtype, event_id, None)
    if fully_read is not None:
        await account_data.put_account_data(requester.user_id, room_id, FULLY_READ,
                                            {"event_id": fully_read})
    for rtype, event_id in (("m.read", read), ("m.read.private", read_private)):
        if event_id is not None:
            await receipts.post_receipt(requester, room_id, rtype, event_id, None)
