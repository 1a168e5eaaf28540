"""SQL for federation: remote server keys, the outbound queues and destinations' retry state,
and inbound transactions already answered."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from homeserver.storage.database import Conn


class FederationStore:
    # ------------------------------------------------------------------ server keys

    async def save_keys(self, conn: Conn, server_name: str,
                        rows: list[tuple[str, str, int, int | None]], key_json: Any,
                        now: int) -> None:
        """(key_id, verify_key, valid_until_ts, expired_ts) rows from one signed response."""
        await conn.executemany(
            "INSERT INTO server_keys (server_name, key_id, verify_key, valid_until_ts,"
            " expired_ts, fetched_ts, key_json) VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb)"
            " ON CONFLICT (server_name, key_id) DO UPDATE SET"
            " verify_key = EXCLUDED.verify_key, valid_until_ts = EXCLUDED.valid_until_ts,"
            " expired_ts = EXCLUDED.expired_ts, fetched_ts = EXCLUDED.fetched_ts,"
            " key_json = EXCLUDED.key_json"
            " WHERE server_keys.valid_until_ts <= EXCLUDED.valid_until_ts",
            [(server_name, kid, vk, until, expired, now, orjson.dumps(key_json).decode())
             for kid, vk, until, expired in rows])

    async def keys_of(self, conn: Conn, server_name: str) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT key_id, verify_key, valid_until_ts, expired_ts, key_json::text AS key_json"
            " FROM server_keys WHERE server_name = $1", server_name))

    # ------------------------------------------------------------------ outbound queues

    async def enqueue(self, conn: Conn, rows: list[tuple[str, int, str, str]]) -> None:
        """(destination, stream_ordering, room_id, event_id) rows; replays are no-ops."""
        await conn.executemany(
            "INSERT INTO federation_outbox (destination, stream_ordering, room_id, event_id)"
            " VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING", rows)

    async def pending_destinations(self, conn: Conn) -> list[str]:
        return [r["destination"] for r in await conn.fetch(
            "SELECT DISTINCT destination FROM federation_outbox UNION"
            " SELECT DISTINCT destination FROM federation_edu_outbox")]

    # ------------------------------------------------------------------ durable EDUs

    async def enqueue_edus(self, conn: Conn, rows: list[tuple[str, str, Any]]) -> None:
        """(destination, edu_type, content) rows, in the caller's transaction."""
        await conn.executemany(
            "INSERT INTO federation_edu_outbox (destination, edu_type, content)"
            " VALUES ($1, $2, $3::jsonb)",
            [(d, t, orjson.dumps(c).decode()) for d, t, c in rows])

    async def edu_outbox(self, conn: Conn, destination: str, limit: int) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT id, edu_type, content::text AS content FROM federation_edu_outbox"
            " WHERE destination = $1 ORDER BY id LIMIT $2", destination, limit))

    async def edus_sent(self, conn: Conn, destination: str, ids: list[int]) -> None:
        """Exactly the rows sent: ids come from a sequence and may commit out of order, so a
        row below the highest one sent may have committed since it was read."""
        await conn.execute(
            "DELETE FROM federation_edu_outbox WHERE destination = $1 AND id = ANY($2::bigint[])",
            destination, ids)

    async def trim_edu_outbox(self, conn: Conn, destination: str) -> None:
        """Catch-up after a long absence: of each user's device list updates keep only the
        newest (the destination sees the gap in prev_id and fetches the whole list)."""
        await conn.execute(
            "DELETE FROM federation_edu_outbox o WHERE o.destination = $1"
            " AND o.edu_type = 'm.device_list_update' AND EXISTS ("
            "  SELECT 1 FROM federation_edu_outbox n WHERE n.destination = $1"
            "  AND n.edu_type = 'm.device_list_update' AND n.id > o.id"
            "  AND n.content->>'user_id' = o.content->>'user_id')", destination)

    async def prune_inbound_to_device(self, conn: Conn, before_ts: int) -> None:
        await conn.execute("DELETE FROM federation_inbound_to_device WHERE received_ts < $1",
                           before_ts)

    async def first_to_device(self, conn: Conn, origin: str, message_id: str,
                              now: int) -> bool:
        """Record an inbound to-device message id; False if it was delivered before."""
        return await conn.fetchval(
            "INSERT INTO federation_inbound_to_device (origin, message_id, received_ts)"
            " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING TRUE",
            origin, message_id, now) is not None

    async def outbox(self, conn: Conn, destination: str, limit: int) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT stream_ordering, room_id, event_id FROM federation_outbox"
            " WHERE destination = $1 ORDER BY stream_ordering LIMIT $2", destination, limit))

    async def outbox_count(self, conn: Conn, destination: str) -> int:
        return int(await conn.fetchval(
            "SELECT count(*) FROM federation_outbox WHERE destination = $1", destination))

    async def trim_outbox(self, conn: Conn, destination: str, keep_per_room: int) -> None:
        """Catch-up after a long absence: keep only each room's latest events (the remote
        fetches the rest through get_missing_events)."""
        await conn.execute(
            "DELETE FROM federation_outbox o USING ("
            "  SELECT stream_ordering, row_number() OVER (PARTITION BY room_id"
            "    ORDER BY stream_ordering DESC) AS n FROM federation_outbox"
            "  WHERE destination = $1) r"
            " WHERE o.destination = $1 AND o.stream_ordering = r.stream_ordering AND r.n > $2",
            destination, keep_per_room)

    async def sent(self, conn: Conn, destination: str, upto: int) -> None:
        await conn.execute(
            "DELETE FROM federation_outbox WHERE destination = $1 AND stream_ordering <= $2",
            destination, upto)

    async def destination(self, conn: Conn, destination: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT failures, retry_at_ts, last_txn_id FROM federation_destinations"
            " WHERE destination = $1", destination)

    async def set_destination(self, conn: Conn, destination: str, failures: int,
                              retry_at_ts: int, last_txn_id: int) -> None:
        await conn.execute(
            "INSERT INTO federation_destinations (destination, failures, retry_at_ts,"
            " last_txn_id) VALUES ($1,$2,$3,$4) ON CONFLICT (destination) DO UPDATE SET"
            " failures = EXCLUDED.failures, retry_at_ts = EXCLUDED.retry_at_ts,"
            " last_txn_id = GREATEST(federation_destinations.last_txn_id,"
            " EXCLUDED.last_txn_id)", destination, failures, retry_at_ts, last_txn_id)

    # ------------------------------------------------------------------ inbound transactions

    async def inbound_txn(self, conn: Conn, origin: str, txn_id: str) -> Any:
        raw = await conn.fetchval(
            "SELECT response::text FROM federation_inbound_txns WHERE origin = $1"
            " AND txn_id = $2", origin, txn_id)
        return None if raw is None else orjson.loads(raw)

    async def save_inbound_txn(self, conn: Conn, origin: str, txn_id: str, response: Any,
                               now: int) -> None:
        await conn.execute(
            "INSERT INTO federation_inbound_txns (origin, txn_id, response, received_ts)"
            " VALUES ($1,$2,$3::jsonb,$4) ON CONFLICT DO NOTHING", origin, txn_id,
            orjson.dumps(response).decode(), now)

    # ------------------------------------------------------------------ backfill

    async def backward_extremities(self, conn: Conn, room_id: str, below_depth: int,
                                   limit: int) -> list[str]:
        """Prev events of the room's events (served or backfilled, below `below_depth`) that
        this server does not have in the DAG (unknown, or only known as outliers): where
        its history stops. Deepest first."""
        rows = await conn.fetch(
            "SELECT ed.prev_event_id, max(e.depth) AS d FROM events e"
            " JOIN event_edges ed ON ed.event_id = e.event_id"
            " WHERE e.room_id = $1 AND e.depth <= $2 AND (e.stream_ordering > 0 OR e.backfilled)"
            " AND NOT EXISTS (SELECT 1 FROM events p WHERE p.event_id = ed.prev_event_id"
            "                 AND NOT p.outlier)"
            " GROUP BY ed.prev_event_id ORDER BY d DESC LIMIT $3",
            room_id, below_depth, limit)
        return [str(r["prev_event_id"]) for r in rows]
