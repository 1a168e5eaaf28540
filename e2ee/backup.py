"""Server-side key backups (spec "Server-side key backups"): a user's backup versions and the
encrypted megolm sessions stored in them.

The server never sees a key: `auth_data` and `session_data` are stored as the client sent them,
once their shape has been checked (e2ee/backup_rules.py). What the server decides is which
upload wins for a session already stored (`should_replace`), and the etag and count that let a
client notice that another device changed the backup.

Concurrency: every write to a version's sessions runs in one transaction that first locks the
version's row (`lock_version`), then reads the stored keys it may replace, writes, and updates
etag and count on that row. Two devices uploading at once are therefore serialised per backup,
and a backup deleted or superseded meanwhile is noticed under the lock. Creating a version takes
a transaction-scoped advisory lock on the user, so that two creations get different numbers.
Reads take no lock.
"""

from __future__ import annotations

from typing import Any

import orjson

from e2ee.backup_rules import (
    RoomKey,
    algorithm_of,
    check_room_id,
    check_session_id,
    parse_uploads,
    parse_version,
    parse_version_info,
    should_replace,
)
from e2ee.backup_store import KeyBackupStore
from homeserver.errors import Codes, MatrixError, bad_json, invalid_param, not_found
from homeserver.storage.database import Database
from homeserver.types import JsonDict

# Advisory lock class (first key) of version creation; the second key is the user's hash.
_CREATE_LOCK_CLASS = 11


def _unknown(version: str) -> MatrixError:
    return not_found(f"Unknown backup version {version!r}")


def _check_path(room_id: str | None, session_id: str | None) -> None:
    if room_id is not None:
        check_room_id(room_id)
    if session_id is not None:
        check_session_id(session_id)


