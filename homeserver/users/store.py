"""SQL for users, devices, access tokens, profiles, account data, filters, registration tokens."""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Conn


class UserStore:
    async def insert_user(self, conn: Conn, user_id: str, localpart: str,
                          password_hash: str | None, is_admin: bool, ts: int,
                          is_guest: bool = False) -> bool:
        res = await conn.execute(
            "INSERT INTO users (user_id, localpart, password_hash, is_admin, created_ts,"
            " is_guest) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING",
            user_id, localpart, password_hash, is_admin, ts, is_guest,
        )
        if not res.endswith(" 1"):
            return False
        await conn.execute("INSERT INTO profiles (user_id, displayname) VALUES ($1, $2)",
                           user_id, localpart)
        return True

    async def get_user(self, conn: Conn, user_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT user_id, password_hash, is_admin, is_guest, deactivated, locked FROM users"
            " WHERE user_id = $1", user_id,
        )

    async def next_guest_number(self, conn: Conn) -> int:
        return int(await conn.fetchval("SELECT nextval('guest_localpart_seq')"))

    async def upgrade_guest(self, conn: Conn, user_id: str, password_hash: str | None) -> bool:
        """A guest becomes a full account (same user id); False if it is not a live guest."""
        res = await conn.execute(
            "UPDATE users SET is_guest = FALSE, password_hash = $2"
            " WHERE user_id = $1 AND is_guest AND NOT deactivated", user_id, password_hash)
        return bool(res.endswith(" 1"))

    async def guests_among(self, conn: Conn, user_ids: list[str]) -> list[str]:
        rows = await conn.fetch(
            "SELECT user_id FROM users WHERE is_guest AND user_id = ANY($1::text[])", user_ids)
        return [r["user_id"] for r in rows]

    async def user_exists(self, conn: Conn, localpart: str) -> bool:
        return bool(await conn.fetchval("SELECT 1 FROM users WHERE localpart = $1", localpart))

    async def set_password(self, conn: Conn, user_id: str, password_hash: str | None) -> None:
        await conn.execute("UPDATE users SET password_hash = $2 WHERE user_id = $1",
                           user_id, password_hash)

    async def deactivate(self, conn: Conn, user_id: str) -> None:
        await conn.execute(
            "UPDATE users SET deactivated = TRUE, password_hash = NULL WHERE user_id = $1", user_id
        )
        await conn.execute("UPDATE profiles SET displayname = NULL, avatar_url = NULL,"
                           " fields = '{}'::jsonb WHERE user_id = $1", user_id)
        await conn.execute("DELETE FROM devices WHERE user_id = $1", user_id)

    async def set_admin(self, conn: Conn, user_id: str, is_admin: bool) -> None:
        await conn.execute("UPDATE users SET is_admin = $2 WHERE user_id = $1", user_id, is_admin)

    # ---------------------------------------------------------------- devices and tokens

    async def upsert_device(self, conn: Conn, user_id: str, device_id: str,
                            display_name: str | None, ts: int, ip: str | None) -> bool:
        """Create or touch a device; True if it is new."""
        return bool(await conn.fetchval(
            "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts,"
            " last_seen_ip) VALUES ($1,$2,$3,$4,$4,$5) ON CONFLICT (user_id, device_id) DO UPDATE"
            " SET display_name = COALESCE(EXCLUDED.display_name, devices.display_name),"
            " last_seen_ts = EXCLUDED.last_seen_ts, last_seen_ip = EXCLUDED.last_seen_ip"
            " RETURNING (xmax = 0)",
            user_id, device_id, display_name, ts, ip,
        ))

    async def insert_token(self, conn: Conn, token_hash: bytes, user_id: str, device_id: str,
                           ts: int, valid_until_ms: int | None = None,
                           refresh_hash: bytes | None = None) -> int:
        return int(await conn.fetchval(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts,"
            " valid_until_ms, refresh_token_hash) VALUES ($1,$2,$3,$4,$5,$6) RETURNING id",
            token_hash, user_id, device_id, ts, valid_until_ms, refresh_hash,
        ))

    async def token_owner(self, conn: Conn, token_hash: bytes) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT t.id, t.user_id, t.device_id, t.valid_until_ms, u.is_admin, u.is_guest,"
            " u.deactivated, u.locked, u.suspended, u.shadow_banned"
            " FROM access_tokens t JOIN users u ON u.user_id = t.user_id"
            " WHERE t.token_hash = $1", token_hash,
        )

    async def refresh_owner(self, conn: Conn, refresh_hash: bytes) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT id, user_id, device_id FROM access_tokens WHERE refresh_token_hash = $1",
            refresh_hash,
        )

    async def delete_token(self, conn: Conn, token_id: int) -> None:
        await conn.execute("DELETE FROM access_tokens WHERE id = $1", token_id)

    async def token_hashes_of_device(self, conn: Conn, user_id: str,
                                     device_ids: list[str] | None) -> list[bytes]:
        rows = await conn.fetch(
            "SELECT token_hash FROM access_tokens WHERE user_id = $1"
            " AND ($2::text[] IS NULL OR device_id = ANY($2::text[]))", user_id, device_ids,
        )
        return [bytes(r["token_hash"]) for r in rows]

    async def delete_devices(self, conn: Conn, user_id: str, device_ids: list[str] | None,
                             except_token: int | None = None) -> list[str]:
        """Delete devices (their tokens and keys go with them by cascade); returns the ids of
        those that existed."""
        if device_ids is None:
            rows = await conn.fetch("DELETE FROM devices WHERE user_id = $1 RETURNING device_id",
                                    user_id)
        else:
            rows = await conn.fetch(
                "DELETE FROM devices WHERE user_id = $1 AND device_id = ANY($2::text[])"
                " RETURNING device_id", user_id, device_ids,
            )
        return [r["device_id"] for r in rows]

    async def delete_tokens_except(self, conn: Conn, user_id: str, keep_token_id: int) -> None:
        await conn.execute("DELETE FROM access_tokens WHERE user_id = $1 AND id <> $2",
                           user_id, keep_token_id)

    async def devices(self, conn: Conn, user_id: str) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices d"
            " WHERE user_id = $1 AND NOT EXISTS (SELECT 1 FROM dehydrated_devices h"
            " WHERE h.user_id = d.user_id AND h.device_id = d.device_id)"
            " ORDER BY device_id", user_id,
        ))

    async def device(self, conn: Conn, user_id: str, device_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
            " WHERE user_id = $1 AND device_id = $2", user_id, device_id,
        )

    async def update_last_seen(self, conn: Conn, user_ids: list[str], device_ids: list[str],
                               ts: list[int], ips: list[str | None]) -> None:
        """One batched UPDATE of devices' last seen time and IP (a deleted device matches no
        row, so it is not re-created; an older value never overwrites a newer one)."""
        await conn.execute(
            "UPDATE devices d SET last_seen_ts = v.ts,"
            " last_seen_ip = COALESCE(v.ip, d.last_seen_ip)"
            " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS v(u, dev, ts, ip)"
            " WHERE d.user_id = v.u AND d.device_id = v.dev"
            " AND (d.last_seen_ts IS NULL OR d.last_seen_ts <= v.ts)",
            user_ids, device_ids, ts, ips,
        )

    async def rename_device(self, conn: Conn, user_id: str, device_id: str, name: str) -> bool:
        res = await conn.execute(
            "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
            user_id, device_id, name,
        )
        return bool(res.endswith(" 1"))

    # ---------------------------------------------------------------- profiles

    async def profile(self, conn: Conn, user_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT displayname, avatar_url FROM profiles WHERE user_id = $1", user_id
        )

    async def set_profile_field(self, conn: Conn, user_id: str, field: str,
                                value: str | None) -> None:
        column = {"displayname": "displayname", "avatar_url": "avatar_url"}[field]
        await conn.execute(f"UPDATE profiles SET {column} = $2 WHERE user_id = $1",
                           user_id, value)

    # ---------------------------------------------------------------- account data, filters

    async def put_account_data(self, conn: Conn, user_id: str, room_id: str, type: str,
                               content: str, stream_id: int) -> None:
        await conn.execute(
            "INSERT INTO account_data (user_id, room_id, type, content, stream_id)"
            " VALUES ($1,$2,$3,$4,$5) ON CONFLICT (user_id, room_id, type)"
            " DO UPDATE SET content = EXCLUDED.content, stream_id = EXCLUDED.stream_id",
            user_id, room_id, type, content, stream_id,
        )

    async def get_account_data(self, conn: Conn, user_id: str, room_id: str,
                               type: str) -> str | None:
        v = await conn.fetchval(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
            user_id, room_id, type,
        )
        return str(v) if v is not None else None

    async def account_data_since(self, conn: Conn, user_id: str,
                                 since: int) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT room_id, type, content, stream_id FROM account_data WHERE user_id = $1"
            " AND stream_id > $2 ORDER BY stream_id", user_id, since,
        ))

    async def account_data_writers(self, conn: Conn, type: str, after: int,
                                   upto: int) -> list[str]:
        """Users whose global account data of `type` was written in (after, upto]."""
        rows = await conn.fetch(
            "SELECT DISTINCT user_id FROM account_data WHERE room_id = '' AND type = $1"
            " AND stream_id > $2 AND stream_id <= $3", type, after, upto)
        return [r["user_id"] for r in rows]

    async def insert_filter(self, conn: Conn, user_id: str, filter_json: str) -> int | None:
        """The user's next filter id, or None when a concurrent upload took that id first."""
        got = await conn.fetchval(
            "INSERT INTO filters (user_id, filter_id, filter_json) VALUES ($1,"
            " (SELECT COALESCE(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = $1), $2)"
            " ON CONFLICT DO NOTHING RETURNING filter_id", user_id, filter_json,
        )
        return None if got is None else int(got)

    async def get_filter(self, conn: Conn, user_id: str, filter_id: int) -> str | None:
        v = await conn.fetchval(
            "SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2",
            user_id, filter_id,
        )
        return str(v) if v is not None else None

    # ---------------------------------------------------------------- registration tokens

    async def use_registration_token(self, conn: Conn, token: str, now: int) -> bool:
        res = await conn.execute(
            "UPDATE registration_tokens SET completed = completed + 1 WHERE token = $1"
            " AND (uses_allowed IS NULL OR completed < uses_allowed)"
            " AND (expiry_time IS NULL OR expiry_time > $2)", token, now,
        )
        return bool(res.endswith(" 1"))

    async def registration_token_valid(self, conn: Conn, token: str, now: int) -> bool:
        return bool(await conn.fetchval(
            "SELECT 1 FROM registration_tokens WHERE token = $1"
            " AND (uses_allowed IS NULL OR completed < uses_allowed)"
            " AND (expiry_time IS NULL OR expiry_time > $2)", token, now,
        ))

    async def add_registration_token(self, conn: Conn, token: str, uses_allowed: int | None,
                                     expiry_time: int | None) -> None:
        await conn.execute(
            "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES ($1,$2,$3)"
            " ON CONFLICT (token) DO NOTHING", token, uses_allowed, expiry_time,
        )
