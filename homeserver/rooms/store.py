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

    async def ensure_room(self, conn: Conn, room_id: str, version: str, creator: str,
                          ts: int) -> None:
        """A room first known through federation (a join, an invite): not public here."""
        await conn.execute(
            "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts)"
            " VALUES ($1,$2,$3,FALSE,$4) ON CONFLICT (room_id) DO NOTHING",
            room_id, version, creator, ts)

    async def clear_current_state(self, conn: Conn, room_id: str) -> None:
        await conn.execute("DELETE FROM current_state WHERE room_id = $1", room_id)

    async def clear_extremities(self, conn: Conn, room_id: str) -> None:
        await conn.execute("DELETE FROM forward_extremities WHERE room_id = $1", room_id)

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

    async def delete_current_state(self, conn: Conn, room_id: str, type: str,
                                   state_key: str) -> None:
        await conn.execute(
            "DELETE FROM current_state WHERE room_id = $1 AND type = $2 AND state_key = $3",
            room_id, type, state_key)

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

    async def membership_changes_between(self, conn: Conn, room_ids: list[str], after: int,
                                         upto: int) -> list[asyncpg.Record]:
        """room_id, user_id, membership of the member events in these rooms in (after, upto]."""
        return list(await conn.fetch(
            "SELECT room_id, user_id, membership FROM room_memberships"
            " WHERE room_id = ANY($1::text[]) AND stream_ordering > $2 AND stream_ordering <= $3"
            " ORDER BY stream_ordering", room_ids, after, upto))

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

    async def search_user_directory(
        self, conn: Conn, user_id: str, words: list[str], term: str, limit: int
    ) -> list[asyncpg.Record]:
        """Users visible to `user_id` whose id or display name has every word as a word
        prefix, best first; at most `limit` rows.

        Visible: joined to a room `user_id` is joined to, or to a room with a public join rule
        or world-readable history, among the rooms this server is in (one all our users left
        is only a stale copy: SyTest "User in remote room doesn't appear in user directory
        after server left room"). The searcher finds themself only through such a public room
        (sharing a private room with oneself is not sharing it, as the reference server
        counts; SyTest "Users appear/disappear from directory when join_rules are changed").
        Local users are shown with their profile (deactivated ones not at all), other servers'
        users with the name and avatar of their member events, as the reference server does.
        `words` are lower-case runs of word characters (safe inside a regex); `term` is the
        whole lower-cased search term, for ranking exact matches first.
        """
        server = user_id.partition(":")[2]
        return list(await conn.fetch(
            "WITH visible AS ("
            "  SELECT room_id, bool_or(mine) AS mine, bool_or(NOT mine) AS public FROM ("
            "    SELECT room_id, TRUE AS mine FROM current_state"
            "     WHERE type = 'm.room.member' AND state_key = $1 AND membership = 'join'"
            "    UNION ALL"
            "    SELECT c.room_id, FALSE FROM current_state c"
            "      JOIN events e ON e.event_id = c.event_id"
            "     WHERE c.type = 'm.room.join_rules' AND c.state_key = ''"
            "       AND e.json::jsonb #>> '{content,join_rule}' = 'public'"
            "    UNION ALL"
            "    SELECT c.room_id, FALSE FROM current_state c"
            "      JOIN events e ON e.event_id = c.event_id"
            "     WHERE c.type = 'm.room.history_visibility' AND c.state_key = ''"
            "       AND e.json::jsonb #>> '{content,history_visibility}' = 'world_readable'"
            "  ) r WHERE EXISTS ("
            "    SELECT 1 FROM current_state l"
            "     WHERE l.room_id = r.room_id AND l.type = 'm.room.member'"
            "       AND l.membership = 'join' AND right(l.state_key, length($5) + 1) = ':' || $5)"
            "  GROUP BY room_id"
            "), candidates AS ("
            "  SELECT m.state_key AS user_id, bool_or(v.mine) AS shared,"
            "         max(e.json::jsonb #>> '{content,displayname}') AS member_name,"
            "         max(e.json::jsonb #>> '{content,avatar_url}') AS member_avatar"
            "    FROM visible v JOIN current_state m ON m.room_id = v.room_id"
            "    JOIN events e ON e.event_id = m.event_id"
            "   WHERE m.type = 'm.room.member' AND m.membership = 'join'"
            "     AND (m.state_key <> $1 OR v.public)"
            "   GROUP BY m.state_key"
            "), found AS ("
            "  SELECT c.user_id, c.shared,"
            "         CASE WHEN u.user_id IS NULL THEN c.member_name ELSE p.displayname END"
            "           AS displayname,"
            "         CASE WHEN u.user_id IS NULL THEN c.member_avatar ELSE p.avatar_url END"
            "           AS avatar_url,"
            "         ltrim(split_part(c.user_id, ':', 1), '@') AS localpart"
            "    FROM candidates c LEFT JOIN users u ON u.user_id = c.user_id"
            "    LEFT JOIN profiles p ON p.user_id = c.user_id"
            "   WHERE CASE WHEN u.user_id IS NULL"
            "              THEN right(c.user_id, length($5) + 1) <> ':' || $5"
            "              ELSE NOT u.deactivated END"
            ")"
            " SELECT f.user_id, f.displayname, f.avatar_url FROM found f"
            "  WHERE NOT EXISTS ("
            "    SELECT 1 FROM unnest($2::text[]) w"
            "     WHERE (f.user_id || ' ' || COALESCE(f.displayname, '')) !~* ('\\m' || w))"
            "  ORDER BY (lower(f.localpart) = ltrim($3, '@') OR lower(f.user_id) = $3"
            "            OR lower(f.displayname) = $3) DESC,"
            "           f.shared DESC, (f.displayname IS NOT NULL) DESC,"
            "           (f.avatar_url IS NOT NULL) DESC,"
            "           lower(COALESCE(f.displayname, f.localpart)), f.user_id"
            "  LIMIT $4", user_id, words, term, limit, server,
        ))
