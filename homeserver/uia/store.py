"""SQL for user-interactive auth sessions (table uia_sessions, migration 0009)."""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Conn


class UIASessionStore:
    async def insert(self, conn: Conn, session_id: str, operation: str, user_id: str | None,
                     completed: list[str], now_ms: int) -> None:
        await conn.execute(
            "INSERT INTO uia_sessions (session_id, operation, user_id, completed, created_ts)"
            " VALUES ($1, $2, $3, $4, $5)", session_id, operation, user_id, completed, now_ms,
        )

    async def get(self, conn: Conn, session_id: str,
                  created_after_ms: int) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT session_id, operation, user_id, completed FROM uia_sessions"
            " WHERE session_id = $1 AND created_ts > $2", session_id, created_after_ms,
        )

    async def add_completed(self, conn: Conn, session_id: str, stage: str,
                            created_after_ms: int) -> list[str] | None:
        """Add `stage` to the session's completed stages in one statement (so two processes
        completing different stages at once both count); None if the session is gone."""
        value = await conn.fetchval(
            "UPDATE uia_sessions SET completed = CASE WHEN $2 = ANY(completed) THEN completed"
            " ELSE array_append(completed, $2) END"
            " WHERE session_id = $1 AND created_ts > $3 RETURNING completed",
            session_id, stage, created_after_ms,
        )
        return list(value) if value is not None else None

    async def delete(self, conn: Conn, session_id: str) -> bool:
        status = await conn.execute("DELETE FROM uia_sessions WHERE session_id = $1", session_id)
        return bool(status == "DELETE 1")

    async def delete_created_before(self, conn: Conn, before_ms: int) -> int:
        status = await conn.execute("DELETE FROM uia_sessions WHERE created_ts <= $1", before_ms)
        return int(status.split()[-1])
