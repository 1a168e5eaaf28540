"""SQL for user-interactive auth sessions (table uia_sessions, migrations 0009 and 0031)."""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Conn


class UIASessionStore:
    async def insert(self, conn: Conn, session_id: str, operation: str, user_id: str | None,
                     completed: list[str], now_ms: int, params: str | None = None) -> None:
        await conn.execute(
            "INSERT INTO uia_sessions (session_id, operation, user_id, completed, created_ts,"
            " params) VALUES ($1, $2, $3, $4, $5, $6)",
            session_id, operation, user_id, completed, now_ms, params,
        )

    async def get(self, conn: Conn, session_id: str,
                  created_after_ms: int) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT session_id, operation, user_id, completed, params, result, finished"
            " FROM uia_sessions"
            " WHERE session_id = $1 AND created_ts > $2", session_id, created_after_ms,
        )

    async def add_completed(self, conn: Conn, session_id: str, stage: str,
                            created_after_ms: int) -> list[str] | None:
        """Add `stage` to the session's completed stages in one statement (so two processes
        completing different stages at once both count); None if the session is gone."""
        value = await conn.fetchval(
            "UPDATE uia_sessions SET completed = CASE WHEN $2 = ANY(completed) THEN completed"
            " ELSE array_append(completed, $2) END"
            " WHERE session_id = $1 AND created_ts > $3 AND NOT finished RETURNING completed",
            session_id, stage, created_after_ms,
        )
        return list(value) if value is not None else None

    async def delete(self, conn: Conn, session_id: str) -> bool:
        status = await conn.execute("DELETE FROM uia_sessions WHERE session_id = $1", session_id)
        return bool(status == "DELETE 1")

    async def mark_finished(self, conn: Conn, session_id: str) -> bool:
        """Finish a kept session once: False if it was already finished (or is gone)."""
        status = await conn.execute(
            "UPDATE uia_sessions SET finished = true WHERE session_id = $1 AND NOT finished",
            session_id)
        return bool(status == "UPDATE 1")

    async def set_result(self, conn: Conn, session_id: str, result: str) -> None:
        await conn.execute("UPDATE uia_sessions SET result = $2 WHERE session_id = $1",
                           session_id, result)

    async def delete_created_before(self, conn: Conn, before_ms: int) -> int:
        status = await conn.execute("DELETE FROM uia_sessions WHERE created_ts <= $1", before_ms)
        return int(status.split()[-1])
