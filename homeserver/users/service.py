"""Accounts: registration, login, access tokens, devices, profiles, account data, filters.

Access tokens are random strings stored only as SHA-256 digests; a small in-memory map from digest
to requester keeps the per-request auth check off the database (entries are dropped on logout).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import string
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from homeserver.errors import Codes, MatrixError, forbidden, not_found
from homeserver.storage.database import Database
from homeserver.storage.streams import StreamIdGen
from homeserver.sync.notifier import Notifier
from homeserver.types import JsonDict, Requester, is_valid_new_localpart
from homeserver.users.store import UserStore

# OWASP's minimum argon2id profile: strong, and fast enough that registration is not a DoS vector.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)

log = logging.getLogger(__name__)

_DeviceKey = tuple[str, str]  # (user_id, device_id)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _now() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class LoginResult:
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str | None = None
    expires_in_ms: int | None = None


class UserService:
    def __init__(self, db: Database, store: UserStore, server_name: str,
                 account_stream: StreamIdGen, notifier: Notifier,
                 password_min_length: int = 0, last_seen_flush_s: float = 60.0) -> None:
        self._db = db
        self._store = store
        self.server_name = server_name
        self.account_stream = account_stream
        self._notifier = notifier
        self._min_len = password_min_length
        self._tokens: OrderedDict[bytes, tuple[Requester, int | None]] = OrderedDict()
        # One lock per user with a tag change in flight (dropped when unused), so concurrent
        # changes to different tags of a room are not lost in the read-modify-write of m.tag.
        self._tag_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())
        # Last seen (ts, ip) per device, kept in memory by authenticate() and written to the
        # devices table by one background task in batches, at most once per device per
        # `last_seen_flush_s` (a device never flushed yet is written at the next wake-up).
        # `_seen` holds values not yet known to be in the DB (including ones being written),
        # `_seen_dirty` the devices not yet handed to a flush, `_seen_flushed` when each device
        # was last flushed (monotonic; pruned once the interval has passed).
        self._seen_interval = last_seen_flush_s
        self._seen: dict[_DeviceKey, tuple[int, str | None]] = {}
        self._seen_dirty: set[_DeviceKey] = set()
        self._seen_flushed: dict[_DeviceKey, float] = {}
        self._seen_wakeup = asyncio.Event()
        self._seen_lock = asyncio.Lock()
        self._seen_task: asyncio.Task[None] | None = None

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

    # ------------------------------------------------------------------ sessions

    async def create_session(self, user_id: str, device_id: str | None,
                             display_name: str | None, ip: str | None = None,
                             refresh: bool = False) -> LoginResult:
        device_id = device_id or "".join(secrets.choice(string.ascii_uppercase)
                                         for _ in range(10))
        token = "pa_" + secrets.token_urlsafe(32)
        refresh_token = "pr_" + secrets.token_urlsafe(32) if refresh else None
        expires = 3_600_000 if refresh else None
        async with self._db.transaction() as conn:
            await self._store.upsert_device(conn, user_id, device_id, display_name, _now(), ip)
            await self._store.insert_token(
                conn, token_hash(token), user_id, device_id, _now(),
                _now() + expires if expires else None,
                token_hash(refresh_token) if refresh_token else None,
            )
        return LoginResult(user_id, device_id, token, refresh_token, expires)

    async def refresh(self, refresh_token: str) -> LoginResult:
        async with self._db.transaction() as conn:
            row = await self._store.refresh_owner(conn, token_hash(refresh_token))
            if row is None:
                raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown refresh token",
                                  soft_logout=False)
            await self._store.delete_token(conn, row["id"])
            token = "pa_" + secrets.token_urlsafe(32)
            new_refresh = "pr_" + secrets.token_urlsafe(32)
            await self._store.insert_token(conn, token_hash(token), row["user_id"],
                                           row["device_id"], _now(), _now() + 3_600_000,
                                           token_hash(new_refresh))
        self._forget_tokens_of(row["user_id"], [row["device_id"]])
        return LoginResult(row["user_id"], row["device_id"], token, new_refresh, 3_600_000)

    async def authenticate(self, token: str, ip: str | None = None) -> Requester:
        h = token_hash(token)
        cached = self._tokens.get(h)
        if cached is None:
            async with self._db.connection() as conn:
                row = await self._store.token_owner(conn, h)
            if row is None or row["deactivated"]:
                raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown access token",
                                  soft_logout=False)
            cached = (Requester(row["user_id"], row["device_id"], row["is_admin"],
                                row["is_guest"], row["id"]), row["valid_until_ms"])
            self._tokens[h] = cached
            if len(self._tokens) > 100_000:
                self._tokens.popitem(last=False)
        requester, valid_until = cached
        if valid_until is not None and valid_until < _now():
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Access token has expired",
                              soft_logout=True)
        self._record_seen(requester, ip)
        return requester

    # ------------------------------------------------------------------ last seen

    def _record_seen(self, requester: Requester, ip: str | None) -> None:
        key = (requester.user_id, requester.device_id)
        self._seen[key] = (_now(), ip)
        self._seen_dirty.add(key)
        if key not in self._seen_flushed:
            self._seen_wakeup.set()  # first request since login (or in a while): write soon

    def _forget_seen(self, user_id: str, device_ids: list[str] | None) -> None:
        for key in [k for k in self._seen if k[0] == user_id
                    and (device_ids is None or k[1] in device_ids)]:
            self._seen.pop(key, None)
            self._seen_dirty.discard(key)

    def _merge_seen(self, user_id: str, d: JsonDict) -> JsonDict:
        """Overlay the in-memory last seen value (if fresher) on a device's JSON."""
        seen = self._seen.get((user_id, d["device_id"]))
        if seen is not None and seen[0] >= d.get("last_seen_ts", 0):
            d["last_seen_ts"] = seen[0]
            if seen[1] is not None:
                d["last_seen_ip"] = seen[1]
        return d

    async def flush_last_seen(self, force: bool = True) -> None:
        """Write pending last seen values in one UPDATE: all of them, or (force=False) those
        of devices not flushed within the interval. Flushes run one at a time, so when this
        returns, every value recorded before the call is in the DB."""
        async with self._seen_lock:
            now = time.monotonic()
            for key, at in list(self._seen_flushed.items()):
                if now - at >= self._seen_interval:
                    del self._seen_flushed[key]
            due = [k for k in self._seen_dirty if force or k not in self._seen_flushed]
            if not due:
                return
            batch = [(k, self._seen[k]) for k in due if k in self._seen]
            self._seen_dirty.difference_update(due)
            for k in due:
                self._seen_flushed[k] = now
            try:
                async with self._db.connection() as conn:
                    await self._store.update_last_seen(
                        conn, [k[0] for k, _ in batch], [k[1] for k, _ in batch],
                        [v[0] for _, v in batch], [v[1] for _, v in batch])
            except BaseException:
                for k, v in batch:  # retry later unless a newer value is already pending
                    if self._seen.get(k) == v:
                        self._seen_dirty.add(k)
                raise
            for k, v in batch:
                if self._seen.get(k) == v:
                    del self._seen[k]

    async def start(self) -> None:
        if self._seen_task is None:
            self._seen_task = asyncio.create_task(self._run_seen(), name="last-seen-flush")

    async def stop(self) -> None:
        task, self._seen_task = self._seen_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush_last_seen()
        except Exception:
            log.exception("Could not write devices' last seen values")

    async def _run_seen(self) -> None:
        tick = max(0.01, min(5.0, self._seen_interval))
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._seen_wakeup.wait(), tick)
            self._seen_wakeup.clear()
            try:
                await self.flush_last_seen(force=False)
            except Exception:
                log.exception("Could not write devices' last seen values")
                await asyncio.sleep(tick)

    def _forget_tokens_of(self, user_id: str, device_ids: list[str] | None) -> None:
        for h, (req, _) in list(self._tokens.items()):
            if req.user_id == user_id and (device_ids is None or req.device_id in device_ids):
                del self._tokens[h]

    async def logout(self, requester: Requester) -> None:
        await self.delete_devices(requester.user_id, [requester.device_id])

    async def logout_all(self, user_id: str) -> None:
        await self.delete_devices(user_id, None)

    async def delete_devices(self, user_id: str, device_ids: list[str] | None) -> None:
        async with self._db.transaction() as conn:
            await self._store.delete_devices(conn, user_id, device_ids)
        self._forget_tokens_of(user_id, device_ids)
        self._forget_seen(user_id, device_ids)

    async def change_password(self, requester: Requester, new_password: str,
                              logout_devices: bool) -> None:
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
            for h, (req, _) in list(self._tokens.items()):
                if req.user_id == requester.user_id and req.access_token_id != \
                        requester.access_token_id:
                    del self._tokens[h]

    async def deactivate(self, user_id: str) -> None:
        async with self._db.transaction() as conn:
            await self._store.deactivate(conn, user_id)
        self._forget_tokens_of(user_id, None)
        self._forget_seen(user_id, None)

    # ------------------------------------------------------------------ devices

    async def devices(self, user_id: str) -> list[JsonDict]:
        async with self._db.connection() as conn:
            rows = await self._store.devices(conn, user_id)
        return [self._merge_seen(user_id, _device_json(user_id, r)) for r in rows]

    async def device(self, user_id: str, device_id: str) -> JsonDict:
        async with self._db.connection() as conn:
            row = await self._store.device(conn, user_id, device_id)
        if row is None:
            raise not_found("Unknown device")
        return self._merge_seen(user_id, _device_json(user_id, row))

    async def rename_device(self, user_id: str, device_id: str, name: str) -> None:
        async with self._db.connection() as conn:
            if not await self._store.rename_device(conn, user_id, device_id, name):
                raise not_found("Unknown device")

    # ------------------------------------------------------------------ profiles

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
        async with self._db.connection() as conn:
            await self._store.set_profile_field(conn, user_id, field, value)

    # ------------------------------------------------------------------ account data

    async def put_account_data(self, user_id: str, room_id: str, type: str,
                               content: JsonDict) -> None:
        pos = self.account_stream.allocate()
        try:
            async with self._db.connection() as conn:
                await self._store.put_account_data(conn, user_id, room_id, type,
                                                   orjson.dumps(content).decode(), pos)
        finally:
            self.account_stream.finish(pos)
        self._notifier.notify_users([user_id])

    async def get_account_data(self, user_id: str, room_id: str, type: str) -> JsonDict:
        async with self._db.connection() as conn:
            raw = await self._store.get_account_data(conn, user_id, room_id, type)
        if raw is None:
            raise not_found("Account data not found")
        result: JsonDict = orjson.loads(raw)
        return result

    async def room_tags(self, user_id: str, room_id: str) -> JsonDict:
        """The user's tags on a room: the `tags` of the room's `m.tag` account data, or {}."""
        async with self._db.connection() as conn:
            raw = await self._store.get_account_data(conn, user_id, room_id, "m.tag")
        tags = orjson.loads(raw).get("tags") if raw is not None else None
        return dict(tags) if isinstance(tags, dict) else {}

    async def set_room_tag(self, user_id: str, room_id: str, tag: str,
                           info: JsonDict | None) -> None:
        """Add or replace one tag (`info`, e.g. {"order": 0.5}) or remove it (None).

        Stored as the room's `m.tag` account data, so it reaches every device through sync.
        """
        lock = self._tag_locks.get(user_id)
        if lock is None:
            lock = self._tag_locks[user_id] = asyncio.Lock()
        async with lock:
            tags = await self.room_tags(user_id, room_id)
            if info is None:
                if tag not in tags:
                    return  # nothing changes, nothing to sync
                del tags[tag]
            else:
                tags[tag] = info
            await self.put_account_data(user_id, room_id, "m.tag", {"tags": tags})

    async def account_data_since(self, user_id: str, since: int) -> list[tuple[str, str, JsonDict]]:
        async with self._db.connection() as conn:
            rows = await self._store.account_data_since(conn, user_id, since)
        return [(r["room_id"], r["type"], orjson.loads(r["content"])) for r in rows
                if r["stream_id"] <= self.account_stream.current]

    async def create_filter(self, user_id: str, filter_json: JsonDict) -> str:
        async with self._db.connection() as conn:
            return str(await self._store.insert_filter(conn, user_id,
                                                       orjson.dumps(filter_json).decode()))

    async def get_filter(self, user_id: str, filter_id: str) -> JsonDict:
        if not (filter_id.isascii() and filter_id.isdigit()) or len(filter_id) > 18:
            raise not_found("Unknown filter")  # filter ids are BIGINTs we handed out
        async with self._db.connection() as conn:
            raw = await self._store.get_filter(conn, user_id, int(filter_id))
        if raw is None:
            raise not_found("Unknown filter")
        result: JsonDict = orjson.loads(raw)
        return result


def _device_json(user_id: str, row: object) -> JsonDict:
    r = row
    # display_name is always present (null when unset): matrix-nio rejects a device without it.
    d: JsonDict = {"device_id": r["device_id"], "user_id": user_id,  # type: ignore[index]
                   "display_name": r["display_name"]}  # type: ignore[index]
    if r["last_seen_ts"] is not None:  # type: ignore[index]
        d["last_seen_ts"] = r["last_seen_ts"]  # type: ignore[index]
    if r["last_seen_ip"] is not None:  # type: ignore[index]
        d["last_seen_ip"] = r["last_seen_ip"]  # type: ignore[index]
    return d
