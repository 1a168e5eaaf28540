"""SQL for federation: remote server keys, the outbound queues and destinations' retry state,
and inbound transactions already answered."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from homeserver.storage.database import Conn

# The admin API's order_by values -> SQL (never user input in the query).
DESTINATION_ORDER = {
    "destination": "destination", "retry_last_ts": "retry_last_ts",
    "retry_interval": "retry_interval", "failure_ts": "failure_ts",
    "last_successful_stream_ordering": "last_success_stream",
}
_DESTINATION_COLUMNS = (
    "SELECT * FROM (SELECT destination, retry_last_ts, failure_ts, last_success_stream,"
    " CASE WHEN retry_last_ts > 0 THEN GREATEST(retry_at_ts - retry_last_ts, 0) ELSE 0 END"
    " AS retry_interval FROM federation_destinations) d")


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

    async def destination_failed(self, conn: Conn, destination: str, failures: int,
                                 retry_at_ts: int, last_txn_id: int, now: int) -> None:
        """A transaction failed: the retry state, and since when it has been failing."""
        await conn.execute(
            "INSERT INTO federation_destinations (destination, failures, retry_at_ts,"
            " last_txn_id, failure_ts, retry_last_ts) VALUES ($1,$2,$3,$4,$5,$5)"
            " ON CONFLICT (destination) DO UPDATE SET failures = EXCLUDED.failures,"
            " retry_at_ts = EXCLUDED.retry_at_ts, retry_last_ts = EXCLUDED.retry_last_ts,"
            " failure_ts = COALESCE(federation_destinations.failure_ts, EXCLUDED.failure_ts),"
            " last_txn_id = GREATEST(federation_destinations.last_txn_id,"
            " EXCLUDED.last_txn_id)", destination, failures, retry_at_ts, last_txn_id, now)

    async def destination_ok(self, conn: Conn, destination: str, last_txn_id: int,
                             upto: int) -> None:
        """A transaction went through (carrying the events up to stream position `upto`, 0
        if none): no retry state."""
        await conn.execute(
            "INSERT INTO federation_destinations (destination, last_txn_id,"
            " last_success_stream) VALUES ($1, $2, NULLIF($3::bigint, 0))"
            " ON CONFLICT (destination) DO UPDATE SET failures = 0, retry_at_ts = 0,"
            " retry_last_ts = 0, failure_ts = NULL,"
            " last_txn_id = GREATEST(federation_destinations.last_txn_id,"
            " EXCLUDED.last_txn_id), last_success_stream = GREATEST("
            " federation_destinations.last_success_stream, EXCLUDED.last_success_stream)",
            destination, last_txn_id, upto)

    # ------------------------------------------------------------------ admin API

    async def list_destinations(self, conn: Conn, search: str | None, order_sql: str,
                                backwards: bool, limit: int, offset: int
                                ) -> tuple[list[asyncpg.Record], int]:
        """A page of known destinations; `order_sql` is one of DESTINATION_ORDER's values."""
        where, args = "", []
        if search:
            where, args = " WHERE strpos(lower(destination), lower($3)) > 0", [search]
        direction = "DESC" if backwards else "ASC"
        rows = await conn.fetch(
            _DESTINATION_COLUMNS + where + f" ORDER BY {order_sql} {direction} NULLS FIRST,"
            f" destination {direction} LIMIT $1 OFFSET $2", limit, offset, *args)
        total = await conn.fetchval(
            "SELECT count(*) FROM federation_destinations"
            + where.replace("$3", "$1"), *args)
        return list(rows), int(total)

    async def destination_info(self, conn: Conn, destination: str) -> asyncpg.Record | None:
        return await conn.fetchrow(_DESTINATION_COLUMNS + " WHERE destination = $1",
                                   destination)

    async def destination_rooms(self, conn: Conn, destination: str, backwards: bool,
                                limit: int, offset: int) -> tuple[list[asyncpg.Record], int]:
        """The rooms the destination has a joined member in, each with the stream position
        its events reached the destination up to (just before the first one still queued
        for it, else the room's latest)."""
        joined = (
            "SELECT DISTINCT room_id FROM current_state WHERE type = 'm.room.member'"
            " AND membership = 'join'"
            " AND substr(state_key, strpos(state_key, ':') + 1) = $1")
        direction = "DESC" if backwards else "ASC"
        rows = await conn.fetch(
            f"SELECT j.room_id, COALESCE((SELECT min(o.stream_ordering) - 1"
            f"   FROM federation_outbox o WHERE o.destination = $1 AND o.room_id = j.room_id),"
            f"  (SELECT max(e.stream_ordering) FROM events e WHERE e.room_id = j.room_id),"
            f"  0) AS stream_ordering"
            f" FROM ({joined}) j ORDER BY j.room_id {direction} LIMIT $2 OFFSET $3",
            destination, limit, offset)
        total = await conn.fetchval(f"SELECT count(*) FROM ({joined}) j", destination)
        return list(rows), int(total)

    async def reset_destination(self, conn: Conn, destination: str) -> None:
        await conn.execute(
            "UPDATE federation_destinations SET failures = 0, retry_at_ts = 0,"
            " retry_last_ts = 0, failure_ts = NULL WHERE destination = $1", destination)

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