class KeyBackupService:
    def __init__(self, db: Database, store: KeyBackupStore) -> None:
        self._db = db
        self._store = store

    # ------------------------------------------------------------------ versions

    async def create_version(self, user_id: str, body: JsonDict) -> str:
        """A new backup version, which becomes the latest: later uploads must name it."""
        algorithm, auth_data = parse_version_info(body)
        async with self._db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))",
                               _CREATE_LOCK_CLASS, user_id)
            version = await self._store.create_version(conn, user_id, algorithm, auth_data)
        return str(version)

    async def get_version(self, user_id: str, version: str | None) -> JsonDict:
        """The version's algorithm, auth_data, count and etag; the latest when `version` is
        None. Deleted versions are not found."""
        number = None if version is None else parse_version(version)
        if version is not None and number is None:
            raise _unknown(version)
        async with self._db.connection() as conn:
            row = await self._store.get_version(conn, user_id, number)
        if row is None:
            raise not_found("No current backup version" if version is None
                            else f"Unknown backup version {version!r}")
        return {"algorithm": row["algorithm"],
                "auth_data": orjson.Fragment(row["auth_data"]),
                "count": row["key_count"], "etag": str(row["etag"]),
                "version": str(row["version"])}

    async def update_version(self, user_id: str, version: str, body: JsonDict) -> None:
        """Replace the version's auth_data; the algorithm cannot change."""
        if "version" in body:
            if not isinstance(body["version"], str):
                raise bad_json("version must be a string")
            if body["version"] != version:
                raise invalid_param("The version in the body does not match the path")
        algorithm, auth_data = parse_version_info(body)
        number = parse_version(version)
        if number is None:
            raise _unknown(version)
        async with self._db.transaction() as conn:
            row = await self._store.lock_version(conn, user_id, number)
            if row is None:
                raise _unknown(version)
            if row["algorithm"] != algorithm:
                raise invalid_param("The algorithm does not match the backup's")
            await self._store.update_auth_data(conn, user_id, number, auth_data)

    async def delete_version(self, user_id: str, version: str) -> None:
        """Delete the version and its keys. Deleting it again succeeds (spec)."""
        number = parse_version(version)
        if number is None:
            raise _unknown(version)
        async with self._db.transaction() as conn:
            deleted = await self._store.version_state(conn, user_id, number)
            if deleted is None:
                raise _unknown(version)
            if not deleted:
                await self._store.delete_version(conn, user_id, number)

    async def forget_user(self, user_id: str) -> None:
        """A deactivated account keeps no backup: its keys are of no use to anyone."""
        async with self._db.transaction() as conn:
            await self._store.delete_all(conn, user_id)

    # ------------------------------------------------------------------ keys

    async def put_keys(self, user_id: str, version: str, body: JsonDict,
                       room_id: str | None = None, session_id: str | None = None) -> JsonDict:
        """Store keys in the latest version, each unless the stored key for its session is
        better (`should_replace`). Returns the backup's new etag and count."""
        number = parse_version(version)
        if number is None:
            raise _unknown(version)
        async with self._db.connection() as conn:
            info = await self._store.get_version(conn, user_id, number)
        if info is None:
            raise _unknown(version)
        # The algorithm of a version never changes, so the body is checked before the lock.
        uploads = parse_uploads(body, algorithm_of(info["algorithm"]), room_id, session_id)
        async with self._db.transaction() as conn:
            row = await self._store.lock_version(conn, user_id, number)
            if row is None:  # deleted meanwhile
                raise _unknown(version)
            latest = await self._store.latest_version(conn, user_id)
            if latest != number:
                raise MatrixError(403, Codes.WRONG_ROOM_KEYS_VERSION,
                                  "Wrong backup version: keys go to the latest one",
                                  current_version=str(latest))
            etag, count = row["etag"], row["key_count"]
            if uploads:
                stored = await self._store.existing(conn, user_id, number, list(uploads))
                winners: dict[tuple[str, str], RoomKey] = {}
                for key, new in uploads.items():
                    old = stored.get(key)
                    if old is None or should_replace(old, new):
                        winners[key] = new
                if winners:
                    await self._store.upsert(conn, user_id, number, winners)
                    etag += 1
                    count += sum(1 for key in winners if key not in stored)
                    await self._store.set_counts(conn, user_id, number, etag, count)
        return {"etag": str(etag), "count": count}

    async def get_keys(self, user_id: str, version: str, room_id: str | None = None,
                       session_id: str | None = None) -> dict[str, dict[str, Any]]:
        """{room_id: {session_id: KeyBackupData}} of the version (or of one room or session);
        M_NOT_FOUND only when the version does not exist."""
        _check_path(room_id, session_id)
        number = parse_version(version)
        if number is None:
            raise _unknown(version)
        async with self._db.transaction() as conn:
            if await self._store.get_version(conn, user_id, number) is None:
                raise _unknown(version)
            rows = await self._store.sessions(conn, user_id, number, room_id, session_id)
        rooms: dict[str, dict[str, Any]] = {}
        for r in rows:
            rooms.setdefault(r["room_id"], {})[r["session_id"]] = {
                "first_message_index": r["first_message_index"],
                "forwarded_count": r["forwarded_count"],
                "is_verified": r["is_verified"],
                "session_data": orjson.Fragment(r["session_data"]),
            }
        return rooms

    async def delete_keys(self, user_id: str, version: str, room_id: str | None = None,
                          session_id: str | None = None) -> JsonDict:
        """Delete the version's keys (of one room, or one session); etag changes only if a key
        was there to delete."""
        _check_path(room_id, session_id)
        number = parse_version(version)
        if number is None:
            raise _unknown(version)
        async with self._db.transaction() as conn:
            row = await self._store.lock_version(conn, user_id, number)
            if row is None:
                raise _unknown(version)
            etag, count = row["etag"], row["key_count"]
            gone = await self._store.delete_sessions(conn, user_id, number, room_id,
                                                     session_id)
            if gone:
                etag, count = etag + 1, count - gone
                await self._store.set_counts(conn, user_id, number, etag, count)
        return {"etag": str(etag), "count": count}
