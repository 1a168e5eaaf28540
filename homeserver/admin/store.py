"""SQL for the operators' tools (homeserver/admin/): user listing and account states, rate-limit
overrides, blocked rooms, room listing and statistics, reports, admin jobs, server notice rooms,
registration tokens, and the room and history purges."""

from __future__ import annotations

from typing import Any

import asyncpg

from homeserver.storage.database import Conn

# order_by values of GET /_synapse/admin/v2/users -> SQL (never user input in the query).
USER_ORDER = {
    "name": "u.user_id", "is_guest": "u.is_guest", "admin": "u.is_admin",
    "user_type": "u.user_id", "deactivated": "u.deactivated", "shadow_banned": "u.shadow_banned",
    "displayname": "p.displayname", "avatar_url": "p.avatar_url",
    "creation_ts": "u.created_ts", "last_seen_ts": "last_seen_ts", "locked": "u.locked",
    "suspended": "u.suspended",
}

_USER_COLUMNS = (
    "u.user_id, u.is_guest, u.is_admin, u.deactivated, u.erased, u.shadow_banned, u.locked,"
    " u.suspended, u.created_ts, p.displayname, p.avatar_url,"
    " (SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id) AS last_seen_ts"
)

_USER_FILTER = (
    " FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id"
    " WHERE ($1::text IS NULL OR strpos(lower(u.user_id), lower($1)) > 0)"
    " AND ($2::text IS NULL OR strpos(lower(u.localpart), lower($2)) > 0"
    "      OR strpos(lower(COALESCE(p.displayname, '')), lower($2)) > 0)"
    " AND ($3 OR NOT u.is_guest) AND ($4 OR NOT u.deactivated)"
    " AND ($5::boolean IS NULL OR u.is_admin = $5) AND ($6 OR NOT u.locked)"
)

# order_by values of GET /_synapse/admin/v1/users/{userId}/media -> SQL.
USER_MEDIA_ORDER = {
    "media_id": "media_id", "upload_name": "upload_name", "created_ts": "created_ts",
    "last_access_ts": "last_access_ts", "media_length": "size", "media_type": "content_type",
    "quarantined_by": "quarantined_by", "safe_from_quarantine": "safe_from_quarantine",
}

_MEDIA_COLUMNS = ("media_id, created_ts, last_access_ts, size, content_type, upload_name,"
                  " quarantined_by, safe_from_quarantine")

# order_by values of GET /_synapse/admin/v1/statistics/users/media -> SQL.
USAGE_ORDER = {"user_id": "m.user_id", "displayname": "p.displayname",
               "media_length": "media_length", "media_count": "media_count"}

# order_by values of GET /_synapse/admin/v1/rooms -> SQL.
ROOM_ORDER = {
    "name": "name", "canonical_alias": "canonical_alias", "joined_members": "joined_members",
    "joined_local_members": "joined_local_members", "version": "r.room_version",
    "creator": "r.creator", "encryption": "encryption", "federatable": "federatable",
    "public": "r.is_public", "join_rules": "join_rules", "guest_access": "guest_access",
    "history_visibility": "history_visibility", "state_events": "state_events",
    "room_type": "room_type", "alphabetical": "name", "size": "joined_members",
}


def _state_field(etype: str, path: str) -> str:
    return (f"(SELECT e.json::jsonb #>> '{{content,{path}}}' FROM current_state cs"
            f" JOIN events e ON e.event_id = cs.event_id WHERE cs.room_id = r.room_id"
            f" AND cs.type = '{etype}' AND cs.state_key = '')")


_ROOM_COLUMNS = (
    "r.room_id, r.room_version, r.creator, r.is_public, "
    + _state_field("m.room.name", "name") + " AS name, "
    + _state_field("m.room.canonical_alias", "alias") + " AS canonical_alias, "
    + _state_field("m.room.topic", "topic") + " AS topic, "
    + _state_field("m.room.avatar", "url") + " AS avatar, "
    + _state_field("m.room.encryption", "algorithm") + " AS encryption, "
    + _state_field("m.room.join_rules", "join_rule") + " AS join_rules, "
    + _state_field("m.room.guest_access", "guest_access") + " AS guest_access, "
    + _state_field("m.room.history_visibility", "history_visibility")
    + " AS history_visibility, "
    + _state_field("m.room.create", "type") + " AS room_type, "
    + "COALESCE(" + _state_field("m.room.create", "m.federate") + ", 'true') AS federatable, "
    "(SELECT count(*) FROM current_state cs WHERE cs.room_id = r.room_id) AS state_events, "
    "(SELECT count(*) FROM current_state cs WHERE cs.room_id = r.room_id"
    " AND cs.type = 'm.room.member' AND cs.membership = 'join') AS joined_members, "
    "(SELECT count(*) FROM current_state cs WHERE cs.room_id = r.room_id"
    " AND cs.type = 'm.room.member' AND cs.membership = 'join'"
    " AND cs.state_key LIKE $1) AS joined_local_members"
)

