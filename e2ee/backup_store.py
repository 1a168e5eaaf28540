"""SQL for server-side key backups: backup versions and their sessions (migration 0011).

Every method takes the connection of the caller's transaction; `lock_version` must come first in
any transaction that writes a version's sessions, so that its etag and count change with them.
"""

from __future__ import annotations

import asyncpg

from e2ee.backup_rules import RoomKey
from homeserver.storage.database import Conn

_VERSION_COLUMNS = "version, algorithm, auth_data, etag, key_count"

_LATEST = f"""
SELECT {_VERSION_COLUMNS} FROM room_key_backup_versions
WHERE user_id = $1 AND NOT deleted ORDER BY version DESC LIMIT 1
"""

_ONE = f"""
SELECT {_VERSION_COLUMNS} FROM room_key_backup_versions
WHERE user_id = $1 AND version = $2 AND NOT deleted
"""

# Numbers are per user and never reused, deleted versions included. Two concurrent creations
# compute the same number; the primary key refuses the second, which the service retries.
_CREATE = """
INSERT INTO room_key_backup_versions (user_id, version, algorithm, auth_data)
SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3 FROM room_key_backup_versions
WHERE user_id = $1
RETURNING version
"""

_EXISTING = """
SELECT s.room_id, s.session_id, s.first_message_index, s.forwarded_count, s.is_verified,
       s.session_data
FROM unnest($3::text[], $4::text[]) AS k(room_id, session_id)
JOIN room_key_backup_sessions s
  ON s.user_id = $1 AND s.version = $2 AND s.room_id = k.room_id AND s.session_id = k.session_id
"""

_UPSERT = """
INSERT INTO room_key_backup_sessions
    (user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified,
     session_data)
SELECT $1, $2, k.* FROM unnest($3::text[], $4::text[], $5::bigint[], $6::bigint[],
                               $7::boolean[], $8::text[]) AS k
ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
    first_message_index = EXCLUDED.first_message_index,
    forwarded_count = EXCLUDED.forwarded_count,
    is_verified = EXCLUDED.is_verified,
    session_data = EXCLUDED.session_data
"""

_SESSION_COLUMNS = ("room_id, session_id, first_message_index, forwarded_count, is_verified,"
                    " session_data")


def room_key(row: asyncpg.Record) -> RoomKey:
    return RoomKey(row["first_message_index"], row["forwarded_count"], row["is_verified"],
                   row["session_data"])


class KeyBackupStore:
    # -- versions

    async def create_version(self, conn: Conn, user_id: str, algorithm: str,
                             auth_data: str) -> int:
        """Raises asyncpg.UniqueViolationError when a concurrent creation took the number."""
        return int(await conn.fetchval(_CREATE, user_id, algorithm, auth_data))

    async def get_version(self, conn: Conn, user_id: str,
                          version: int | None) -> asyncpg.Record | None:
        """A live version (the latest one when `version` is None), or None."""
        if version is None:
            return await conn.fetchrow(_LATEST, user_id)
        return await conn.fetchrow(_ONE, user_id, version)

    async def lock_version(self, conn: Conn, user_id: str,
                           version: int) -> asyncpg.Record | None:
        """The live version row, locked until the transaction ends; None if there is none."""
        return await conn.fetchrow(_ONE + " FOR UPDATE", user_id, version)

    async def latest_version(self, conn: Conn, user_id: str) -> int | None:
        v = await conn.fetchval("SELECT MAX(version) FROM room_key_backup_versions"
                                " WHERE user_id = $1 AND NOT deleted", user_id)
        return None if v is None else int(v)

    async def update_auth_data(self, conn: Conn, user_id: str, version: int,
                               auth_data: str) -> None:
        await conn.execute("UPDATE room_key_backup_versions SET auth_data = $3"
                           " WHERE user_id = $1 AND version = $2", user_id, version, auth_data)

    async def version_state(self, conn: Conn, user_id: str, version: int) -> bool | None:
        """True if the version was deleted, False if it is live, None if it never existed; the
        row stays locked until the transaction ends."""
        deleted = await conn.fetchval("SELECT deleted FROM room_key_backup_versions"
                                      " WHERE user_id = $1 AND version = $2 FOR UPDATE",
                                      user_id, version)
        return None if deleted is None else bool(deleted)

    async def delete_version(self, conn: Conn, user_id: str, version: int) -> None:
        """Drop the version's sessions and mark it deleted (its number stays taken)."""
        await conn.execute("DELETE FROM room_key_backup_sessions"
                           " WHERE user_id = $1 AND version = $2", user_id, version)
        await conn.execute(
            "UPDATE room_key_backup_versions SET deleted = TRUE, auth_data = '{}', key_count = 0"
            " WHERE user_id = $1 AND version = $2", user_id, version)

    async def delete_all(self, conn: Conn, user_id: str) -> None:
        """Every version of the user deleted, with its keys (account deactivation)."""
        await conn.execute("DELETE FROM room_key_backup_sessions WHERE user_id = $1", user_id)
        await conn.execute(
            "UPDATE room_key_backup_versions SET deleted = TRUE, auth_data = '{}', key_count = 0"
            " WHERE user_id = $1 AND NOT deleted", user_id)

    async def set_counts(self, conn: Conn, user_id: str, version: int, etag: int,
                         key_count: int) -> None:
        await conn.execute("UPDATE room_key_backup_versions SET etag = $3, key_count = $4"
                           " WHERE user_id = $1 AND version = $2",
                           user_id, version, etag, key_count)

    # -- sessions

    async def existing(self, conn: Conn, user_id: str, version: int,
                       keys: list[tuple[str, str]]) -> dict[tuple[str, str], RoomKey]:
        rows = await conn.fetch(_EXISTING, user_id, version, [k[0] for k in keys],
                                [k[1] for k in keys])
        return {(r["room_id"], r["session_id"]): room_key(r) for r in rows}

    async def upsert(self, conn: Conn, user_id: str, version: int,
                     keys: dict[tuple[str, str], RoomKey]) -> None:
        items = list(keys.items())
        await conn.execute(
            _UPSERT, user_id, version, [k[0] for k, _ in items], [k[1] for k, _ in items],
            [v.first_message_index for _, v in items], [v.forwarded_count for _, v in items],
            [v.is_verified for _, v in items], [v.session_data for _, v in items])

    async def sessions(self, conn: Conn, user_id: str, version: int, room_id: str | None,
                       session_id: str | None) -> list[asyncpg.Record]:
        query = (f"SELECT {_SESSION_COLUMNS} FROM room_key_backup_sessions"
                 " WHERE user_id = $1 AND version = $2")
        args: list[object] = [user_id, version]
        if room_id is not None:
            query += " AND room_id = $3"
            args.append(room_id)
            if session_id is not None:
                query += " AND session_id = $4"
                args.append(session_id)
        return list(await conn.fetch(query, *args))

    async def delete_sessions(self, conn: Conn, user_id: str, version: int,
                              room_id: str | None, session_id: str | None) -> int:
        """Delete the version's sessions (of one room, or one session); returns how many."""
        query = "DELETE FROM room_key_backup_sessions WHERE user_id = $1 AND version = $2"
        args: list[object] = [user_id, version]
        if room_id is not None:
            query += " AND room_id = $3"
            args.append(room_id)
            if session_id is not None:
                query += " AND session_id = $4"
                args.append(session_id)
        status = await conn.execute(query, *args)
        return int(status.split()[-1])
