"""The list filters of sliding sync (MSC4186 SlidingRoomFilter): is_dm, is_invited,
is_encrypted, room_types / not_room_types, spaces, tags / not_tags. What they ask about rooms
(m.direct, room tags, space children) is read once per request and only when a filter asks."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.errors import MatrixError
from homeserver.rooms.members import Membership, MembershipIndex
from homeserver.rooms.state import RoomRegistry
from homeserver.sync.sliding_request import ListFilters
from homeserver.users.account_data import AccountDataService


@dataclass(slots=True)
class RoomInfo:
    last: int  # recency: the newest event's stream position (the membership's, if not joined)
    bump: int
    room_type: str | None
    encrypted: bool


class ListFacts:
    """What list filters ask about rooms, read once per request and only when asked."""

    def __init__(self, user_id: str, account_data: AccountDataService,
                 members: MembershipIndex, rooms: RoomRegistry) -> None:
        self._user_id = user_id
        self._account_data = account_data
        self._members = members
        self._rooms = rooms
        self._dms: set[str] | None = None
        self._tags: dict[str, set[str]] | None = None
        self._children: dict[tuple[str, ...], set[str]] = {}

    async def passes(self, f: ListFilters, room_id: str, m: Membership,
                     info: RoomInfo) -> bool:
        if f.is_invite is not None and (m.membership == "invite") != f.is_invite:
            return False
        if f.is_encrypted is not None and info.encrypted != f.is_encrypted:
            return False
        if info.room_type in f.not_room_types:
            return False
        if f.room_types is not None and info.room_type not in f.room_types:
            return False
        if f.is_dm is not None and (room_id in await self._dm_rooms()) != f.is_dm:
            return False
        if f.spaces is not None and room_id not in await self._space_children(f.spaces):
            return False
        if f.tags is not None or f.not_tags:
            tags = (await self._room_tags()).get(room_id, set())
            if tags & set(f.not_tags):
                return False
            if f.tags is not None and not tags & set(f.tags):
                return False
        return True

    async def _dm_rooms(self) -> set[str]:
        if self._dms is None:
            try:
                direct = await self._account_data.get_account_data(
                    self._user_id, "", "m.direct")
            except MatrixError:
                direct = {}
            self._dms = {r for v in direct.values() if isinstance(v, list)
                         for r in v if isinstance(r, str)}
        return self._dms

    async def _room_tags(self) -> dict[str, set[str]]:
        if self._tags is None:
            self._tags = {}
            for room_id, etype, content in await self._account_data.account_data_since(
                    self._user_id, 0):
                tags = content.get("tags") if etype == "m.tag" else None
                if room_id and isinstance(tags, dict):
                    self._tags[room_id] = set(tags)
        return self._tags

    async def _space_children(self, spaces: tuple[str, ...]) -> set[str]:
        got = self._children.get(spaces)
        if got is None:
            got = set()
            joined = await self._members.rooms_of(self._user_id)
            for space_id in spaces:
                m = joined.get(space_id)
                room = await self._rooms.get(space_id) if m and m.membership == "join" \
                    else None
                if room is None:
                    continue
                for (t, k), ev in room.state.items():
                    via = ev.pdu.get("content", {}).get("via")
                    if t == "m.space.child" and isinstance(via, list) and via:
                        got.add(k)
            self._children[spaces] = got
        return got
