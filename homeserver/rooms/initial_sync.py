"""GET /rooms/{roomId}/initialSync (spec "Room Previews" / the deprecated r0 API): a room's
state and latest messages in one answer, as the reader serves them to this user.

Members get the current state and the newest messages; former members the state when they
left and the messages before that; anyone may peek into a world-readable room. The messages
come in timeline order, `start` pages back with /messages and `end` points after the newest.
The global GET /initialSync (homeserver/sync/initial_sync.py) gives this for every room.
"""

from __future__ import annotations

from homeserver.events.filter import EventFilter
from homeserver.rooms.reader import RoomReader
from homeserver.rooms.state import RoomRegistry
from homeserver.streams.tokens import PaginationToken
from homeserver.types import JsonDict, Requester
from homeserver.users.account_data import AccountDataService


class RoomInitialSync:
    def __init__(self, reader: RoomReader, registry: RoomRegistry,
                 account_data: AccountDataService) -> None:
        self._reader = reader
        self._registry = registry
        self._account_data = account_data

    async def room(self, requester: Requester, room_id: str, limit: int) -> JsonDict:
        """Raises:
            MatrixError: 403 M_FORBIDDEN for a room the user may not see (or that does not
                exist, as GET /state answers).
        """
        state = await self._reader.state_events(requester, room_id)  # 403 first
        room = await self._registry.get(room_id)
        assert room is not None  # state_events checked it
        membership = room.membership(requester.user_id)
        start_from = None
        member = room.state.get(("m.room.member", requester.user_id))
        if membership in ("leave", "ban") and member is not None:
            start_from = PaginationToken(member.depth, member.stream_ordering + 1).serialize()
        page = await self._reader.messages(requester, room, start_from, None, True, limit,
                                          EventFilter.parse({}))
        chunk = list(reversed(page["chunk"]))
        end = page["start"]
        if start_from is None and room.recent:
            newest = room.recent[-1]
            end = PaginationToken(newest.depth, newest.stream_ordering + 1).serialize()
        elif start_from is not None:
            end = start_from
        # `start` even when nothing is earlier (the spec lets it be omitted then; SyTest and
        # old clients read it): the room's beginning, from which paging back gives nothing.
        messages: JsonDict = {"chunk": chunk, "end": end,
                              "start": page.get("end", PaginationToken(0, 0).serialize())}
        body: JsonDict = {
            "room_id": room_id,
            "messages": messages,
            "state": [e.to_client(requester.user_id, requester.device_id) for e in state],
            "visibility": "public" if room_id in await self._reader.public_rooms()
            else "private",
            "account_data": [
                {"type": etype, "content": content}
                for rid, etype, content in await self._account_data.account_data_since(
                    requester.user_id, 0) if rid == room_id],
        }
        if membership is not None:
            body["membership"] = membership
        return body
