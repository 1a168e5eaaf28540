"""Login sessions (spec "Login", "Refreshing access tokens", "Logout"): a session is a device
with an access token (and, when the client asks, a refresh token), created by login or
registration, checked on every request and ended by logout.

The per-request check reads through the shared TokenCache and records the device's last seen
time in LastSeen, so a request costs no database write and, once cached, no read.
"""

from __future__ import annotations

import contextlib
import secrets
import string
import time
from dataclasses import dataclass

from homeserver.errors import Codes, MatrixError
from homeserver.storage.database import Database
from homeserver.types import Requester
from homeserver.users.devices import DeviceService, LastSeen
from homeserver.users.store import UserStore
from homeserver.users.tokens import TokenCache, new_access_token, new_refresh_token, token_hash

REFRESHABLE_TOKEN_LIFETIME_MS = 3_600_000


def _now() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class LoginResult:
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str | None = None
    expires_in_ms: int | None = None


class SessionService:
    def __init__(self, db: Database, store: UserStore, tokens: TokenCache, last_seen: LastSeen,
                 devices: DeviceService) -> None:
        self._db = db
        self._store = store
        self._tokens = tokens
        self._last_seen = last_seen
        self._devices = devices

    async def create_session(self, user_id: str, device_id: str | None,
                             display_name: str | None, ip: str | None = None,
                             refresh: bool = False,
                             valid_until_ms: int | None = None) -> LoginResult:
        """A new (or re-used, when `device_id` names one) device with a fresh access token;
        `valid_until_ms` ends a token that is not refreshable at that time (the admin API's
        login as a user)."""
        device_id = device_id or "".join(secrets.choice(string.ascii_uppercase)
                                         for _ in range(10))
        token = new_access_token()
        refresh_token = new_refresh_token() if refresh else None
        expires = REFRESHABLE_TOKEN_LIFETIME_MS if refresh else None
        changes = self._devices.changes
        # A new device is a device list change (its owner's other devices and everyone sharing
        # a room with them are told), in the transaction that creates it.
        position = changes.change(user_id) if changes is not None else contextlib.nullcontext(0)
        async with position as pos, self._db.transaction() as conn:
            new = await self._store.upsert_device(conn, user_id, device_id, display_name, _now(),
                                                  ip)
            if new and changes is not None:
                await changes.record(conn, pos, user_id, [device_id])
            await self._store.insert_token(
                conn, token_hash(token), user_id, device_id, _now(),
                _now() + expires if expires else valid_until_ms,
                token_hash(refresh_token) if refresh_token else None,
            )
        return LoginResult(user_id, device_id, token, refresh_token, expires)

    async def refresh(self, refresh_token: str) -> LoginResult:
        """Swap a refresh token for a new access and refresh token; the old pair stops working."""
        async with self._db.transaction() as conn:
            row = await self._store.refresh_owner(conn, token_hash(refresh_token))
            if row is None:
                raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown refresh token",
                                  soft_logout=False)
            await self._store.delete_token(conn, row["id"])
            token = new_access_token()
            new_refresh = new_refresh_token()
            await self._store.insert_token(conn, token_hash(token), row["user_id"],
                                           row["device_id"], _now(),
                                           _now() + REFRESHABLE_TOKEN_LIFETIME_MS,
                                           token_hash(new_refresh))
        self._tokens.forget_devices(row["user_id"], [row["device_id"]])
        return LoginResult(row["user_id"], row["device_id"], token, new_refresh,
                           REFRESHABLE_TOKEN_LIFETIME_MS)

    async def authenticate(self, token: str, ip: str | None = None,
                           allow_locked: bool = False) -> Requester:
        """The requester a token belongs to; a locked account gets 401 M_USER_LOCKED unless
        `allow_locked` (logout, spec "Account locking")."""
        h = token_hash(token)
        cached = self._tokens.get(h)
        if cached is None:
            async with self._db.connection() as conn:
                row = await self._store.token_owner(conn, h)
            if row is None or row["deactivated"]:
                raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown access token",
                                  soft_logout=False)
            cached = (Requester(row["user_id"], row["device_id"], row["is_admin"],
                                row["is_guest"], row["id"], locked=row["locked"],
                                suspended=row["suspended"],
                                shadow_banned=row["shadow_banned"]), row["valid_until_ms"])
            self._tokens.put(h, *cached)
        requester, valid_until = cached
        if valid_until is not None and valid_until < _now():
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Access token has expired",
                              soft_logout=True)
        if requester.locked and not allow_locked:
            raise MatrixError(401, Codes.USER_LOCKED, "This account has been locked",
                              soft_logout=True)
        self._last_seen.record(requester, ip)
        return requester

    async def logout(self, requester: Requester) -> None:
        """End this session: its device goes, and with it the device's tokens."""
        await self._devices.delete_devices(requester.user_id, [requester.device_id])

    async def logout_all(self, user_id: str) -> None:
        await self._devices.delete_devices(user_id, None)
