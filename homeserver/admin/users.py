"""What a server admin does to accounts (Synapse's user admin API, spec v1.18 "Account locking"
and "Account suspension"): list and look up users, create or modify one, deactivate (with
erase), reset a password, see sessions and devices, and set the account states (admin, locked,
suspended, shadow-banned, a message rate-limit override).

Account states are read with the access token on every request (homeserver/users/sessions.py
caches them with the token), so every change here drops the user's cached tokens: the next
request of each of their sessions sees the new state.
"""

from __future__ import annotations

import time

import asyncpg

from homeserver.admin.store import AdminStore
from homeserver.config import RateLimit
from homeserver.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from homeserver.identity.store import ThreepidStore
from homeserver.identity.threepids import ThreepidService
from homeserver.push.pushers import PusherService
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.reader import RoomReader
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester, is_valid_user_id
from homeserver.users.accounts import AccountService
from homeserver.users.devices import DeviceService
from homeserver.users.profiles import ProfileService
from homeserver.users.tokens import TokenCache

FLAGS = ("locked", "suspended", "shadow_banned")


def _now() -> int:
    return int(time.time() * 1000)


def user_json(r: asyncpg.Record, full: bool = False) -> JsonDict:
    """A user as Synapse's admin API shows one: creation_ts in milliseconds in the list, in
    seconds for one user (GET /v2/users/{userId}), as Synapse answers."""
    d: JsonDict = {
        "name": r["user_id"], "displayname": r["displayname"], "avatar_url": r["avatar_url"],
        "is_guest": r["is_guest"], "admin": r["is_admin"], "user_type": None,
        "deactivated": r["deactivated"], "erased": r["erased"],
        "shadow_banned": r["shadow_banned"],
        "creation_ts": int(r["created_ts"]) // 1000 if full else int(r["created_ts"]),
        "approved": True, "locked": r["locked"], "suspended": r["suspended"],
        "last_seen_ts": r["last_seen_ts"],
    }
    if full:
        d.update({"threepids": [], "external_ids": [], "appservice_id": None,
                  "consent_server_notice_sent": None, "consent_version": None,
                  "consent_ts": None})
    return d


class AccountStates:
    """The admin-set account states and rate-limit overrides."""

    def __init__(self, db: Database, store: AdminStore, tokens: TokenCache,
                 limiter: RateLimiter, erased: set[str] | None = None) -> None:
        self._db = db
        self._store = store
        self._tokens = tokens
        self._limiter = limiter
        # The erased users whose events readers see without content (shared with
        # homeserver/rooms/visibility.py).
        self.erased = erased if erased is not None else set()

    async def load(self) -> None:
        """The rate-limit overrides and the erased users, at start."""
        async with self._db.connection() as conn:
            rows = await self._store.all_ratelimit_overrides(conn)
            self.erased.update(await self._store.erased_users(conn))
        self._limiter.message_overrides = {
            r["user_id"]: RateLimit(float(r["messages_per_second"]), int(r["burst_count"]))
            for r in rows}

    async def set_flag(self, user_id: str, flag: str, value: bool) -> None:
        async with self._db.connection() as conn:
            if not await self._store.set_flag(conn, user_id, flag, value):
                raise not_found("User not found")
        self._tokens.forget_devices(user_id, None)

    def forget_sessions(self, user_id: str) -> None:
        """Drop the user's cached tokens (their admin flag or state changed)."""
        self._tokens.forget_devices(user_id, None)

    async def ratelimit(self, user_id: str) -> JsonDict:
        async with self._db.connection() as conn:
            row = await self._store.ratelimit_override(conn, user_id)
        if row is None:
            return {}
        return {"messages_per_second": int(row["messages_per_second"])
                if float(row["messages_per_second"]).is_integer()
                else float(row["messages_per_second"]), "burst_count": int(row["burst_count"])}

    async def set_ratelimit(self, user_id: str, per_second: float, burst: int) -> None:
        async with self._db.connection() as conn:
            await self._store.set_ratelimit_override(conn, user_id, per_second, burst)
        self._limiter.message_overrides[user_id] = RateLimit(per_second, burst)

    async def delete_ratelimit(self, user_id: str) -> None:
        async with self._db.connection() as conn:
            await self._store.delete_ratelimit_override(conn, user_id)
        self._limiter.message_overrides.pop(user_id, None)


