"""SQL for the event DAG: events, edges, auth edges, forward extremities, state groups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import asyncpg

from homeserver.storage.database import Conn

EVENT_COLS = (
    "stream_ordering, event_id, room_id, type, state_key, sender, depth, origin_server_ts,"
    " state_group, COALESCE(state_group_before, 0) AS state_group_before, redacted_by, json,"
    " (SELECT room_version FROM rooms r WHERE r.room_id = events.room_id) AS room_version"
)


class EventStore:
    async def insert_event(
        self, conn: Conn, *, stream_ordering: int, event_id: str, room_id: str, type: str,
        state_key: str | None, sender: str, depth: int, origin_server_ts: int,
        state_group: int, state_group_before: int | None, relates_to: str | None,
        rel_type: str | None, json: str, prev_events: list[str], auth_events: list[str],
    ) -> None:
        await conn.execute(
            "INSERT INTO events (stream_ordering, event_id, room_id, type, state_key, sender,"
            " depth, origin_server_ts, state_group, state_group_before, relates_to, rel_type,"
            " json) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
            stream_ordering, event_id, room_id, type, state_key, sender, depth,
            origin_server_ts, state_group, state_group_before, relates_to, rel_type, json,
        )
        # Edges and auth edges in one statement each, whatever their number.
        await conn.execute(
            "WITH e AS (INSERT INTO event_edges (event_id, prev_event_id)"
            " SELECT $1, unnest($2::text[]) RETURNING 1)"
            " INSERT INTO event_auth (event_id, auth_id) SELECT $1, unnest($3::text[])",
            event_id, prev_events, auth_events,
        )

    async def insert_plain_event(
        self, conn: Conn, *, stream_ordering: int, event_id: str, room_id: str, type: str,
        sender: str, depth: int, origin_server_ts: int, state_group: int,
        relates_to: str | None, rel_type: str | None, json: str, prev_events: list[str],
        auth_events: list[str], txn: tuple[str, str, str] | None, now_ms: int,
    ) -> None:
        """Persist a non-state event in ONE statement (hence one round trip, atomically): the
        event, its edges, the forward extremities and the txn id. This is the message hot path.
        """
        await conn.execute(
            "WITH ev AS (INSERT INTO events (stream_ordering, event_id, room_id, type, sender,"
            "  depth, origin_server_ts, state_group, state_group_before, relates_to, rel_type,"
            "  json) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$8,$9,$10,$11)),"
            " ed AS (INSERT INTO event_edges (event_id, prev_event_id)"
            "  SELECT $2, unnest($12::text[])),"
            " au AS (INSERT INTO event_auth (event_id, auth_id) SELECT $2, unnest($13::text[])),"
            " fx AS (DELETE FROM forward_extremities WHERE room_id = $3"
            "  AND event_id = ANY($12::text[])),"
            " fi AS (INSERT INTO forward_extremities (room_id, event_id) VALUES ($3, $2)),"
            " tx AS (INSERT INTO event_txn_ids (user_id, device_id, txn_id, event_id, created_ts)"
            "  SELECT $14::text, $15::text, $16::text, $2, $17 WHERE $16::text IS NOT NULL)"
            " SELECT 1",
            stream_ordering, event_id, room_id, type, sender, depth, origin_server_ts,
            state_group, relates_to, rel_type, json, prev_events, auth_events,
            txn[0] if txn else None, txn[1] if txn else None, txn[2] if txn else None, now_ms,
        )

    async def set_forward_extremities(
        self, conn: Conn, room_id: str, remove: list[str], add: str
    ) -> None:
        await conn.execute(
            "WITH d AS (DELETE FROM forward_extremities WHERE room_id = $1"
            " AND event_id = ANY($2::text[]))"
            " INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $3)",
            room_id, remove, add,
        )

    async def forward_extremities(self, conn: Conn, room_id: str) -> list[str]:
        rows = await conn.fetch(
            "SELECT event_id FROM forward_extremities WHERE room_id = $1", room_id
        )
        return [r["event_id"] for r in rows]

    async def mark_redacted(self, conn: Conn, event_id: str, redacted_by: str) -> None:
        await conn.execute(
            "UPDATE events SET redacted_by = $2 WHERE event_id = $1 AND redacted_by IS NULL",
            event_id, redacted_by,
        )

    async def get_events(self, conn: Conn, event_ids: Iterable[str]) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            f"SELECT {EVENT_COLS} FROM events WHERE event_id = ANY($1::text[])", list(event_ids)
        ))

    async def max_stream_ordering(self, conn: Conn) -> int:
        return int(await conn.fetchval("SELECT COALESCE(MAX(stream_ordering), 0) FROM events"))

    async def room_events_between(
        self, conn: Conn, room_id: str, after: int, upto: int, limit: int
    ) -> list[asyncpg.Record]:
        """Newest `limit` events with after < stream_ordering <= upto, returned oldest first."""
        rows = await conn.fetch(
            f"SELECT {EVENT_COLS} FROM events WHERE room_id = $1 AND stream_ordering > $2"
            " AND stream_ordering <= $3 ORDER BY stream_ordering DESC LIMIT $4",
            room_id, after, upto, limit,
        )
        return list(reversed(rows))

    async def paginate(
        self, conn: Conn, room_id: str, depth: int, stream: int, backwards: bool, limit: int,
        types: list[str] | None = None, not_types: list[str] | None = None,
        senders: list[str] | None = None,
    ) -> list[asyncpg.Record]:
        """Events strictly before (backwards) or at/after (forwards) the (depth, stream) point."""
        if backwards:
            cond, order = "(depth, stream_ordering) < ($2, $3)", "DESC"
        else:
            cond, order = "(depth, stream_ordering) >= ($2, $3)", "ASC"
        return list(await conn.fetch(
            f"SELECT {EVENT_COLS} FROM events WHERE room_id = $1 AND {cond}"
            " AND ($5::text[] IS NULL OR type = ANY($5::text[]))"
            " AND ($6::text[] IS NULL OR NOT (type = ANY($6::text[])))"
            " AND ($7::text[] IS NULL OR sender = ANY($7::text[]))"
            f" ORDER BY depth {order}, stream_ordering {order} LIMIT $4",
            room_id, depth, stream, limit, types, not_types, senders,
        ))

    async def position_of_stream(self, conn: Conn, room_id: str, stream: int) -> tuple[int, int]:
        """The (depth, stream) pagination point just after the room's last event <= stream."""
        row = await conn.fetchrow(
            "SELECT depth, stream_ordering FROM events WHERE room_id = $1"
            " AND stream_ordering <= $2 ORDER BY stream_ordering DESC LIMIT 1",
            room_id, stream,
        )
        if row is None:
            return (0, 0)
        return (int(row["depth"]), int(row["stream_ordering"]) + 1)

    async def state_group_at_point(
        self, conn: Conn, room_id: str, depth: int, stream: int,
    ) -> tuple[int, str | None, str | None] | None:
        """State at a (depth, stream) pagination point, i.e. before the first event at or after
        it: (state group, that event's type, its state_key); with no event there, the state
        after the last event before it (type and state_key None). None if the room is empty.
        Group 0 is the empty state (before the create event)."""
        row = await conn.fetchrow(
            "SELECT COALESCE(state_group_before, 0) AS g, type, state_key FROM events"
            " WHERE room_id = $1 AND (depth, stream_ordering) >= ($2, $3)"
            " ORDER BY depth, stream_ordering LIMIT 1",
            room_id, depth, stream,
        )
        if row is not None:
            return int(row["g"]), row["type"], row["state_key"]
        group = await conn.fetchval(
            "SELECT state_group FROM events WHERE room_id = $1"
            " AND (depth, stream_ordering) < ($2, $3)"
            " ORDER BY depth DESC, stream_ordering DESC LIMIT 1",
            room_id, depth, stream,
        )
        return None if group is None else (int(group), None, None)

    async def state_group_at_stream(self, conn: Conn, room_id: str, stream: int) -> int | None:
        """State group after the room's last event at or below a sync stream position."""
        group = await conn.fetchval(
            "SELECT state_group FROM events WHERE room_id = $1 AND stream_ordering <= $2"
            " ORDER BY stream_ordering DESC LIMIT 1", room_id, stream)
        return None if group is None else int(group)

    async def relations(
        self, conn: Conn, room_id: str, event_id: str, rel_type: str | None,
        event_type: str | None, before: int | None, limit: int, backwards: bool,
    ) -> list[asyncpg.Record]:
        order = "DESC" if backwards else "ASC"
        cmp = "<" if backwards else ">"
        return list(await conn.fetch(
            f"SELECT {EVENT_COLS} FROM events WHERE relates_to = $1 AND room_id = $2"
            " AND ($3::text IS NULL OR rel_type = $3) AND ($4::text IS NULL OR type = $4)"
            f" AND ($5::bigint IS NULL OR stream_ordering {cmp} $5)"
            f" ORDER BY stream_ordering {order} LIMIT $6",
            event_id, room_id, rel_type, event_type, before, limit,
        ))

    async def room_ids_of_events(self, conn: Conn, event_ids: list[str]) -> Mapping[str, str]:
        rows = await conn.fetch(
            "SELECT event_id, room_id FROM events WHERE event_id = ANY($1::text[])", event_ids
        )
        return {r["event_id"]: r["room_id"] for r in rows}


