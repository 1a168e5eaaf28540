"""Device list tracking (spec "Tracking the device list for a user"): who must re-query whose keys.

A client caches the device keys of everyone it shares an encrypted room with, and trusts that
cache until sync's `device_lists.changed` names the user. So every change that alters what
/keys/query answers (a device's keys uploaded or deleted, its display name, the user's
cross-signing keys or signatures) is a row in `device_list_changes` at a position of the
`device_lists` stream, written in the same transaction as the change itself: a change that
commits is never left unannounced.

The other half is membership: a user one starts sharing a room with is "changed" (their devices
are new to the client), and one no longer shared with is "left" (the client may drop them). That
half is read from the room membership events between the two sync positions, from the rooms'
in-memory timelines when they reach back that far.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

from e2ee.keys_store import KeyStore
from homeserver.rooms.members import Membership, MembershipIndex
from homeserver.rooms.state import RoomRegistry
from homeserver.rooms.store import RoomStore
from homeserver.storage.database import Conn, Database
from homeserver.storage.streams import Stream

log = logging.getLogger(__name__)

CROSS_SIGNING = ""  # the device id of a change to the user's cross-signing keys

# (conn, pos, user_id, device_ids, only_for): a change being recorded, in its transaction
# (federation queues its m.device_list_update / m.signing_key_update EDUs there).
RecordHook = Callable[[Conn, int, str, list[str], str | None], Awaitable[None]]


class DeviceListService:
    def __init__(self, db: Database, store: KeyStore, room_store: RoomStore, stream: Stream,
                 members: MembershipIndex, rooms: RoomRegistry) -> None:
        self._db = db
        self._store = store
        self._room_store = room_store
        self.stream = stream
        self._members = members
        self._rooms = rooms
        self.on_record: list[RecordHook] = []
        self.on_finish: list[Callable[[int], None]] = []  # a position is finished

    def current(self) -> int:
        return self.stream.current

    async def co_members(self, user_id: str) -> set[str]:
        """The user and everyone sharing a joined room with them."""
        out = {user_id}
        for room_id in await self._members.joined_rooms(user_id):
            room = await self._rooms.get(room_id)
            if room is not None:
                out.update(room.joined_members())
        return out

    @asynccontextmanager
    async def change(self, user_id: str, only_self: bool = False) -> AsyncIterator[int]:
        """A stream position for a change of `user_id`'s devices or keys (or, `only_self`, of
        what only `user_id` may hear of): write it with `record` inside the transaction that
        makes the change. When the block ends (committed or not), the position is finished and
        the user's co-members (only the user, with `only_self`) are woken."""
        pos = await self.stream.allocate()
        wake: set[str] = {user_id}
        try:
            yield pos
        finally:
            try:
                if not only_self:
                    wake = await self.co_members(user_id)
            except Exception:  # waking fewer users must not lose the position
                log.exception("could not compute who shares a room with %s", user_id)
            self.stream.finish(pos, wake=wake)
            for hook in self.on_finish:
                hook(pos)

    async def record(self, conn: Conn, pos: int, user_id: str, device_ids: list[str],
                     only_for: str | None = None) -> None:
        """A change of `user_id`'s devices (`device_ids`; CROSS_SIGNING for their keys), for
        everyone sharing a room with them, or only for the user `only_for`."""
        await self._store.add_device_list_changes(conn, pos, user_id, device_ids, only_for)
        for hook in self.on_record:
            await hook(conn, pos, user_id, device_ids, only_for)

    async def for_sync(self, user_id: str, memberships: Mapping[str, Membership],
                       since_lists: int, upto_lists: int, since_events: int,
                       upto_events: int) -> tuple[set[str], set[str]]:
        """(changed, left) between two sync positions for a user with these memberships."""
        mine = {r for r, m in memberships.items() if m.membership == "join"}
        shared: dict[str, bool] = {user_id: True}

        async def shares(other: str) -> bool:
            got = shared.get(other)
            if got is None:
                got = not mine.isdisjoint(await self._members.joined_rooms(other))
                shared[other] = got
            return got

        changed: set[str] = set()
        left: set[str] = set()
        if since_lists < upto_lists:
            async with self._db.connection() as conn:
                users = await self._store.users_changed_between(conn, since_lists, upto_lists)
            for other, only_for in users:
                if only_for == user_id or (only_for is None and await shares(other)):
                    changed.add(other)
        if since_events < upto_events:
            for other, membership in await self._member_changes(
                    user_id, memberships, since_events, upto_events):
                if membership == "invite":
                    # Someone invited into a room the user is in: clients encrypt to invited
                    # members too, so they need the invitee's devices now (as the reference
                    # server counts; SyTest's cross-signing tests over federation).
                    changed.add(other)
                elif membership == "join":
                    if await shares(other):
                        changed.add(other)
                elif not await shares(other):
                    left.add(other)
        left.discard(user_id)
        return changed - left, left

    async def _member_changes(self, user_id: str, memberships: Mapping[str, Membership],
                              since: int, upto: int) -> list[tuple[str, str]]:
        """(user, membership) of joins, invites and leaves that matter between `since` and
        `upto`: everyone in a room the user joined or left, and whoever joined, was invited to
        or left a room the user is in."""
        out: list[tuple[str, str]] = []
        from_db: list[str] = []
        for room_id, m in memberships.items():
            room = await self._rooms.get(room_id)
            if room is None:
                continue
            if since < m.stream_ordering <= upto and m.membership in ("join", "leave", "ban"):
                # The user's own join or leave: every member of the room is new or gone.
                mark = "join" if m.membership == "join" else "leave"
                out.extend((u, mark) for u in room.joined_members())
                continue
            if m.membership != "join" or room.last_stream <= since:
                continue
            events = room.events_after(since, upto)
            if events is None:
                from_db.append(room_id)
                continue
            for e in events:
                if e.type == "m.room.member" and e.state_key is not None:
                    membership = e.membership
                    if membership in ("join", "invite", "leave", "ban"):
                        out.append((e.state_key, membership))
        if from_db:
            async with self._db.connection() as conn:
                rows = await self._room_store.membership_changes_between(conn, from_db, since,
                                                                         upto)
            out.extend((r["user_id"], r["membership"]) for r in rows
                       if r["membership"] in ("join", "invite", "leave", "ban"))
        return out

    async def changes(self, user_id: str, since_lists: int, upto_lists: int,
                      since_events: int, upto_events: int) -> tuple[set[str], set[str]]:
        """/keys/changes: the same answer sync would give between these two tokens."""
        memberships = await self._members.rooms_of(user_id)
        return await self.for_sync(user_id, memberships, since_lists, upto_lists, since_events,
                                   upto_events)
