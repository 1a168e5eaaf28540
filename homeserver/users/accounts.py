"""Accounts (spec "Account registration and management"): user ids, registration and
registration tokens, passwords, password change and deactivation; guest accounts (spec "Guest
access") and their upgrade to full accounts.

A guest's localpart is a number from a sequence, as the reference server gives them, and
numeric localparts are reserved for guests: ordinary registration refuses them, so a guest's
id can never have been someone else's.

Passwords are hashed with argon2id in a worker thread, so a login does not stall the event loop.
A password change may log out other devices and deactivation logs out all of them, so this
service drops their cached tokens and last seen values after the database change.
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from collections.abc import Awaitable, Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from homeserver.errors import Codes, MatrixError
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester, is_valid_new_localpart
from homeserver.users.devices import DeviceService, LastSeen
from homeserver.users.store import UserStore
from homeserver.users.tokens import TokenCache

# OWASP's minimum argon2id profile: strong, and fast enough that registration is not a DoS vector.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def _now() -> int:
    return int(time.time() * 1000)


class AccountService:
    def __init__(self, db: Database, store: UserStore, server_name: str, tokens: TokenCache,
                 last_seen: LastSeen, password_min_length: int = 0,
                 devices: DeviceService | None = None) -> None:
        self._db = db
        self._devices = devices
        # What other areas drop of a deactivated account (key backups, cross-signing keys).
        self.on_deactivate: list[Callable[[str], Awaitable[None]]] = []
        self._store = store
        self.server_name = server_name
        self._tokens = tokens
        self._last_seen = last_seen
        self._min_len = password_min_length

    # ------------------------------------------------------------------ passwords

    async def hash_password(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, _HASHER.hash, password)

    async def check_password(self, user_id: str, password: str) -> bool:
        async with self._db.connection() as conn:
            row = await self._store.get_user(conn, user_id)
        if row is None or row["password_hash"] is None or row["deactivated"]:
            return False

        def verify() -> bool:
            try:
                return bool(_HASHER.verify(row["password_hash"], password))
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.get_running_loop().run_in_executor(None, verify)

    async def check_not_locked(self, user_id: str) -> None:
        """401 M_USER_LOCKED for a locked account: it gets no new session (spec "Account
        locking")."""
        user = await self.get_user(user_id)
        if user is not None and user["locked"]:
            raise MatrixError(401, Codes.USER_LOCKED, "This account has been locked",
                              soft_logout=True)

    def check_password_strength(self, password: str) -> None:
        if self._min_len and len(password) < self._min_len:
            raise MatrixError(400, Codes.WEAK_PASSWORD,
                              f"Password must be at least {self._min_len} characters")

    # ------------------------------------------------------------------ users

    def user_id_for(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def validate_localpart(self, localpart: str) -> str:
        if not is_valid_new_localpart(localpart):
            raise MatrixError(400, Codes.INVALID_USERNAME,
                              "User ID may only contain a-z, 0-9, and . _ = - / +")
        if len(self.user_id_for(localpart).encode()) > 255:
            raise MatrixError(400, Codes.INVALID_USERNAME, "User ID is too long")
        return localpart

    @staticmethod
    def check_not_reserved(localpart: str) -> None:
        """400 M_INVALID_USERNAME for a numeric localpart: those are guests' (see above)."""
        if localpart.isascii() and localpart.isdigit():
            raise MatrixError(400, Codes.INVALID_USERNAME,
                              "Numeric user IDs are reserved for guest users")

    async def is_available(self, localpart: str) -> bool:
        self.validate_localpart(localpart)
        async with self._db.connection() as conn:
            return not await self._store.user_exists(conn, localpart)

    async def register(self, localpart: str | None, password: str | None, is_admin: bool = False,
                       registration_token: str | None = None) -> str:
        """Create the user (and consume a registration token) in one transaction."""
        if localpart is None:
            localpart = "user_" + "".join(secrets.choice(string.ascii_lowercase + string.digits)
                                          for _ in range(12))
        localpart = self.validate_localpart(localpart.lower() if localpart else localpart)
        if password is not None:
            self.check_password_strength(password)
        pw_hash = await self.hash_password(password) if password else None
        user_id = self.user_id_for(localpart)
        async with self._db.transaction() as conn:
            if not await self._store.insert_user(conn, user_id, localpart, pw_hash, is_admin,
                                                 _now()):
                raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken")
            if registration_token is not None and not await self._store.use_registration_token(
                    conn, registration_token, _now()):
                raise MatrixError(401, Codes.FORBIDDEN, "Registration token is not valid")
        return user_id

    async def register_guest(self) -> str:
        """A guest account: the next numeric localpart, no password (it logs in only with
        the access token registration gives it)."""
        for _ in range(10):  # a number someone already holds (made by an admin) is skipped
            async with self._db.transaction() as conn:
                localpart = str(await self._store.next_guest_number(conn))
                user_id = self.user_id_for(localpart)
                if await self._store.insert_user(conn, user_id, localpart, None, False, _now(),
                                                 is_guest=True):
                    return user_id
        raise MatrixError(500, Codes.UNKNOWN, "Could not find a free guest user id")

    async def upgrade_guest(self, user_id: str, password: str | None) -> None:
        """The guest becomes a full account with the same id, rooms and devices (spec:
        registering with `guest_access_token`). Its sessions stay; their cached requesters
        still say guest, so they are dropped from the token cache.

        Raises:
            MatrixError: 400 M_USER_IN_USE if `user_id` is not a live guest account.
        """
        pw_hash = await self.hash_password(password) if password else None
        async with self._db.transaction() as conn:
            if not await self._store.upgrade_guest(conn, user_id, pw_hash):
                raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken")
        self._tokens.forget_devices(user_id, None)

    async def guests_among(self, user_ids: list[str]) -> list[str]:
        """Which of these users are guest accounts of this server."""
        if not user_ids:
            return []
        async with self._db.connection() as conn:
            return await self._store.guests_among(conn, user_ids)

    async def registration_token_valid(self, token: str) -> bool:
        async with self._db.connection() as conn:
            return await self._store.registration_token_valid(conn, token, _now())

    async def add_registration_token(self, token: str, uses_allowed: int | None = None) -> None:
        async with self._db.connection() as conn:
            await self._store.add_registration_token(conn, token, uses_allowed, None)

    async def get_user(self, user_id: str) -> JsonDict | None:
        async with self._db.connection() as conn:
            row = await self._store.get_user(conn, user_id)
        return dict(row) if row is not None else None

    async def set_admin(self, user_id: str, is_admin: bool) -> None:
        async with self._db.connection() as conn:
            await self._store.set_admin(conn, user_id, is_admin)

    # ------------------------------------------------------------------ account management

    async def change_password(self, requester: Requester, new_password: str,
                              logout_devices: bool) -> None:
        """Set a new password; `logout_devices` ends every session but the requester's."""
        self.check_password_strength(new_password)
        pw_hash = await self.hash_password(new_password)
        async with self._db.transaction() as conn:
            await self._store.set_password(conn, requester.user_id, pw_hash)
            if logout_devices:
                devices = [d["device_id"] for d in await self._store.devices(
                    conn, requester.user_id) if d["device_id"] != requester.device_id]
                await self._store.delete_devices(conn, requester.user_id, devices)
                await self._store.delete_tokens_except(conn, requester.user_id,
                                                       requester.access_token_id)
        if logout_devices:
            self._tokens.forget_all_but(requester.user_id, requester.access_token_id)

    async def set_password(self, user_id: str, new_password: str, logout_devices: bool) -> None:
        """A server admin sets a password; `logout_devices` ends every session of the user."""
        self.check_password_strength(new_password)
        pw_hash = await self.hash_password(new_password)
        async with self._db.transaction() as conn:
            await self._store.set_password(conn, user_id, pw_hash)
        if logout_devices:
            if self._devices is not None:
                await self._devices.delete_devices(user_id, None)
            self._tokens.forget_devices(user_id, None)
            self._last_seen.forget(user_id, None)

    async def deactivate(self, user_id: str) -> None:
        """Lock the account for good: no password, no profile, no devices or sessions."""
        if self._devices is not None:  # first, so that others learn the devices are gone
            await self._devices.delete_devices(user_id, None)
        for forget in self.on_deactivate:
            await forget(user_id)
        async with self._db.transaction() as conn:
            await self._store.deactivate(conn, user_id)
        self._tokens.forget_devices(user_id, None)
        self._last_seen.forget(user_id, None)