class UserAdminService:
    def __init__(self, db: Database, store: AdminStore, accounts: AccountService,
                 devices: DeviceService, profiles: ProfileService, rooms: RoomService,
                 reader: RoomReader, states: AccountStates, threepids: ThreepidService,
                 threepid_store: ThreepidStore) -> None:
        self._db = db
        self._store = store
        self._threepids = threepids
        self._ids = threepid_store
        self.accounts = accounts
        self.devices = devices
        self._profiles = profiles
        self._rooms = rooms
        self._reader = reader
        self.states = states
        self.pusher_service: PusherService | None = None  # set in homeserver/app.py

    # ------------------------------------------------------------------ lookups

    def local_user(self, user_id: str) -> str:
        """`user_id` if it is a valid id of this server, else 400 M_INVALID_PARAM."""
        if not is_valid_user_id(user_id):
            raise invalid_param("Invalid user id")
        if user_id.partition(":")[2] != self.accounts.server_name:
            raise invalid_param("Can only look up local users")
        return user_id

    async def user(self, user_id: str) -> JsonDict:
        self.local_user(user_id)
        async with self._db.connection() as conn:
            row = await self._store.user(conn, user_id)
            if row is None:
                raise not_found("User not found")
            threepids = await self._ids.of_user(conn, user_id)
            externals = await self._ids.externals_of(conn, user_id)
        out = user_json(row, full=True)
        out["threepids"] = [{"medium": r["medium"], "address": r["address"],
                             "added_at": r["added_at"], "validated_at": r["validated_at"]}
                            for r in threepids]
        out["external_ids"] = [{"auth_provider": r["auth_provider"],
                                "external_id": r["external_id"]} for r in externals]
        return out

    async def user_by_threepid(self, medium: str, address: str) -> str:
        """GET /v1/threepid/{medium}/users/{address}."""
        try:
            owner = await self._threepids.user_for(medium, address)
        except MatrixError:
            owner = None  # not an address any account could have
        if owner is None:
            raise not_found("User not found")
        return owner

    async def user_by_external_id(self, provider: str, external_id: str) -> str:
        """GET /v1/auth_providers/{provider}/users/{externalId}."""
        async with self._db.connection() as conn:
            owner = await self._ids.external_user(conn, provider, external_id)
        if owner is None:
            raise not_found("User not found")
        return owner

    @staticmethod
    def parse_external_ids(value: object) -> list[tuple[str, str]]:
        """An admin's `external_ids` list as (auth_provider, external_id) pairs; 400 for
        anything else, before anything is changed."""
        if not isinstance(value, list) or len(value) > 100:
            raise MatrixError(400, Codes.BAD_JSON, "external_ids must be a list (at most 100)")
        out: list[tuple[str, str]] = []
        for item in value:
            if not isinstance(item, dict) or "auth_provider" not in item \
                    or "external_id" not in item:
                raise MatrixError(400, Codes.MISSING_PARAM,
                                  "Each external id needs an auth_provider and an external_id")
            pair = (item["auth_provider"], item["external_id"])
            if not all(isinstance(v, str) and v and len(v) <= 255 and "\x00" not in v
                       for v in pair):
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  "auth_provider and external_id must be non-empty strings")
            if pair not in out:
                out.append(pair)
        return out

    async def _external_conflicts(self, user_id: str, externals: list[tuple[str, str]]) -> None:
        async with self._db.connection() as conn:
            for provider, external_id in externals:
                owner = await self._ids.external_user(conn, provider, external_id)
                if owner is not None and owner != user_id:
                    raise MatrixError(409, Codes.UNKNOWN, "External id is already in use.")

    async def _replace_external_ids(self, user_id: str,
                                    externals: list[tuple[str, str]]) -> None:
        async with self._db.transaction() as conn:
            if await self._ids.replace_externals(conn, user_id, externals):
                raise MatrixError(409, Codes.UNKNOWN, "External id is already in use.")

    async def existing(self, user_id: str, active: bool = False) -> JsonDict:
        """The user (404 when unknown; with `active`, deactivated users are unknown too)."""
        u = await self.user(user_id)
        if active and u["deactivated"]:
            raise not_found("User not found")
        return u

    async def list_users(self, *, user_id: str | None, name: str | None, guests: bool,
                         deactivated: bool, locked: bool, admins: bool | None, order_by: str,
                         backwards: bool, limit: int, offset: int) -> tuple[list[JsonDict], int]:
        async with self._db.connection() as conn:
            rows, total = await self._store.list_users(
                conn, user_id, name, guests, deactivated, locked, admins, order_by, backwards,
                limit, offset)
        return [user_json(r) for r in rows], total

    # ------------------------------------------------------------------ create or modify

    async def upsert(self, requester: Requester, user_id: str, body: JsonDict) -> bool:
        """PUT /v2/users/{userId}: create the user, or change what the body names. Returns
        True when the user was created. What the body holds is checked first, so a bad body (or
        a 3PID or external id of another account) changes nothing."""
        self.local_user(user_id)
        threepids = (self._threepids.parse_list(body["threepids"])
                     if body.get("threepids") is not None else None)
        externals = (self.parse_external_ids(body["external_ids"])
                     if body.get("external_ids") is not None else None)
        if threepids is not None:
            await self._threepids.conflicts(user_id, threepids)
        if externals is not None:
            await self._external_conflicts(user_id, externals)
        async with self._db.connection() as conn:
            exists = await self._store.user(conn, user_id) is not None
        created = False
        if not exists:
            localpart = user_id[1:].partition(":")[0]
            if localpart != localpart.lower():
                raise MatrixError(400, Codes.INVALID_USERNAME,
                                  "User ID may only contain a-z, 0-9, and . _ = - / +")
            await self.accounts.register(localpart, body.get("password"),
                                         is_admin=bool(body.get("admin", False)))
            created = True
        elif "password" in body and body["password"] is not None:
            await self.accounts.set_password(user_id, body["password"],
                                             bool(body.get("logout_devices", True)))
        if exists and "admin" in body:
            await self.set_admin(requester, user_id, bool(body["admin"]))
        for field in ("displayname", "avatar_url"):
            if field in body:
                await self._profiles.set_profile_field(
                    Requester(requester.user_id, requester.device_id, is_admin=True),
                    user_id, field, body[field])
                await self._rooms.update_profile(Requester(user_id, ""), user_id)
        if threepids is not None:
            await self._threepids.replace(user_id, threepids)
        if externals is not None:
            await self._replace_external_ids(user_id, externals)
        if "locked" in body:
            await self.states.set_flag(user_id, "locked", bool(body["locked"]))
        if body.get("deactivated") is True:
            await self.deactivate(user_id, erase=False)
        elif body.get("deactivated") is False and exists:
            await self.reactivate(user_id, body.get("password"))
        return created

    async def set_admin(self, requester: Requester, user_id: str, admin: bool) -> None:
        self.local_user(user_id)
        if user_id == requester.user_id and not admin:
            raise MatrixError(400, Codes.UNKNOWN, "You may not demote yourself.")
        await self.existing(user_id)
        await self.accounts.set_admin(user_id, admin)
        self.states.forget_sessions(user_id)

    async def deactivate(self, user_id: str, erase: bool) -> None:
        """Leave every room, end every session, drop the profile; `erase` marks the user as
        erased as well (Synapse's GDPR erasure flag)."""
        await self.existing(user_id)
        await self._rooms.leave_all(Requester(user_id, ""))
        await self.accounts.deactivate(user_id)
        if erase:
            await self.mark_erased(user_id)

    async def mark_erased(self, user_id: str) -> None:
        """Mark the user erased: readers who were not joined when their events were sent see
        them without content (also the client API's deactivation with `erase`)."""
        async with self._db.connection() as conn:
            await self._store.set_flag(conn, user_id, "erased", True)
        self.states.erased.add(user_id)

    async def reactivate(self, user_id: str, password: str | None) -> None:
        u = await self.existing(user_id)
        if not u["deactivated"]:
            return
        if not password:
            raise MatrixError(400, Codes.MISSING_PARAM,
                              "Must provide a password to re-activate an account.")
        await self.accounts.set_password(user_id, password, True)
        async with self._db.transaction() as conn:
            await self._store.set_flag(conn, user_id, "deactivated", False)
            await self._store.set_flag(conn, user_id, "erased", False)
        self.states.erased.discard(user_id)

    async def reset_password(self, user_id: str, password: str, logout_devices: bool) -> None:
        u = await self.existing(user_id)
        if u["deactivated"]:
            raise forbidden("The user is deactivated")
        await self.accounts.set_password(user_id, password, logout_devices)

    # ------------------------------------------------------------------ sessions and rooms

    async def whois(self, user_id: str) -> JsonDict:
        await self.existing(user_id)
        devices: JsonDict = {}
        for d in await self.devices.devices(user_id):
            conn = {"ip": d.get("last_seen_ip"), "last_seen": d.get("last_seen_ts"),
                    "user_agent": None}
            devices[d["device_id"]] = {"sessions": [{"connections": [conn]}]}
        return {"user_id": user_id, "devices": devices}

    async def user_devices(self, user_id: str) -> list[JsonDict]:
        await self.existing(user_id)
        return [{**d, "last_seen_ip": d.get("last_seen_ip"),
                 "last_seen_ts": d.get("last_seen_ts"), "last_seen_user_agent": None}
                for d in await self.devices.devices(user_id)]

    async def joined_rooms(self, user_id: str) -> list[str]:
        await self.existing(user_id)
        return sorted(await self._reader.joined_rooms(user_id))

    async def pushers(self, user_id: str) -> list[JsonDict]:
        await self.existing(user_id)
        service = self.pusher_service
        return await service.list(user_id) if service is not None else []

    async def username_available(self, localpart: str) -> bool:
        return await self.accounts.is_available(localpart)