class StateGroupStore:
    async def insert_group(
        self, conn: Conn, group_id: int, room_id: str, prev_group: int | None, chain_len: int,
        entries: Mapping[tuple[str, str], str],
    ) -> None:
        await conn.execute(
            "INSERT INTO state_groups (id, room_id, prev_group, chain_len) VALUES ($1,$2,$3,$4)",
            group_id, room_id, prev_group, chain_len,
        )
        if entries:
            await conn.execute(
                "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
                " SELECT $1, t, k, e FROM unnest($2::text[], $3::text[], $4::text[]) AS x(t,k,e)",
                group_id, [t for t, _ in entries], [k for _, k in entries], list(entries.values()),
            )

    async def load_chain(self, conn: Conn, group_id: int) -> list[asyncpg.Record]:
        """Entries of the group and its ancestors, nearest group first (by distance)."""
        return list(await conn.fetch(
            "WITH RECURSIVE chain(id, prev_group, dist) AS ("
            "  SELECT id, prev_group, 0 FROM state_groups WHERE id = $1"
            "  UNION ALL SELECT s.id, s.prev_group, c.dist + 1 FROM state_groups s"
            "  JOIN chain c ON s.id = c.prev_group)"
            " SELECT c.dist, e.type, e.state_key, e.event_id FROM chain c"
            " JOIN state_group_entries e ON e.state_group = c.id ORDER BY c.dist DESC",
            group_id,
        ))

    async def chain_len(self, conn: Conn, group_id: int) -> int:
        return int(await conn.fetchval(
            "SELECT chain_len FROM state_groups WHERE id = $1", group_id
        ))

    async def max_group(self, conn: Conn) -> int:
        return int(await conn.fetchval("SELECT COALESCE(MAX(id), 0) FROM state_groups"))
