"""SQL for application services: transaction ids, pending transactions, backoff and the
published room lists of their networks."""

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
