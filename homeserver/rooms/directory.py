"""The public room directory (client-server spec "Listing rooms"; server-server spec "Public
Room Directory"): one page of this server's published rooms, for local clients and other
servers alike, and, through `remote`, another server's list for a client that names it
(`/publicRooms?server=...`).

Pages are offsets into the list sorted by joined members (largest first), as `since` /
`next_batch` strings ("o<offset>"); a search term matches the name, topic or canonical alias.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from homeserver.errors import Codes, MatrixError
from homeserver.rooms.reader import RoomReader
from homeserver.rooms.service import RoomService
from homeserver.types import JsonDict

# (server, limit, since, search term) -> that server's page
RemoteDirectory = Callable[[str, int, str | None, str | None], Awaitable[JsonDict]]
# third_party_instance_id (None: every network) -> the rooms application services listed
NetworkRooms = Callable[[str | None], Awaitable[list[str]]]


class PublicRoomDirectory:
    def __init__(self, server_name: str, reader: RoomReader, rooms: RoomService) -> None:
        self.server_name = server_name
        self._reader = reader
        self._rooms = rooms
        self.remote: RemoteDirectory | None = None
        # The lists application services keep for their networks (homeserver/appservice/).
        self.network_rooms: NetworkRooms | None = None

    async def _room_ids(self, instance_id: str | None, all_networks: bool) -> list[str]:
        """The main list; one network's (`instance_id`); or, with `all_networks`, both."""
        if instance_id is not None:
            return await self.network_rooms(instance_id) if self.network_rooms else []
        main = await self._reader.public_rooms()
        if all_networks and self.network_rooms is not None:
            main = list(dict.fromkeys([*main, *await self.network_rooms(None)]))
        return main

    async def page(self, limit: int, since: str | None, term: str | None,
                   server: str | None = None, instance_id: str | None = None,
                   all_networks: bool = False) -> JsonDict:
        """One page of `server`'s list (None or ours: this server's), of its main list
        unless `instance_id` names an application service network's list or
        `all_networks` asks for every list together."""
        if server is not None and server != self.server_name:
            if self.remote is None:
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  "Federation is off: other servers' lists are not available")
            return await self.remote(server, limit, since, term)
        entries = []
        for room_id in await self._room_ids(instance_id, all_networks):
            room = await self._rooms.rooms.get(room_id)
            if room is None:
                continue
            entries.append(self._rooms.directory_entry(room))
        if term:
            t = term.lower()
            entries = [e for e in entries if t in (e.get("name") or "").lower()
                       or t in (e.get("topic") or "").lower()
                       or t in (e.get("canonical_alias") or "").lower()]
        # Ties by room id, so pages stay the same from one request to the next.
        entries.sort(key=lambda e: (-int(e["num_joined_members"]), str(e["room_id"])))
        start = 0
        offset = since[1:] if since and since[:1] == "o" else since  # "o<n>", or bare <n>
        if offset and offset.isascii() and offset.isdigit():  # a position we handed out; a
            start = int(offset) if len(offset) < 16 else len(entries)  # huge one: past the end
        chunk = entries[start:start + limit] if limit else entries[start:]
        body: JsonDict = {"chunk": chunk, "total_room_count_estimate": len(entries)}
        # Tokens are "o<offset>", never a bare "0": a client may take "0" for "no token" (as
        # SyTest's Perl does), and miss the first page paging backwards.
        if limit and start + limit < len(entries):
            body["next_batch"] = f"o{start + limit}"
        if start > 0:
            body["prev_batch"] = f"o{max(0, start - limit)}"
        return body
