"""GET /initialSync (every room at once) and the extra sections of GET /rooms/{roomId}/initialSync
(spec: both deprecated since r0 in favour of /sync, still specified; old clients and SyTest use
them).

Each room's part is the room initial sync of homeserver/rooms/initial_sync.py (state, newest
messages, room account data: the state when the user left for a room they left), so the two
endpoints cannot disagree. On top of it the reference server adds, and SyTest reads, the room's
`presence` (its members' current presence) and `receipts` (its m.receipt events), both only for
a room the user is joined to; a room the user left shows neither (SyTest "departed room").

Events come in the client format with the v1 `user_id` (the sender) added, and presence
contents name their user (`user_id`), as these endpoints gave them.

The global answer lists the rooms the user is joined to or invited to, and with `archived=true`
also the rooms they left or were banned from (SPEC-216), not forgotten ones; an invite is given
as its invite event, not the room's content. Top-level `presence`, `receipts` and
`account_data` are those of /sync's first answer, and `end` is a sync token from which GET
/events (the stream this API was paired with) continues without a gap: it is taken before
anything is read, so an event that lands meanwhile is given again by /events, never missed.
"""

from __future__ import annotations

from collections.abc import Callable

from homeserver.errors import MatrixError
from homeserver.rooms.initial_sync import RoomInitialSync
from homeserver.rooms.members import MembershipIndex
from homeserver.rooms.reader import RoomReader
from homeserver.streams.tokens import SyncToken
from homeserver.sync.streams import PresenceSource, RoomEphemeralSource
from homeserver.types import JsonDict, Requester
from homeserver.users.account_data import AccountDataService


class InitialSync:
    def __init__(self, rooms: RoomInitialSync, members: MembershipIndex, reader: RoomReader,
                 account_data: AccountDataService, current_token: Callable[[], SyncToken],
                 receipts: RoomEphemeralSource | None = None,
                 presence: PresenceSource | None = None) -> None:
        self._rooms = rooms
        self._members = members
        self._reader = reader
        self._account_data = account_data
        self._current_token = current_token
        self._receipts = receipts
        self._presence = presence

    async def room(self, requester: Requester, room_id: str, limit: int) -> JsonDict:
        """GET /rooms/{roomId}/initialSync: the room's part plus its presence and receipts."""
        token = self._current_token()
        body = _v1_room(await self._rooms.room(requester, room_id, limit))
        joined = body.get("membership") == "join"
        presence = await self._presence_of(requester.user_id, token) if joined else []
        members = set((await self._reader.joined_members(requester, room_id)).keys()) \
            if joined and presence else set()
        body["presence"] = [e for e in presence if e.get("sender") in members]
        body["receipts"] = (await self._receipts_of(requester.user_id, [room_id], token)
                            ).get(room_id, []) if joined else []
        return body

    async def all(self, requester: Requester, limit: int, archived: bool) -> JsonDict:
        """GET /initialSync."""
        token = self._current_token()
        wanted = ("join", "invite", "leave", "ban") if archived else ("join", "invite")
        memberships = {room_id: m for room_id, m in
                       (await self._members.rooms_of(requester.user_id)).items()
                       if m.membership in wanted}
        forgotten = await self._members.forgotten(requester.user_id) \
            if any(m.membership in ("leave", "ban") for m in memberships.values()) else set()
        rooms: list[JsonDict] = []
        for room_id, m in sorted(memberships.items(), key=lambda kv: kv[1].stream_ordering):
            if m.membership == "invite":
                entry: JsonDict = {"room_id": room_id, "membership": "invite"}
                for invite in await self._reader.events([m.event_id]):
                    entry["invite"] = _v1_event(invite.to_client(requester.user_id,
                                                                 requester.device_id))
                rooms.append(entry)
                continue
            if room_id in forgotten:
                continue
            try:
                room = await self._rooms.room(requester, room_id, limit)
            except MatrixError:  # a room this server no longer has, or may not show
                continue
            room.setdefault("membership", m.membership)
            rooms.append(_v1_room(room))
        joined = [r["room_id"] for r in rooms if r.get("membership") == "join"]
        receipts = await self._receipts_of(requester.user_id, joined, token)
        return {
            "end": token.serialize(),
            "rooms": rooms,
            "presence": await self._presence_of(requester.user_id, token),
            "receipts": [{**ev, "room_id": room_id} for room_id in joined
                         for ev in receipts.get(room_id, [])],
            "account_data": [
                {"type": etype, "content": content}
                for rid, etype, content in await self._account_data.account_data_since(
                    requester.user_id, 0) if not rid],
        }

    async def _presence_of(self, user_id: str, token: SyncToken) -> list[JsonDict]:
        """The current presence of the user and of those sharing a room with them; each
        content also names its user (`user_id`, the v1 form these endpoints had, which
        SyTest "Newly created users see their own presence in /initialSync" reads)."""
        if self._presence is None:
            return []
        events = await self._presence.for_user(user_id, None, token.presence)
        return [{**e, "content": {**e.get("content", {}), "user_id": e.get("sender")}}
                for e in events]

    async def _receipts_of(self, user_id: str, room_ids: list[str],
                           token: SyncToken) -> dict[str, list[JsonDict]]:
        if self._receipts is None or not room_ids:
            return {}
        return await self._receipts.for_rooms(user_id, room_ids, None, token.receipts)


def _v1_event(event: JsonDict) -> JsonDict:
    """An event in the form of the v1 API these endpoints come from, which also named the
    sender `user_id` (the reference server still adds it there; SyTest "Room initialSync" reads
    members by it): the client format plus that one key."""
    sender = event.get("sender")
    return {**event, "user_id": sender} if isinstance(sender, str) else event


def _v1_room(room: JsonDict) -> JsonDict:
    messages = room.get("messages")
    if isinstance(messages, dict):
        room["messages"] = {**messages, "chunk": [_v1_event(e) for e in messages["chunk"]]}
    if isinstance(room.get("state"), list):
        room["state"] = [_v1_event(e) for e in room["state"]]
    return room
