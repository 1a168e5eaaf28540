"""SQL for device lists across servers: the cache of remote users' devices and keys
(migration 0024), and the reads of our own device list stream that the EDUs we send and
/user/devices need."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from homeserver.storage.database import Conn


def _json(v: Any) -> str | None:
    return None if v is None else orjson.dumps(v).decode()


class RemoteDeviceStore:
    # ------------------------------------------------------------------ the remote cache

    async def list_of(self, conn: Conn, user_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT stream_id, stale FROM remote_device_lists WHERE user_id = $1", user_id)

    async def fresh(self, conn: Conn, user_ids: list[str]) -> list[asyncpg.Record]:
        """The cached lists, not stale, of these users (master and self-signing keys)."""
        return list(await conn.fetch(
            "SELECT user_id, master_key::text AS master_key,"
            " self_signing_key::text AS self_signing_key FROM remote_device_lists"
            " WHERE user_id = ANY($1::text[]) AND NOT stale", user_ids))

    async def devices_of(self, conn: Conn, user_ids: list[str]) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT user_id, device_id, display_name, keys::text AS keys FROM remote_devices"
            " WHERE user_id = ANY($1::text[]) AND keys IS NOT NULL", user_ids))

    async def replace(self, conn: Conn, user_id: str, stream_id: int, master: Any,
                      self_signing: Any, devices: list[tuple[str, str | None, Any]],
                      now: int) -> None:
        """A resync: the user's whole list, fresh."""
        await conn.execute(
            "INSERT INTO remote_device_lists (user_id, stream_id, stale, master_key,"
            " self_signing_key, updated_ts) VALUES ($1, $2, FALSE, $3::jsonb, $4::jsonb, $5)"
            " ON CONFLICT (user_id) DO UPDATE SET stream_id = EXCLUDED.stream_id,"
            " stale = FALSE, master_key = EXCLUDED.master_key,"
            " self_signing_key = EXCLUDED.self_signing_key, updated_ts = EXCLUDED.updated_ts",
            user_id, stream_id, _json(master), _json(self_signing), now)
        await conn.execute("DELETE FROM remote_devices WHERE user_id = $1", user_id)
        await conn.executemany(
            "INSERT INTO remote_devices (user_id, device_id, display_name, keys)"
            " VALUES ($1, $2, $3, $4::jsonb)",
            [(user_id, d, name, _json(keys)) for d, name, keys in devices])

    async def update_device(self, conn: Conn, user_id: str, stream_id: int, device_id: str,
                            display_name: str | None, keys: Any, deleted: bool,
                            now: int) -> None:
        """One m.device_list_update applied to a cached list."""
        if deleted:
            await conn.execute(
                "DELETE FROM remote_devices WHERE user_id = $1 AND device_id = $2",
                user_id, device_id)
        else:
            await conn.execute(
                "INSERT INTO remote_devices (user_id, device_id, display_name, keys)"
                " VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (user_id, device_id) DO UPDATE"
                " SET display_name = EXCLUDED.display_name,"
                " keys = COALESCE(EXCLUDED.keys, remote_devices.keys)",
                user_id, device_id, display_name, _json(keys))
        await conn.execute(
            "UPDATE remote_device_lists SET stream_id = GREATEST(stream_id, $2),"
            " updated_ts = $3 WHERE user_id = $1", user_id, stream_id, now)

    async def set_cross_signing(self, conn: Conn, user_id: str, master: Any,
                                self_signing: Any, now: int) -> None:
        await conn.execute(
            "UPDATE remote_device_lists SET master_key = COALESCE($2::jsonb, master_key),"
            " self_signing_key = COALESCE($3::jsonb, self_signing_key), updated_ts = $4"
            " WHERE user_id = $1", user_id, _json(master), _json(self_signing), now)

    async def mark_stale(self, conn: Conn, user_id: str, now: int) -> None:
        await conn.execute(
            "INSERT INTO remote_device_lists (user_id, stale, updated_ts) VALUES ($1, TRUE, $2)"
            " ON CONFLICT (user_id) DO UPDATE SET stale = TRUE, updated_ts = $2",
            user_id, now)

    async def stale_users(self, conn: Conn, limit: int) -> list[str]:
        return [r["user_id"] for r in await conn.fetch(
            "SELECT user_id FROM remote_device_lists WHERE stale ORDER BY updated_ts LIMIT $1",
            limit)]

    # ------------------------------------------------------------------ our own stream

    async def last_change(self, conn: Conn, user_id: str,
                          before: int | None) -> tuple[int, int] | None:
        """(position, devices in it) of the user's latest device change for everyone
        (not cross-signing, not one user's own) below `before` (None: any)."""
        row = await conn.fetchrow(
            "SELECT stream_id, count(*) AS n FROM device_list_changes"
            " WHERE user_id = $1 AND device_id <> '' AND only_for IS NULL"
            " AND ($2::bigint IS NULL OR stream_id < $2) GROUP BY stream_id"
            " ORDER BY stream_id DESC LIMIT 1", user_id, before)
        return None if row is None else (int(row["stream_id"]), int(row["n"]))

    async def device_names(self, conn: Conn, user_id: str) -> dict[str, str | None]:
        """Every device of a local user, with its display name."""
        return {r["device_id"]: r["display_name"] for r in await conn.fetch(
            "SELECT device_id, display_name FROM devices WHERE user_id = $1", user_id)}
