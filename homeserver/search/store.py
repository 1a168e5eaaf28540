"""SQL for server-side search: the full-text match over the expression index of
migrations/0028_search.sql (the same expression, or PostgreSQL would not use the index)."""

from __future__ import annotations

import asyncpg

from homeserver.events.store import EVENT_COLS
from homeserver.storage.database import Conn

VECTOR = ("to_tsvector('english'::regconfig,"
          " COALESCE(parley_search_text(type, json), ''))")
SEARCH_TYPES = ["m.room.message", "m.room.name", "m.room.topic"]


class SearchStore:
    async def search(self, conn: Conn, term: str, room_ids: list[str], types: list[str],
                     senders: list[str] | None, not_senders: list[str] | None,
                     by_rank: bool, offset: int, before_stream: int | None,
                     limit: int) -> list[asyncpg.Record]:
        """Matching served events (not redacted) with their rank, best or newest first.
        Recent order pages by `before_stream` (keyset), rank order by `offset`."""
        order = "rank DESC, stream_ordering DESC" if by_rank else "stream_ordering DESC"
        return list(await conn.fetch(
            f"SELECT {EVENT_COLS}, ts_rank_cd({VECTOR}, q) AS rank"
            " FROM events, websearch_to_tsquery('english'::regconfig, $1) AS q"
            f" WHERE type = ANY($3::text[]) AND type IN ('m.room.message', 'm.room.name',"
            f" 'm.room.topic') AND {VECTOR} @@ q"
            " AND room_id = ANY($2::text[]) AND stream_ordering > 0 AND NOT outlier"
            " AND rejected IS NULL AND NOT soft_failed AND redacted_by IS NULL"
            " AND ($4::text[] IS NULL OR sender = ANY($4::text[]))"
            " AND ($5::text[] IS NULL OR NOT (sender = ANY($5::text[])))"
            " AND ($6::bigint IS NULL OR stream_ordering < $6)"
            f" ORDER BY {order} LIMIT $7 OFFSET $8",
            term, room_ids, types, senders, not_senders, before_stream, limit, offset))

    async def count(self, conn: Conn, term: str, room_ids: list[str], types: list[str],
                    senders: list[str] | None, not_senders: list[str] | None) -> int:
        """How many events match (before history visibility: the spec's approximate count)."""
        n = await conn.fetchval(
            "SELECT count(*) FROM events, websearch_to_tsquery('english'::regconfig, $1) AS q"
            f" WHERE type = ANY($3::text[]) AND type IN ('m.room.message', 'm.room.name',"
            f" 'm.room.topic') AND {VECTOR} @@ q"
            " AND room_id = ANY($2::text[]) AND stream_ordering > 0 AND NOT outlier"
            " AND rejected IS NULL AND NOT soft_failed AND redacted_by IS NULL"
            " AND ($4::text[] IS NULL OR sender = ANY($4::text[]))"
            " AND ($5::text[] IS NULL OR NOT (sender = ANY($5::text[])))",
            term, room_ids, types, senders, not_senders)
        return int(n or 0)

    async def lexemes(self, conn: Conn, term: str) -> list[str]:
        """The words of the query as the index has them (for highlights)."""
        rows = await conn.fetch(
            "SELECT DISTINCT token FROM ts_debug('english'::regconfig, $1)"
            " WHERE array_length(lexemes, 1) > 0", term)
        return sorted({r["token"].lower() for r in rows})
