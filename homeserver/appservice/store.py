"""SQL for application services: transaction ids, pending transactions, backoff, the
published room lists of their networks, and the reads behind the to-device and MSC3202 parts
of transactions (the to-device inbox, device list changes, one-time and fallback keys)."""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Conn


class AppServiceStore:
    # ------------------------------------------------------------------ transactions

    async def state(self, conn: Conn, as_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT last_txn_id, failures, retry_at_ts FROM appservice_state WHERE as_id = $1",
            as_id)

    async def take_lease(self, conn: Conn, as_id: str, holder: str, now: int,
                         ttl_ms: int) -> bool:
        """Take or renew the right to send to this AS; False while another live process
        holds it."""
        return bool(await conn.fetchval(
            "INSERT INTO appservice_state (as_id, holder, lease_expires_ts)"
            " VALUES ($1, $2, $3::bigint + $4::bigint) ON CONFLICT (as_id) DO UPDATE"
            " SET holder = EXCLUDED.holder, lease_expires_ts = EXCLUDED.lease_expires_ts"
            " WHERE appservice_state.holder = $2 OR appservice_state.lease_expires_ts < $3"
            " RETURNING TRUE", as_id, holder, now, ttl_ms))

    async def holds_lease(self, conn: Conn, as_id: str, holder: str, now: int) -> bool:
        """Whether `holder` has the lease, locking the row until the caller's transaction
        ends (so no other process takes it over while the caller writes)."""
        return bool(await conn.fetchval(
            "SELECT holder = $2 AND lease_expires_ts >= $3 FROM appservice_state"
            " WHERE as_id = $1 FOR UPDATE", as_id, holder, now))

    async def pending(self, conn: Conn, as_id: str) -> asyncpg.Record | None:
        """The oldest transaction not yet accepted."""
        return await conn.fetchrow(
            "SELECT txn_id, body FROM appservice_txns WHERE as_id = $1"
            " ORDER BY txn_id LIMIT 1", as_id)

    async def add_txn(self, conn: Conn, as_id: str, body: bytes) -> int:
        """A new transaction with the next id (in the caller's transaction)."""
        txn_id = await conn.fetchval(
            "INSERT INTO appservice_state (as_id, last_txn_id) VALUES ($1, 1)"
            " ON CONFLICT (as_id) DO UPDATE"
            " SET last_txn_id = appservice_state.last_txn_id + 1 RETURNING last_txn_id", as_id)
        await conn.execute(
            "INSERT INTO appservice_txns (as_id, txn_id, body) VALUES ($1, $2, $3)",
            as_id, txn_id, body)
        return int(txn_id)

    async def txn_done(self, conn: Conn, as_id: str, txn_id: int) -> None:
        await conn.execute("DELETE FROM appservice_txns WHERE as_id = $1 AND txn_id = $2",
                           as_id, txn_id)
        await conn.execute(
            "UPDATE appservice_state SET failures = 0, retry_at_ts = 0 WHERE as_id = $1", as_id)

    async def set_backoff(self, conn: Conn, as_id: str, failures: int, retry_at: int) -> None:
        await conn.execute(
            "INSERT INTO appservice_state (as_id, failures, retry_at_ts) VALUES ($1, $2, $3)"
            " ON CONFLICT (as_id) DO UPDATE SET failures = $2, retry_at_ts = $3",
            as_id, failures, retry_at)

    # ------------------------------------------------------------------ consumer positions

    async def position(self, conn: Conn, name: str, stream: str, start: int) -> int:
        """A consumer's saved position (`stream_consumers`), created at `start` if new."""
        await conn.execute(
            "INSERT INTO stream_consumers (name, stream, position, updated_ts)"
            " VALUES ($1, $2, $3, (extract(epoch FROM now()) * 1000)::bigint)"
            " ON CONFLICT (name) DO NOTHING", name, stream, start)
        return int(await conn.fetchval(
            "SELECT position FROM stream_consumers WHERE name = $1", name))

    async def save_position(self, conn: Conn, name: str, position: int) -> None:
        await conn.execute(
            "UPDATE stream_consumers SET position = GREATEST(position, $2),"
            " updated_ts = (extract(epoch FROM now()) * 1000)::bigint WHERE name = $1",
            name, position)

    # ------------------------------------------------------------------ to-device, keys

    async def to_device_after(self, conn: Conn, after: int, upto: int,
                              max_sends: int) -> tuple[list[asyncpg.Record], int]:
        """Inbox rows of the first `max_sends` positions in (after, upto] (whole sends, never
        half of one), oldest first, and the position they reach."""
        ids = await conn.fetch(
            "SELECT DISTINCT stream_id FROM to_device_inbox"
            " WHERE stream_id > $1 AND stream_id <= $2 ORDER BY stream_id LIMIT $3",
            after, upto, max_sends)
        end = int(ids[-1]["stream_id"]) if len(ids) == max_sends else upto
        if not ids:
            return [], end
        rows = await conn.fetch(
            "SELECT user_id, device_id, stream_id, sender, type, content FROM to_device_inbox"
            " WHERE stream_id > $1 AND stream_id <= $2 ORDER BY stream_id, user_id, device_id",
            after, end)
        return list(rows), end

    async def delete_to_device(self, conn: Conn, keys: list[tuple[str, str, int]]) -> None:
        """Remove inbox rows handed to an AS (by user, device, position)."""
        if keys:
            await conn.execute(
                "DELETE FROM to_device_inbox i USING unnest($1::text[], $2::text[],"
                " $3::bigint[]) AS k(user_id, device_id, stream_id)"
                " WHERE i.user_id = k.user_id AND i.device_id = k.device_id"
                " AND i.stream_id = k.stream_id",
                [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])

    async def device_list_changes(self, conn: Conn, after: int,
                                  upto: int) -> list[tuple[str, str | None]]:
        """Distinct (user_id, only_for) of the device list changes in (after, upto]."""
        rows = await conn.fetch(
            "SELECT DISTINCT user_id, only_for FROM device_list_changes"
            " WHERE stream_id > $1 AND stream_id <= $2", after, upto)
        return [(r["user_id"], r["only_for"]) for r in rows]

    async def one_time_key_counts(self, conn: Conn,
                                  user_ids: list[str]) -> dict[str, dict[str, dict[str, int]]]:
        """{user: {device: {algorithm: count}}} for every device of the users (an empty map
        for a device with no keys left)."""
        rows = await conn.fetch(
            "SELECT d.user_id, d.device_id, k.algorithm, count(k.key_id) AS n FROM devices d"
            " LEFT JOIN e2e_one_time_keys k USING (user_id, device_id)"
            " WHERE d.user_id = ANY($1::text[])"
            " GROUP BY d.user_id, d.device_id, k.algorithm", user_ids)
        out: dict[str, dict[str, dict[str, int]]] = {}
        for r in rows:
            by_alg = out.setdefault(r["user_id"], {}).setdefault(r["device_id"], {})
            if r["algorithm"] is not None:
                by_alg[r["algorithm"]] = int(r["n"])
        return out

    async def unused_fallback_types(self, conn: Conn,
                                    user_ids: list[str]) -> dict[str, dict[str, list[str]]]:
        """{user: {device: [algorithm of an unused fallback key]}} for every device."""
        rows = await conn.fetch(
            "SELECT d.user_id, d.device_id, f.algorithm FROM devices d"
            " LEFT JOIN e2e_fallback_keys f ON f.user_id = d.user_id"
            " AND f.device_id = d.device_id AND NOT f.used"
            " WHERE d.user_id = ANY($1::text[]) ORDER BY f.algorithm", user_ids)
        out: dict[str, dict[str, list[str]]] = {}
        for r in rows:
            algs = out.setdefault(r["user_id"], {}).setdefault(r["device_id"], [])
            if r["algorithm"] is not None:
                algs.append(r["algorithm"])
        return out

    # ------------------------------------------------------------------ room lists

    async def publish(self, conn: Conn, as_id: str, network_id: str, room_id: str) -> None:
        await conn.execute(
            "INSERT INTO appservice_room_list (as_id, network_id, room_id) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING", as_id, network_id, room_id)

    async def unpublish(self, conn: Conn, as_id: str, network_id: str, room_id: str) -> None:
        await conn.execute(
            "DELETE FROM appservice_room_list"
            " WHERE as_id = $1 AND network_id = $2 AND room_id = $3",
            as_id, network_id, room_id)

    async def listed_rooms(self, conn: Conn, as_id: str | None = None,
                           network_id: str | None = None) -> list[str]:
        """Rooms of one network's list, or (both None) of every AS list."""
        if as_id is None:
            rows = await conn.fetch("SELECT DISTINCT room_id FROM appservice_room_list")
        else:
            rows = await conn.fetch(
                "SELECT room_id FROM appservice_room_list WHERE as_id = $1 AND network_id = $2",
                as_id, network_id)
        return [r["room_id"] for r in rows]

    async def room_exists(self, conn: Conn, room_id: str) -> bool:
        return bool(await conn.fetchval("SELECT 1 FROM rooms WHERE room_id = $1", room_id))

    async def aliases_of_rooms(self, conn: Conn, room_ids: list[str]) -> dict[str, list[str]]:
        rows = await conn.fetch(
            "SELECT room_id, alias FROM room_aliases WHERE room_id = ANY($1::text[])", room_ids)
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["room_id"], []).append(r["alias"])
        return out
