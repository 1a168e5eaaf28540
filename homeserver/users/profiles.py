"""Profiles (spec "Profiles"): a user's display name and avatar URL.

Changing them here changes only the profile; the matching m.room.member updates in each joined
room are sent by `RoomService.update_profile`, which client_api/profile.py calls next.
"""

from __future__ import annotations

from homeserver.errors import forbidden, not_found, suspended
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester
from homeserver.users.store import UserStore


class ProfileService:
    def __init__(self, db: Database, store: UserStore) -> None:
        self._db = db
        self._store = store

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
