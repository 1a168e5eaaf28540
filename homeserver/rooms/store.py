"""SQL for rooms, current state, membership history, aliases, the directory and txn ids."""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Conn


class RoomStore:
    async def insert_room(
        self, conn: Conn, room_id: str, version: str, creator: str, is_public: bool, ts: int
    ) -> None:
        await conn.execute(
            "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts)"
            " VALUES ($1,$2,$3,$4,$5)", room_id, version, creator, is_public, ts,
        )

    async def get_room(self, conn: Conn, room_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT room_id, room_version, creator, is_public FROM rooms WHERE room_id = $1",
            room_id,
        )

    async def set_public(self, conn: Conn, room_id: str, is_public: bool) -> None:
        await conn.execute("UPDATE rooms SET is_public = $2 WHERE room_id = $1", room_id, is_public)

    async def public_room_ids(self, conn: Conn) -> list[str]:
        rows = await conn.fetch("SELECT room_id FROM rooms WHERE is_public ORDER BY created_ts")
        return [r["room_id"] for r in rows]

    async def upsert_current_state(
        self, conn: Conn, room_id: str, type: str, state_key: str, event_id: str,
        membership: str | None,
    ) -> None:
        await conn.execute(
            "INSERT INTO current_state (room_id, type, state_key, event_id, membership)"
            " VALUES ($1,$2,$3,$4,$5) ON CONFLICT (room_id, type, state_key)"
            " DO UPDATE SET event_id = EXCLUDED.event_id, membership = EXCLUDED.membership",
            room_id, type, state_key, event_id, membership,
        )

    async def current_state_ids(self, conn: Conn, room_id: str) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT type, state_key, event_id FROM current_state WHERE room_id = $1", room_id
        ))

    async def insert_membership(
        self, conn: Conn, event_id: str, room_id: str, user_id: str, sender: str,
        membership: str, stream_ordering: int,
    ) -> None:
        await conn.execute(
            "INSERT INTO room_memberships (event_id, room_id, user_id, sender, membership,"
            " stream_ordering) VALUES ($1,$2,$3,$4,$5,$6)",
            event_id, room_id, user_id, sender, membership, stream_ordering,
        )
        await conn.execute(
            "DELETE FROM forgotten_rooms WHERE user_id = $1 AND room_id = $2 AND $3 <> 'leave'"
            " AND $3 <> 'ban'", user_id, room_id, membership,
        )

    async def user_memberships(self, conn: Conn, user_id: str) -> list[asyncpg.Record]:
        """Current membership of the user in every room, with the membership's position."""
        return list(await conn.fetch(
            "SELECT c.room_id, c.membership, e.stream_ordering, c.event_id"
            " FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.type = 'm.room.member' AND c.state_key = $1", user_id,
        ))

    async def forget(self, conn: Conn, user_id: str, room_id: str) -> None:
        await conn.execute(
            "INSERT INTO forgotten_rooms (user_id, room_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING", user_id, room_id,
        )

    async def forgotten(self, conn: Conn, user_id: str) -> set[str]:
        rows = await conn.fetch("SELECT room_id FROM forgotten_rooms WHERE user_id = $1", user_id)
        return {r["room_id"] for r in rows}

    async def create_alias(self, conn: Conn, alias: str, room_id: str, creator: str) -> bool:
        res = await conn.execute(
            "INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1,$2,$3)"
            " ON CONFLICT DO NOTHING", alias, room_id, creator,
        )
        return bool(res.endswith(" 1"))

    async def get_alias(self, conn: Conn, alias: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT room_id, creator FROM room_aliases WHERE alias = $1", alias
        )

    async def delete_alias(self, conn: Conn, alias: str) -> None:
        await conn.execute("DELETE FROM room_aliases WHERE alias = $1", alias)

    async def aliases_for_room(self, conn: Conn, room_id: str) -> list[str]:
        rows = await conn.fetch(
            "SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias", room_id
        )
        return [r["alias"] for r in rows]

    async def get_txn(self, conn: Conn, user_id: str, device_id: str, txn_id: str) -> str | None:
        v = await conn.fetchval(
            "SELECT event_id FROM event_txn_ids WHERE user_id = $1 AND device_id = $2"
            " AND txn_id = $3", user_id, device_id, txn_id,
        )
        return str(v) if v is not None else None

    async def insert_txn(
        self, conn: Conn, user_id: str, device_id: str, txn_id: str, event_id: str, ts: int
    ) -> None:
        await conn.execute(
            "INSERT INTO event_txn_ids (user_id, device_id, txn_id, event_id, created_ts)"
            " VALUES ($1,$2,$3,$4,$5)", user_id, device_id, txn_id, event_id, ts,
        )

    async def txns_for_events(self, conn: Conn, event_ids: list[str]) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT event_id, user_id, device_id, txn_id FROM event_txn_ids"
            " WHERE event_id = ANY($1::text[])", event_ids,
        ))

    async def membership_changes_since(
        self, conn: Conn, user_id: str, since: int, upto: int
    ) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT room_id, membership, stream_ordering, event_id FROM room_memberships"
            " WHERE user_id = $1 AND stream_ordering > $2 AND stream_ordering <= $3"
            " ORDER BY stream_ordering", user_id, since, upto,
        ))
