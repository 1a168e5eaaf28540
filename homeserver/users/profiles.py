"""Profiles (spec "Profiles"): a user's display name and avatar URL.

Changing them here changes only the profile; the matching m.room.member updates in each joined
room are sent by `RoomService.update_profile`, which client_api/profile.py calls next.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from homeserver.errors import forbidden, not_found, suspended
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester
from homeserver.users.store import UserStore

if TYPE_CHECKING:
    from homeserver.users.profile_fields import ProfileFields


class ProfileService:
    def __init__(self, db: Database, store: UserStore, server_name: str = "") -> None:
        self._db = db
        self._store = store
        self._server_name = server_name
        # Another server's user's profile (federation /query/profile), when federation is on.
        self.remote: Callable[[str], Awaitable[JsonDict]] | None = None
        # The fields beyond displayname and avatar_url (homeserver/users/profile_fields.py).
        self.fields: ProfileFields | None = None

    async def lookup(self, user_id: str) -> JsonDict:
        """GET /profile: a local user's profile, or a remote user's asked of their server."""
        if self.remote is not None and self._server_name \
                and user_id.partition(":")[2] != self._server_name:
            return await self.remote(user_id)
        if self.fields is not None:
            return await self.fields.full_profile(user_id)
        return await self.profile(user_id)

    async def profile(self, user_id: str) -> JsonDict:
        async with self._db.connection() as conn:
            row = await self._store.profile(conn, user_id)
        if row is None:
            raise not_found("Profile not found")
        return {k: row[k] for k in ("displayname", "avatar_url") if row[k] is not None}

    async def set_profile_field(self, requester: Requester, user_id: str, field: str,
                                value: str | None) -> None:
        if requester.user_id != user_id and not requester.is_admin:
            raise forbidden("You may only change your own profile")
        if requester.suspended:
            raise suspended()
        async with self._db.connection() as conn:
            await self._store.set_profile_field(conn, user_id, field, value)
