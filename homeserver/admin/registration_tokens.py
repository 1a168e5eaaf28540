"""Registration tokens as a server admin manages them (Synapse's registration tokens admin
API). Registration consumes them with m.login.registration_token (homeserver/users/accounts.py);
tokens from the config file are rows of the same table."""

from __future__ import annotations

import re
import secrets
import string
import time
from typing import Any

from homeserver.admin.store import AdminStore
from homeserver.errors import invalid_param, not_found
from homeserver.storage.database import Database
from homeserver.types import JsonDict

TOKEN_RE = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
_ALPHABET = string.ascii_letters + string.digits + "._~-"


def _now() -> int:
    return int(time.time() * 1000)


def _token_json(r: Any) -> JsonDict:
    # Registration consumes a token in the transaction that creates the user, so no use is
    # ever pending.
    return {"token": r["token"], "uses_allowed": r["uses_allowed"], "pending": 0,
            "completed": r["completed"], "expiry_time": r["expiry_time"]}


def _check_uses(v: object) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise invalid_param("uses_allowed must be a non-negative integer or null")
    return v


def _check_expiry(v: object) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < _now():
        raise invalid_param("expiry_time must not be in the past")
    return v


class RegistrationTokens:
    def __init__(self, db: Database, store: AdminStore) -> None:
        self._db = db
        self._store = store

    async def list(self, valid: bool | None) -> list[JsonDict]:
        async with self._db.connection() as conn:
            rows = await self._store.registration_tokens(conn, valid, _now())
        return [_token_json(r) for r in rows]

    async def get(self, token: str) -> JsonDict:
        async with self._db.connection() as conn:
            row = await self._store.registration_token(conn, token)
        if row is None:
            raise not_found(f"No such registration token: {token}")
        return _token_json(row)

    async def create(self, body: JsonDict) -> JsonDict:
        uses = _check_uses(body.get("uses_allowed"))
        expiry = _check_expiry(body.get("expiry_time"))
        token = body.get("token")
        if token is not None:
            if not isinstance(token, str) or not TOKEN_RE.match(token):
                raise invalid_param("token must consist of 1 to 64 characters of "
                                    "A-Z, a-z, 0-9, '.', '_', '~' and '-'")
            async with self._db.connection() as conn:
                if not await self._store.insert_registration_token(conn, token, uses, expiry):
                    raise invalid_param(f"Token already exists: {token}")
            return await self.get(token)
        length = body.get("length", 16)
        if isinstance(length, bool) or not isinstance(length, int) or not 0 < length <= 64:
            raise invalid_param("length must be an integer between 1 and 64")
        while True:
            token = "".join(secrets.choice(_ALPHABET) for _ in range(length))
            async with self._db.connection() as conn:
                if await self._store.insert_registration_token(conn, token, uses, expiry):
                    return await self.get(token)

    async def update(self, token: str, body: JsonDict) -> JsonDict:
        changes: dict[str, Any] = {}
        if "uses_allowed" in body:
            changes["uses_allowed"] = _check_uses(body["uses_allowed"])
        if "expiry_time" in body:
            changes["expiry_time"] = _check_expiry(body["expiry_time"])
        async with self._db.connection() as conn:
            if not await self._store.update_registration_token(conn, token, changes):
                raise not_found(f"No such registration token: {token}")
        return await self.get(token)

    async def delete(self, token: str) -> None:
        async with self._db.connection() as conn:
            if not await self._store.delete_registration_token(conn, token):
                raise not_found(f"No such registration token: {token}")
