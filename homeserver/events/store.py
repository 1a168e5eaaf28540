"""SQL for the event DAG: events, edges, auth edges, forward extremities, state groups."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import asyncpg

from homeserver.storage.database import Conn

EVENT_COLS = (
    "stream_ordering, event_id, room_id, type, state_key, sender, depth, origin_server_ts,"
    " COALESCE(state_group, 0) AS state_group,"
    " COALESCE(state_group_before, 0) AS state_group_before, redacted_by, json,"
    " rejected, outlier, soft_failed,"
    " (SELECT room_version FROM rooms r WHERE r.room_id = events.room_id) AS room_version"
)


class EventStore:
    async def insert_event(
        self, conn: Conn, *, stream_ordering: int, event_id: str, room_id: str, type: str,
        state_key: str | None, sender: str, depth: int, origin_server_ts: int,
        state_group: int | None, state_group_before: int | None, relates_to: str | None,
        rel_type: str | None, json: str, prev_events: list[str], auth_events: list[str],
        outlier: bool = False, rejected: str | None = None, soft_failed: bool = False,
        replace: bool = False, backfilled: bool = False,
    ) -> None:
        """Insert an event with its edges; `replace` de-outliers an event stored as outlier."""
        if replace:
            await conn.execute(
                "UPDATE events SET stream_ordering = $1, state_group = $3,"
                " state_group_before = $4, outlier = $5, rejected = $6, soft_failed = $7,"
                " json = $8, backfilled = $9 WHERE event_id = $2",
                stream_ordering, event_id, state_group, state_group_before, outlier, rejected,
                soft_failed, json, backfilled)
            return
        await conn.execute(
            "INSERT INTO events (stream_ordering, event_id, room_id, type, state_key, sender,"
            " depth, origin_server_ts, state_group, state_group_before, relates_to, rel_type,"
            " json, outlier, rejected, soft_failed, backfilled)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)",
            stream_ordering, event_id, room_id, type, state_key, sender, depth,
            origin_server_ts, state_group, state_group_before, relates_to, rel_type, json,
            outlier, rejected, soft_failed, backfilled,
        )
        # Edges and auth edges in one statement each, whatever their number.
        await conn.execute(
            "WITH e AS (INSERT INTO event_edges (event_id, prev_event_id)"
            " SELECT $1, unnest($2::text[]) RETURNING 1)"
            " INSERT INTO event_auth (event_id, auth_id) SELECT $1, unnest($3::text[])",
            event_id, prev_events, auth_events,
        )

    async def next_hidden_position(self, conn: Conn) -> int:
        """A stream ordering for an event that is never served (outlier, rejected,
        soft-failed): negative, so no sync range includes it."""
        return int(await conn.fetchval("SELECT nextval('events_hidden_seq')"))

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

    async def insert_plain_events(self, conn: Conn, room_id: str,
                                  rows: list[tuple[object, ...]]) -> None:
        """Persist a group of non-state events of one room in ONE statement (group commit).

        Each row is (stream_ordering, event_id, type, sender, depth, origin_server_ts,
        state_group, relates_to, rel_type, json, prev_events, auth_events, txn or None).
        """
        ids = [r[1] for r in rows]
        prevs = {p for r in rows for p in r[10]}  # type: ignore[attr-defined]
        edges = [(r[1], p) for r in rows for p in r[10]]  # type: ignore[attr-defined]
        auths = [(r[1], a) for r in rows for a in r[11]]  # type: ignore[attr-defined]
        txns = [(r[12], r[1]) for r in rows if r[12] is not None]
        await conn.execute(
            "WITH ev AS (INSERT INTO events (stream_ordering, event_id, room_id, type, sender,"
            "  depth, origin_server_ts, state_group, state_group_before, relates_to, rel_type,"
            "  json) SELECT s, i, $1, t, se, d, ts, g, g, rt, rl, j FROM unnest($2::bigint[],"
            "  $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[],"
            "  $9::text[], $10::text[], $11::text[]) AS x(s, i, t, se, d, ts, g, rt, rl, j)),"
            " ed AS (INSERT INTO event_edges (event_id, prev_event_id)"
            "  SELECT * FROM unnest($12::text[], $13::text[])),"
            " au AS (INSERT INTO event_auth (event_id, auth_id)"
            "  SELECT * FROM unnest($14::text[], $15::text[])),"
            " fx AS (DELETE FROM forward_extremities WHERE room_id = $1"
            "  AND event_id = ANY($16::text[])),"
            " fi AS (INSERT INTO forward_extremities (room_id, event_id)"
            "  SELECT $1, unnest($17::text[])),"
            " tx AS (INSERT INTO event_txn_ids (user_id, device_id, txn_id, event_id, created_ts)"
            "  SELECT * FROM unnest($18::text[], $19::text[], $20::text[], $21::text[],"
            "  $22::bigint[]))"
            " SELECT 1",
            room_id, [r[0] for r in rows], ids, [r[2] for r in rows], [r[3] for r in rows],
            [r[4] for r in rows], [r[5] for r in rows], [r[6] for r in rows],
            [r[7] for r in rows], [r[8] for r in rows], [r[9] for r in rows],
            [e[0] for e in edges], [e[1] for e in edges], [a[0] for a in auths],
            [a[1] for a in auths], sorted(prevs), [i for i in ids if i not in prevs],
            [t[0][0] for t in txns], [t[0][1] for t in txns],  # type: ignore[index]
            [t[0][2] for t in txns], [t[1] for t in txns],  # type: ignore[index]
            [int(time.time() * 1000)] * len(txns),
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

    async def max_depth(self, conn: Conn, room_id: str) -> int:
        return int(await conn.fetchval(
            "SELECT COALESCE(MAX(depth), 0) FROM events WHERE room_id = $1", room_id))

    async def mark_redacted(self, conn: Conn, event_id: str, redacted_by: str) -> None:
        await conn.execute(
            "UPDATE events SET redacted_by = $2 WHERE event_id = $1 AND redacted_by IS NULL",
            event_id, redacted_by,
        )

    async def get_events(self, conn: Conn, event_ids: Iterable[str]) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            f"SELECT {EVENT_COLS} FROM events WHERE event_id = ANY($1::text[])", list(event_ids)
        ))

    async def events_between(self, conn: Conn, after: int, upto: int,
                             limit: int) -> list[asyncpg.Record]:
        """Served events of every room in (after, upto], in stream order (for consumers)."""
        return list(await conn.fetch(
            f"SELECT {EVENT_COLS} FROM events WHERE stream_ordering > $1"
            " AND stream_ordering <= $2 ORDER BY stream_ordering LIMIT $3", after, upto, limit))

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
        """Events strictly before (backwards) or at/after (forwards) the (depth, stream) point:
        served and backfilled ones."""
        if backwards:
            cond, order = "(depth, stream_ordering) < ($2, $3)", "DESC"
        else:
            cond, order = "(depth, stream_ordering) >= ($2, $3)", "ASC"
        return list(await conn.fetch(
            f"SELECT {EVENT_COLS} FROM events WHERE room_id = $1 AND {cond}"
            " AND (stream_ordering > 0 OR backfilled)"
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
            " AND stream_ordering <= $2 AND stream_ordering > 0"
            " ORDER BY stream_ordering DESC LIMIT 1",
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
            " AND stream_ordering > 0 ORDER BY depth, stream_ordering LIMIT 1",
            room_id, depth, stream,
        )
        if row is not None:
            return int(row["g"]), row["type"], row["state_key"]
        group = await conn.fetchval(
            "SELECT state_group FROM events WHERE room_id = $1"
            " AND (depth, stream_ordering) < ($2, $3) AND stream_ordering > 0"
            " ORDER BY depth DESC, stream_ordering DESC LIMIT 1",
            room_id, depth, stream,
        )
        return None if group is None else (int(group), None, None)

    async def state_group_at_stream(self, conn: Conn, room_id: str, stream: int) -> int | None:
        """State group after the room's last event at or below a sync stream position."""
        group = await conn.fetchval(
            "SELECT state_group FROM events WHERE room_id = $1 AND stream_ordering <= $2"
            " AND stream_ordering > 0 ORDER BY stream_ordering DESC LIMIT 1", room_id, stream)
        return None if group is None else int(group)

    async def relations(
        self, conn: Conn, room_id: str, event_id: str, rel_type: str | None,
        event_type: str | None, before: int | None, limit: int, backwards: bool,
    ) -> list[asyncpg.Record]:
        order = "DESC" if backwards else "ASC"
        cmp = "<" if backwards else ">"
        return list(await conn.fetch(
            f"SELECT {EVENT_COLS} FROM events WHERE relates_to = $1 AND room_id = $2"
            " AND stream_ordering > 0"
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

