"""Profile fields beyond displayname and avatar_url (spec v1.16 "Profiles", MSC4133).

`m.tz` and custom keys in the namespaced grammar the spec's path pattern gives are kept
together as one JSON object beside the two classic columns; a custom value may be any JSON
(null included: the spec asks servers to store it, deletion is DELETE). Limits, per the spec:
a key of at most 255 bytes (M_KEY_TOO_LARGE) and the whole profile, as canonical JSON, at most
64 KiB (M_PROFILE_TOO_LARGE), checked in the same transaction as the write, with the profile
row locked so that two writes cannot together exceed it.

Only displayname and avatar_url go into m.room.member events (homeserver/users/profiles.py
`profile`); the other fields are served by GET /profile and the federation profile query.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from canonicaljson import encode_canonical_json

from homeserver.errors import MatrixError, forbidden, invalid_param, not_found, suspended
from homeserver.storage.database import Conn, Database
from homeserver.types import JsonDict, Requester

CLASSIC = ("displayname", "avatar_url")
KEY_PATTERN = re.compile(r"^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$")
MAX_KEY_BYTES = 255
MAX_PROFILE_BYTES = 64 * 1024


def check_key(key: str) -> None:
    """M_KEY_TOO_LARGE past 255 bytes, M_INVALID_PARAM outside the spec's key grammar."""
    if len(key.encode()) > MAX_KEY_BYTES:
        raise MatrixError(400, "M_KEY_TOO_LARGE", "Profile keys are at most 255 bytes")
    if not KEY_PATTERN.fullmatch(key):
        raise invalid_param("Invalid profile key.")


class ProfileFieldStore:
    async def lock_profile(self, conn: Conn, user_id: str) -> Any:
        return await conn.fetchrow(
            "SELECT displayname, avatar_url, fields::text AS fields FROM profiles"
            " WHERE user_id = $1 FOR UPDATE", user_id)

    async def profile(self, conn: Conn, user_id: str) -> Any:
        return await conn.fetchrow(
            "SELECT displayname, avatar_url, fields::text AS fields FROM profiles"
            " WHERE user_id = $1", user_id)

    async def set_fields(self, conn: Conn, user_id: str, fields: JsonDict) -> None:
        await conn.execute("UPDATE profiles SET fields = $2::jsonb WHERE user_id = $1",
                           user_id, orjson.dumps(fields).decode())


def _merged(row: Any) -> JsonDict:
    out: JsonDict = {k: row[k] for k in CLASSIC if row[k] is not None}
    for k, v in orjson.loads(row["fields"]).items():
        out.setdefault(k, v)
    return out


class ProfileFields:
    def __init__(self, db: Database, store: ProfileFieldStore) -> None:
        self._db = db
        self._store = store

    async def full_profile(self, user_id: str) -> JsonDict:
        """A local user's whole profile: displayname, avatar_url and every other field."""
        async with self._db.connection() as conn:
            row = await self._store.profile(conn, user_id)
        if row is None:
            raise not_found("Profile not found")
        return _merged(row)

    async def check_size(self, conn: Conn, user_id: str, key: str, value: Any) -> None:
        """M_PROFILE_TOO_LARGE when setting `key` would take the profile past 64 KiB; call
        inside the write's transaction (the row is locked until it ends)."""
        row = await self._store.lock_profile(conn, user_id)
        if row is None:
            raise not_found("Profile not found")
        profile = _merged(row)
        profile[key] = value
        if len(encode_canonical_json(profile)) > MAX_PROFILE_BYTES:
            raise MatrixError(400, "M_PROFILE_TOO_LARGE",
                              "The profile would exceed its maximum size of 64 KiB")

    async def check_size_now(self, user_id: str, key: str, value: Any) -> None:
        """`check_size` outside a write (for displayname and avatar_url, which
        homeserver/users/profiles.py writes)."""
        async with self._db.transaction() as conn:
            await self.check_size(conn, user_id, key, value)

    async def set_field(self, requester: Requester, user_id: str, key: str,
                        value: Any) -> None:
        """Set a non-classic field (m.tz or a custom key)."""
        self.check_owner(requester, user_id)
        async with self._db.transaction() as conn:
            await self.check_size(conn, user_id, key, value)
            row = await self._store.lock_profile(conn, user_id)
            fields = orjson.loads(row["fields"])
            fields[key] = value
            await self._store.set_fields(conn, user_id, fields)

    async def delete_field(self, requester: Requester, user_id: str, key: str) -> None:
        self.check_owner(requester, user_id)
        async with self._db.transaction() as conn:
            row = await self._store.lock_profile(conn, user_id)
            if row is None:
                raise not_found("Profile not found")
            fields = orjson.loads(row["fields"])
            if key in fields:
                del fields[key]
                await self._store.set_fields(conn, user_id, fields)

    @staticmethod
    def check_owner(requester: Requester, user_id: str) -> None:
        if requester.user_id != user_id and not requester.is_admin:
            raise forbidden("You may only change your own profile")
        if requester.suspended:
            raise suspended()
