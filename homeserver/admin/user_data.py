"""What a server admin reads about a user beyond the account itself, and the admin's login as
a user (Synapse's user admin API: `accountdata`, `memberships`, `sent_invite_count`,
`cumulative_joined_room_count`, `login`).

The counts go by `origin_server_ts`: Parley does not record when an event arrived (Synapse
counts by its `received_ts`). For the events of this server's users, which these counts are
about, the two are the same clock.

Login as a user: Synapse hands out a token of the *admin* that puppets the user, with no
device. Parley's access tokens belong to a device of their user (sessions, to-device messages,
E2EE and last-seen all hang on it), so the token here is a new ordinary device of the user,
named as the admin's: the user sees it in their device list and can end it, and it ends with
the user's `/logout/all`, not the admin's.
"""

from __future__ import annotations

import orjson

from homeserver.admin.store import AdminStore
from homeserver.admin.users import UserAdminService
from homeserver.errors import Codes, MatrixError, invalid_param
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester, is_valid_user_id
from homeserver.users.sessions import SessionService


class UserDataAdmin:
    def __init__(self, db: Database, store: AdminStore, users: UserAdminService,
                 sessions: SessionService) -> None:
        self._db = db
        self._store = store
        self._users = users
        self._sessions = sessions

    async def _known(self, user_id: str) -> None:
        """A valid user id; a local one must be a user (404). Another server's user is known
        here only through the rooms this server shares with them, so any is accepted, as
        Synapse does for memberships and the counts."""
        if not is_valid_user_id(user_id):
            raise invalid_param("Invalid user id")
        if user_id.partition(":")[2] == self._users.accounts.server_name:
            await self._users.existing(user_id)

    async def account_data(self, user_id: str) -> JsonDict:
        await self._users.existing(self._users.local_user(user_id))
        async with self._db.connection() as conn:
            rows = await self._store.account_data_of(conn, user_id)
        global_data: JsonDict = {}
        rooms: dict[str, JsonDict] = {}
        for r in rows:
            content = orjson.loads(r["content"])
            if r["room_id"]:
                rooms.setdefault(r["room_id"], {})[r["type"]] = content
            else:
                global_data[r["type"]] = content
        return {"global": global_data, "rooms": rooms}

    async def memberships(self, user_id: str) -> dict[str, str]:
        await self._known(user_id)
        async with self._db.connection() as conn:
            rows = await self._store.memberships_of(conn, user_id)
        return {r["room_id"]: r["membership"] for r in rows}

    async def sent_invite_count(self, user_id: str, from_ts: int) -> int:
        await self._known(user_id)
        async with self._db.connection() as conn:
            return await self._store.invites_sent_since(conn, user_id, from_ts)

    async def cumulative_joined_room_count(self, user_id: str, from_ts: int) -> int:
        """Rooms the user joined at or after `from_ts`, left since or not (as Synapse, a
        profile change, which is a join event too, counts its room)."""
        await self._known(user_id)
        async with self._db.connection() as conn:
            return await self._store.rooms_joined_since(conn, user_id, from_ts)

    async def login_as(self, requester: Requester, user_id: str,
                       valid_until_ms: int | None) -> str:
        """An access token of a new device of the user (see the module docstring). Refused for
        the admin themselves (400, as Synapse: not a way to make more tokens) and for a
        deactivated user (404: their tokens would not work)."""
        self._users.local_user(user_id)
        await self._users.existing(user_id, active=True)
        if user_id == requester.user_id:
            raise MatrixError(400, Codes.UNKNOWN, "Cannot use admin API to login as self")
        session = await self._sessions.create_session(
            user_id, None, f"Admin login ({requester.user_id})",
            valid_until_ms=valid_until_ms)
        return session.access_token
