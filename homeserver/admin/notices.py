"""Server notices (spec "Server Notices", Synapse's server notices admin API): a system user
(`@notices:<server>`) writes to each user in a room of their own, tagged `m.server_notice` in
the user's account data, created and the user invited on the first notice.
"""

from __future__ import annotations

from homeserver.admin.store import AdminStore
from homeserver.errors import invalid_param
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester
from homeserver.users.account_data import AccountDataService
from homeserver.users.accounts import AccountService

SYSTEM_LOCALPART = "notices"
ROOM_NAME = "Server Notices"


class ServerNotices:
    def __init__(self, db: Database, store: AdminStore, accounts: AccountService,
                 rooms: RoomService, account_data: AccountDataService) -> None:
        self._db = db
        self._store = store
        self._accounts = accounts
        self._rooms = rooms
        self._account_data = account_data
        self.system_user = accounts.user_id_for(SYSTEM_LOCALPART)

    async def _system(self) -> str:
        if await self._accounts.get_user(self.system_user) is None:
            try:
                await self._accounts.register(SYSTEM_LOCALPART, None)
            except Exception:  # created meanwhile by another request
                if await self._accounts.get_user(self.system_user) is None:
                    raise
        return self.system_user

    async def _room_for(self, user_id: str) -> str:
        system = await self._system()
        async with self._db.connection() as conn:
            room_id = await self._store.notice_room(conn, user_id)
        if room_id is not None and await self._rooms.rooms.get(room_id) is not None:
            room = await self._rooms.get_room(room_id)
            if room.membership(user_id) not in ("join", "invite"):
                await self._rooms.invite(Requester(system, ""), room_id, user_id)
            return room_id
        room_id = await self._rooms.create_room(
            Requester(system, ""),
            {"preset": "private_chat", "name": ROOM_NAME, "invite": [user_id],
             "power_level_content_override": {"users_default": -10}})
        async with self._db.connection() as conn:
            await self._store.set_notice_room(conn, user_id, room_id)
        await self._account_data.set_room_tag(user_id, room_id, "m.server_notice",
                                              {"order": 0.5})
        return room_id

    async def is_notice_room(self, user_id: str, room_id: str) -> bool:
        async with self._db.connection() as conn:
            return await self._store.notice_room(conn, user_id) == room_id

    async def send(self, user_id: str, etype: str, content: JsonDict,
                   state_key: str | None) -> str:
        user = await self._accounts.get_user(user_id)
        if user is None or user_id.partition(":")[2] != self._accounts.server_name:
            raise invalid_param("Server notices can only be sent to local users")
        if user_id == self.system_user:
            raise invalid_param("The server notices user cannot receive notices")
        room_id = await self._room_for(user_id)
        system = await self._system()
        if state_key is not None:
            return await self._rooms.set_state(Requester(system, ""), room_id, etype,
                                               state_key, content)
        entry = await self._rooms.send(room_id, system, etype, content)
        return entry.event_id