# Tables that hold a room's rows, in an order the foreign keys allow (children first).
_ROOM_TABLES = (
    "receipts", "push_notifications", "push_read", "room_aliases", "forgotten_rooms",
    "federation_outbox", "current_state", "forward_extremities", "room_memberships",
)


class AdminStore:
    # ---------------------------------------------------------------- users

    async def list_users(self, conn: Conn, user_id: str | None, name: str | None,
                         guests: bool, deactivated: bool, locked: bool, admins: bool | None,
                         order_by: str, backwards: bool, limit: int,
                         offset: int) -> tuple[list[asyncpg.Record], int]:
        direction = "DESC" if backwards else "ASC"
        order = USER_ORDER[order_by]
        args = (user_id, name, guests, deactivated, admins, locked)
        rows = await conn.fetch(
            f"SELECT {_USER_COLUMNS}{_USER_FILTER} ORDER BY {order} {direction} NULLS LAST,"
            f" u.user_id {direction} LIMIT $7 OFFSET $8", *args, limit, offset)
        total = await conn.fetchval(f"SELECT count(*){_USER_FILTER}", *args)
        return list(rows), int(total)

    async def user(self, conn: Conn, user_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users u LEFT JOIN profiles p"
            " ON p.user_id = u.user_id WHERE u.user_id = $1", user_id)

    async def set_flag(self, conn: Conn, user_id: str, flag: str, value: bool) -> bool:
        column = {"locked": "locked", "suspended": "suspended", "shadow_banned": "shadow_banned",
                  "erased": "erased", "deactivated": "deactivated"}[flag]
        res = await conn.execute(f"UPDATE users SET {column} = $2 WHERE user_id = $1",
                                 user_id, value)
        return bool(res.endswith(" 1"))

    async def erased_users(self, conn: Conn) -> list[str]:
        rows = await conn.fetch("SELECT user_id FROM users WHERE erased")
        return [r["user_id"] for r in rows]

    async def count_users(self, conn: Conn) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM users"))

    # ---------------------------------------------------------------- rate limit overrides

    async def ratelimit_override(self, conn: Conn, user_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT messages_per_second, burst_count FROM ratelimit_overrides"
            " WHERE user_id = $1", user_id)

    async def all_ratelimit_overrides(self, conn: Conn) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT user_id, messages_per_second, burst_count FROM ratelimit_overrides"))

    async def set_ratelimit_override(self, conn: Conn, user_id: str, per_second: float,
                                     burst: int) -> None:
        await conn.execute(
            "INSERT INTO ratelimit_overrides (user_id, messages_per_second, burst_count)"
            " VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE SET"
            " messages_per_second = EXCLUDED.messages_per_second,"
            " burst_count = EXCLUDED.burst_count", user_id, per_second, burst)

    async def delete_ratelimit_override(self, conn: Conn, user_id: str) -> None:
        await conn.execute("DELETE FROM ratelimit_overrides WHERE user_id = $1", user_id)

    # ---------------------------------------------------------------- blocked rooms

    async def blocked(self, conn: Conn, room_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow("SELECT user_id FROM blocked_rooms WHERE room_id = $1",
                                   room_id)

    async def block(self, conn: Conn, room_id: str, user_id: str, ts: int) -> None:
        await conn.execute(
            "INSERT INTO blocked_rooms (room_id, user_id, blocked_ts) VALUES ($1, $2, $3)"
            " ON CONFLICT (room_id) DO NOTHING", room_id, user_id, ts)

    async def unblock(self, conn: Conn, room_id: str) -> None:
        await conn.execute("DELETE FROM blocked_rooms WHERE room_id = $1", room_id)

    # ---------------------------------------------------------------- rooms

    async def list_rooms(self, conn: Conn, local_pattern: str, search: str | None,
                         order_by: str, backwards: bool, limit: int,
                         offset: int) -> tuple[list[asyncpg.Record], int]:
        direction = "DESC" if backwards else "ASC"
        where = ("WHERE $2::text IS NULL OR strpos(lower(COALESCE(name, '')), lower($2)) > 0"
                 " OR strpos(lower(COALESCE(canonical_alias, '')), lower($2)) > 0"
                 " OR strpos(lower(room_id), lower($2)) > 0")
        inner = f"SELECT {_ROOM_COLUMNS} FROM rooms r"
        rows = await conn.fetch(
            f"SELECT * FROM ({inner}) r {where} ORDER BY {ROOM_ORDER[order_by]} {direction}"
            f" NULLS LAST, room_id {direction} LIMIT $3 OFFSET $4",
            local_pattern, search, limit, offset)
        total = await conn.fetchval(f"SELECT count(*) FROM ({inner}) r {where}",
                                    local_pattern, search)
        return list(rows), int(total)

    async def room(self, conn: Conn, local_pattern: str, room_id: str) -> asyncpg.Record | None:
        """The room with, beyond the list's columns, the local members' devices and whether
        every local user with a membership has forgotten it."""
        local_members = ("SELECT cs.state_key FROM current_state cs WHERE cs.room_id = r.room_id"
                         " AND cs.type = 'm.room.member' AND cs.state_key LIKE $1")
        return await conn.fetchrow(
            f"SELECT {_ROOM_COLUMNS},"
            " (SELECT count(*) FROM devices d WHERE d.user_id IN"
            f"  ({local_members} AND cs.membership = 'join')) AS joined_local_devices,"
            " (EXISTS (SELECT 1 FROM forgotten_rooms f WHERE f.room_id = r.room_id)"
            f"  AND NOT EXISTS ({local_members} AND NOT EXISTS (SELECT 1 FROM forgotten_rooms f"
            "   WHERE f.room_id = r.room_id AND f.user_id = cs.state_key))) AS forgotten"
            " FROM rooms r WHERE r.room_id = $2", local_pattern, room_id)

    async def room_members(self, conn: Conn, room_id: str) -> list[str]:
        rows = await conn.fetch(
            "SELECT state_key FROM current_state WHERE room_id = $1 AND type = 'm.room.member'"
            " AND membership = 'join' ORDER BY state_key", room_id)
        return [r["state_key"] for r in rows]

    async def room_sizes(self, conn: Conn) -> list[asyncpg.Record]:
        """Each room's stored bytes (events' JSON and their state rows), largest first."""
        return list(await conn.fetch(
            "SELECT room_id, sum(octet_length(json))::bigint AS estimated_size FROM events"
            " GROUP BY room_id ORDER BY estimated_size DESC, room_id"))

    async def unpublish(self, conn: Conn, room_id: str) -> None:
        await conn.execute("UPDATE rooms SET is_public = FALSE WHERE room_id = $1", room_id)

    async def delete_alias(self, conn: Conn, alias: str) -> None:
        await conn.execute("DELETE FROM room_aliases WHERE alias = $1", alias)

    async def room_event_ids(self, conn: Conn, room_id: str) -> list[str]:
        rows = await conn.fetch("SELECT event_id FROM events WHERE room_id = $1", room_id)
        return [r["event_id"] for r in rows]

    async def purge_room(self, conn: Conn, room_id: str) -> None:
        """Delete every row of the room (its events, state, memberships, receipts, push rows,
        aliases); the caller holds the room's lock and drops the room from the caches."""
        ids = "SELECT event_id FROM events WHERE room_id = $1"
        for table in ("event_edges", "event_auth", "event_txn_ids"):
            await conn.execute(f"DELETE FROM {table} WHERE event_id IN ({ids})", room_id)
        for table in _ROOM_TABLES:
            await conn.execute(f"DELETE FROM {table} WHERE room_id = $1", room_id)
        await conn.execute("DELETE FROM events WHERE room_id = $1", room_id)
        await conn.execute(
            "DELETE FROM state_group_entries WHERE state_group IN"
            " (SELECT id FROM state_groups WHERE room_id = $1)", room_id)
        # Groups point at their previous group: clear the links, then delete them all.
        await conn.execute("UPDATE state_groups SET prev_group = NULL WHERE room_id = $1",
                           room_id)
        await conn.execute("DELETE FROM state_groups WHERE room_id = $1", room_id)
        await conn.execute("DELETE FROM rooms WHERE room_id = $1", room_id)

    async def purge_history(self, conn: Conn, room_id: str, before_depth: int,
                            before_stream: int, local_suffix: str | None) -> list[str]:
        """Delete the room's non-state events older than (depth, stream ordering), keeping the
        room's forward extremities and, when `local_suffix` is given, events whose sender
        ends with it (this server's users). State events stay: the room's state at every
        remaining event, and its current state, are built from them. Returns the ids."""
        rows = await conn.fetch(
            "WITH c AS (SELECT event_id FROM events e WHERE e.room_id = $1"
            "  AND e.state_key IS NULL AND e.stream_ordering > 0"
            "  AND (e.depth, e.stream_ordering) < ($2, $3)"
            "  AND ($4::text IS NULL OR right(e.sender, length($4)) <> $4)"
            "  AND NOT EXISTS (SELECT 1 FROM forward_extremities f WHERE f.room_id = $1"
            "                  AND f.event_id = e.event_id))"
            # A redaction whose target stays is kept, or the target would read unredacted.
            " DELETE FROM events e USING c WHERE e.event_id = c.event_id"
            " AND NOT EXISTS (SELECT 1 FROM events t WHERE t.room_id = $1"
            "   AND t.redacted_by = e.event_id AND t.event_id NOT IN (SELECT event_id FROM c))"
            " RETURNING e.event_id", room_id, before_depth, before_stream, local_suffix)
        gone = [r["event_id"] for r in rows]
        if gone:
            for table in ("event_txn_ids", "event_auth"):
                await conn.execute(f"DELETE FROM {table} WHERE event_id = ANY($1::text[])",
                                   gone)
            # Their notifications go too (the unread counts are the rows after the user's
            # read positions, so they follow).
            await conn.execute(
                "DELETE FROM push_notifications WHERE room_id = $1"
                " AND event_id = ANY($2::text[])", room_id, gone)
        return gone

    async def event_position(self, conn: Conn, room_id: str,
                             event_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT depth, stream_ordering FROM events WHERE room_id = $1 AND event_id = $2"
            " AND stream_ordering > 0", room_id, event_id)

    async def position_at_ts(self, conn: Conn, room_id: str, ts: int) -> asyncpg.Record | None:
        """The first event at or after `ts` (what a purge up to a time keeps)."""
        return await conn.fetchrow(
            "SELECT depth, stream_ordering FROM events WHERE room_id = $1"
            " AND origin_server_ts >= $2 AND stream_ordering > 0"
            " ORDER BY depth, stream_ordering LIMIT 1", room_id, ts)

    async def room_max_position(self, conn: Conn, room_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT depth, stream_ordering FROM events WHERE room_id = $1"
            " AND stream_ordering > 0 ORDER BY depth DESC, stream_ordering DESC LIMIT 1",
            room_id)

    # ---------------------------------------------------------------- a user's rooms and data

    async def account_data_of(self, conn: Conn, user_id: str) -> list[asyncpg.Record]:
        """Every account data item of the user, global (room_id '') and per room."""
        return list(await conn.fetch(
            "SELECT room_id, type, content FROM account_data WHERE user_id = $1"
            " ORDER BY room_id, type", user_id))

    async def memberships_of(self, conn: Conn, user_id: str) -> list[asyncpg.Record]:
        """The user's current membership in every room this server holds state of."""
        return list(await conn.fetch(
            "SELECT room_id, membership FROM current_state WHERE type = 'm.room.member'"
            " AND state_key = $1 AND membership IS NOT NULL ORDER BY room_id", user_id))

    async def invites_sent_since(self, conn: Conn, user_id: str, from_ts: int) -> int:
        return int(await conn.fetchval(
            "SELECT count(*) FROM room_memberships m JOIN events e ON e.event_id = m.event_id"
            " WHERE m.sender = $1 AND m.membership = 'invite' AND e.origin_server_ts >= $2",
            user_id, from_ts))

    async def rooms_joined_since(self, conn: Conn, user_id: str, from_ts: int) -> int:
        return int(await conn.fetchval(
            "SELECT count(DISTINCT m.room_id) FROM room_memberships m"
            " JOIN events e ON e.event_id = m.event_id"
            " WHERE m.user_id = $1 AND m.membership = 'join' AND e.origin_server_ts >= $2",
            user_id, from_ts))

    # ---------------------------------------------------------------- forward extremities

    async def forward_extremities(self, conn: Conn, room_id: str) -> list[asyncpg.Record]:
        """The room's forward extremities with their state group and place, oldest first."""
        return list(await conn.fetch(
            "SELECT f.event_id, e.state_group, e.depth, e.stream_ordering"
            " FROM forward_extremities f JOIN events e ON e.event_id = f.event_id"
            " WHERE f.room_id = $1 ORDER BY e.stream_ordering", room_id))

    async def delete_extremities_but(self, conn: Conn, room_id: str, keep: str) -> int:
        status = await conn.execute(
            "DELETE FROM forward_extremities WHERE room_id = $1 AND event_id <> $2",
            room_id, keep)
        return int(status.split()[-1])

    # ---------------------------------------------------------------- jobs

    async def insert_job(self, conn: Conn, job_id: str, instance: str, kind: str,
                         room_id: str, ts: int) -> None:
        await conn.execute(
            "INSERT INTO admin_jobs (id, instance, kind, room_id, status, created_ts)"
            " VALUES ($1, $2, $3, $4, 'scheduled', $5)", job_id, instance, kind, room_id, ts)

    async def fail_unfinished_jobs(self, conn: Conn, instance: str) -> None:
        """Jobs this process left running when it stopped: they will not finish now."""
        await conn.execute(
            "UPDATE admin_jobs SET status = 'failed', error = 'interrupted by a restart'"
            " WHERE instance = $1 AND status IN ('scheduled', 'active')", instance)

    async def update_job(self, conn: Conn, job_id: str, status: str, error: str | None = None,
                         result: str | None = None) -> None:
        await conn.execute(
            "UPDATE admin_jobs SET status = $2, error = $3, result = COALESCE($4, result)"
            " WHERE id = $1", job_id, status, error, result)

    async def job(self, conn: Conn, job_id: str, kind: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT id, room_id, status, error, result FROM admin_jobs WHERE id = $1"
            " AND kind = $2", job_id, kind)

    async def jobs_of_room(self, conn: Conn, room_id: str, kind: str) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT id, room_id, status, error, result FROM admin_jobs WHERE room_id = $1"
            " AND kind = $2 ORDER BY created_ts, id", room_id, kind))

    # ---------------------------------------------------------------- server notices

    async def notice_room(self, conn: Conn, user_id: str) -> str | None:
        v = await conn.fetchval("SELECT room_id FROM server_notice_rooms WHERE user_id = $1",
                                user_id)
        return None if v is None else str(v)

    async def set_notice_room(self, conn: Conn, user_id: str, room_id: str) -> None:
        await conn.execute(
            "INSERT INTO server_notice_rooms (user_id, room_id) VALUES ($1, $2)"
            " ON CONFLICT (user_id) DO UPDATE SET room_id = EXCLUDED.room_id", user_id, room_id)

    # ---------------------------------------------------------------- registration tokens

    async def registration_tokens(self, conn: Conn, valid: bool | None,
                                  now: int) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT token, uses_allowed, completed, expiry_time FROM registration_tokens"
            " WHERE $1::boolean IS NULL OR $1 = ((uses_allowed IS NULL OR completed <"
            " uses_allowed) AND (expiry_time IS NULL OR expiry_time > $2)) ORDER BY token",
            valid, now))

    async def registration_token(self, conn: Conn, token: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT token, uses_allowed, completed, expiry_time FROM registration_tokens"
            " WHERE token = $1", token)

    async def insert_registration_token(self, conn: Conn, token: str, uses_allowed: int | None,
                                        expiry_time: int | None) -> bool:
        res = await conn.execute(
            "INSERT INTO registration_tokens (token, uses_allowed, expiry_time)"
            " VALUES ($1, $2, $3) ON CONFLICT (token) DO NOTHING",
            token, uses_allowed, expiry_time)
        return bool(res.endswith(" 1"))

    async def update_registration_token(self, conn: Conn, token: str,
                                        changes: dict[str, Any]) -> bool:
        sets = [f"{col} = ${i}" for i, col in enumerate(changes, start=2)
                if col in ("uses_allowed", "expiry_time")]
        if not sets:
            return await self.registration_token(conn, token) is not None
        res = await conn.execute(
            f"UPDATE registration_tokens SET {', '.join(sets)} WHERE token = $1",
            token, *changes.values())
        return bool(res.endswith(" 1"))

    async def delete_registration_token(self, conn: Conn, token: str) -> bool:
        res = await conn.execute("DELETE FROM registration_tokens WHERE token = $1", token)
        return bool(res.endswith(" 1"))

    # -- media (Synapse's media admin API and users' media statistics; the tables are the
    # media repository's, migrations/0022_media.sql and 0027_admin_media.sql)
    async def user_media(self, conn: Conn, user_id: str, order: str, backwards: bool,
                         limit: int, offset: int) -> tuple[list[asyncpg.Record], int]:
        """A user's uploaded media (pending ids not included), in `order` (a key of
        USER_MEDIA_ORDER) then by media id, and how many there are."""
        column, way = USER_MEDIA_ORDER[order], "DESC" if backwards else "ASC"
        rows = await conn.fetch(
            f"SELECT {_MEDIA_COLUMNS} FROM local_media WHERE user_id = $1"
            f" AND sha256 IS NOT NULL ORDER BY {column} {way}, media_id ASC"
            " LIMIT $2 OFFSET $3", user_id, limit, offset)
        total = await conn.fetchval(
            "SELECT count(*) FROM local_media WHERE user_id = $1 AND sha256 IS NOT NULL",
            user_id)
        return list(rows), int(total)

    async def local_media_info(self, conn: Conn, media_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            f"SELECT {_MEDIA_COLUMNS}, user_id, sha256, authenticated FROM local_media"
            " WHERE media_id = $1", media_id)

    async def remote_media_info(self, conn: Conn, origin: str, media_id: str
                                ) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT origin, media_id, content_type, upload_name, size, sha256, cached_ts,"
            " last_access_ts, authenticated, quarantined_by FROM remote_media"
            " WHERE origin = $1 AND media_id = $2", origin, media_id)

    async def delete_local_media(self, conn: Conn, media_ids: list[str]
                                 ) -> list[asyncpg.Record]:
        """Delete local media rows; (media_id, sha256) of those that were there."""
        return list(await conn.fetch(
            "DELETE FROM local_media WHERE media_id = ANY($1::text[])"
            " RETURNING media_id, sha256", media_ids))

    async def old_local_media(self, conn: Conn, prefix: str, before_ts: int, size_gt: int,
                              keep_profiles: bool) -> list[str]:
        """Local media last downloaded (or, never downloaded, created) before `before_ts`,
        larger than `size_gt` bytes, neither quarantined nor protected; with
        `keep_profiles`, not a user's avatar (profile or room member event) nor a room's
        avatar. `prefix` is `mxc://<server>/`."""
        rows = await conn.fetch(
            "WITH kept AS ("
            "  SELECT avatar_url AS url FROM profiles WHERE $4 AND avatar_url IS NOT NULL"
            "  UNION SELECT e.json::jsonb -> 'content' ->> 'url' FROM current_state cs"
            "    JOIN events e ON e.event_id = cs.event_id"
            "    WHERE $4 AND cs.type = 'm.room.avatar'"
            "  UNION SELECT e.json::jsonb -> 'content' ->> 'avatar_url' FROM current_state cs"
            "    JOIN events e ON e.event_id = cs.event_id"
            "    WHERE $4 AND cs.type = 'm.room.member')"
            " SELECT media_id FROM local_media m WHERE sha256 IS NOT NULL"
            " AND (last_access_ts < $2 OR (last_access_ts IS NULL AND created_ts < $2))"
            " AND size > $3 AND NOT quarantined AND NOT safe_from_quarantine"
            " AND NOT EXISTS (SELECT 1 FROM kept WHERE kept.url = $1 || m.media_id)"
            " ORDER BY created_ts, media_id", prefix, before_ts, size_gt, keep_profiles)
        return [r["media_id"] for r in rows]

    async def quarantine_local(self, conn: Conn, media_ids: list[str], by: str | None) -> int:
        """(Un)quarantine local media and every local or cached item with the same content,
        as Synapse does; protected media is never quarantined. How many items changed."""
        hashes = await conn.fetch(
            "SELECT DISTINCT sha256 FROM local_media WHERE media_id = ANY($1::text[])"
            " AND sha256 IS NOT NULL AND ($2::text IS NULL OR NOT safe_from_quarantine)",
            media_ids, by)
        return await self._quarantine(conn, media_ids, [], [r["sha256"] for r in hashes], by)

    async def quarantine_remote(self, conn: Conn, items: list[tuple[str, str]],
                                by: str | None) -> int:
        origins, ids = [o for o, _ in items], [m for _, m in items]
        hashes = await conn.fetch(
            "SELECT DISTINCT r.sha256 FROM remote_media r JOIN unnest($1::text[], $2::text[])"
            " AS x (origin, media_id) ON r.origin = x.origin AND r.media_id = x.media_id",
            origins, ids)
        return await self._quarantine(conn, [], items, [r["sha256"] for r in hashes], by)

    async def _quarantine(self, conn: Conn, local_ids: list[str],
                          remote: list[tuple[str, str]], hashes: list[str],
                          by: str | None) -> int:
        flag = by is not None
        # local: the named ids (a pending one has no content yet) and their content's copies
        local = await conn.fetch(
            "UPDATE local_media SET quarantined = $3, quarantined_by = $4"
            " WHERE (media_id = ANY($1::text[]) OR sha256 = ANY($2::text[]))"
            " AND (quarantined <> $3 OR quarantined_by IS DISTINCT FROM $4)"
            " AND NOT ($3 AND safe_from_quarantine) RETURNING media_id",
            local_ids, hashes, flag, by)
        rem = await conn.fetch(
            "UPDATE remote_media r SET quarantined = $4, quarantined_by = $5"
            " WHERE (r.sha256 = ANY($3::text[]) OR (r.origin, r.media_id) IN"
            "   (SELECT * FROM unnest($1::text[], $2::text[])))"
            " AND (r.quarantined <> $4 OR r.quarantined_by IS DISTINCT FROM $5)"
            " RETURNING r.media_id",
            [o for o, _ in remote], [m for _, m in remote], hashes, flag, by)
        return len(local) + len(rem)

    async def user_media_ids(self, conn: Conn, user_id: str) -> list[str]:
        rows = await conn.fetch("SELECT media_id FROM local_media WHERE user_id = $1", user_id)
        return [r["media_id"] for r in rows]

    async def set_media_protected(self, conn: Conn, media_id: str, safe: bool) -> bool:
        status = await conn.execute(
            "UPDATE local_media SET safe_from_quarantine = $2 WHERE media_id = $1",
            media_id, safe)
        return bool(status == "UPDATE 1")

    async def room_event_json_with_mxc(self, conn: Conn, room_id: str) -> list[str]:
        """The JSON of the room's unredacted events (not outliers) that mention an mxc URI,
        newest first."""
        rows = await conn.fetch(
            "SELECT json FROM events WHERE room_id = $1 AND redacted_by IS NULL"
            " AND NOT outlier AND strpos(json, 'mxc://') > 0 ORDER BY stream_ordering DESC",
            room_id)
        return [r["json"] for r in rows]

    async def remote_unused_since(self, conn: Conn, before_ts: int) -> list[asyncpg.Record]:
        """Delete cached remote media last used before `before_ts` (quarantined items are
        kept, so a later fetch does not bring them back unquarantined); their hashes."""
        return list(await conn.fetch(
            "DELETE FROM remote_media WHERE last_access_ts < $1 AND NOT quarantined"
            " RETURNING sha256", before_ts))

    async def users_media_usage(self, conn: Conn, order: str, backwards: bool, limit: int,
                                offset: int, from_ts: int | None, until_ts: int | None,
                                search: str | None) -> tuple[list[asyncpg.Record], int]:
        column, way = USAGE_ORDER[order], "DESC" if backwards else "ASC"
        base = (
            " FROM local_media m LEFT JOIN profiles p ON p.user_id = m.user_id"
            " WHERE m.sha256 IS NOT NULL"
            " AND ($1::bigint IS NULL OR m.created_ts >= $1)"
            " AND ($2::bigint IS NULL OR m.created_ts <= $2)"
            " AND ($3::text IS NULL"
            "   OR strpos(split_part(substr(m.user_id, 2), ':', 1), $3) > 0"
            "   OR strpos(COALESCE(p.displayname, ''), $3) > 0)"
            " GROUP BY m.user_id, p.displayname")
        rows = await conn.fetch(
            "SELECT m.user_id, p.displayname, count(*) AS media_count,"
            f" COALESCE(sum(m.size), 0)::bigint AS media_length {base}"
            f" ORDER BY {column} {way}, m.user_id {way} LIMIT $4 OFFSET $5",
            from_ts, until_ts, search, limit, offset)
        total = await conn.fetchval(f"SELECT count(*) FROM (SELECT 1 {base}) AS u",
                                    from_ts, until_ts, search)
        return list(rows), int(total)
