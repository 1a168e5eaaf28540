"""SQL for the push_rule_changes table (one JSON object of push-rule changes per user)."""

from __future__ import annotations

from homeserver.storage.database import Conn


class PushRuleStore:
    async def get_changes(self, conn: Conn, user_id: str) -> str | None:
        raw = await conn.fetchval(
            "SELECT changes FROM push_rule_changes WHERE user_id = $1", user_id)
        return str(raw) if raw is not None else None

    async def put_changes(self, conn: Conn, user_id: str, changes: str) -> None:
        await conn.execute(
            "INSERT INTO push_rule_changes (user_id, changes) VALUES ($1, $2)"
            " ON CONFLICT (user_id) DO UPDATE SET changes = EXCLUDED.changes",
            user_id, changes,
        )

    async def get_many(self, conn: Conn, user_ids: list[str]) -> dict[str, str]:
        rows = await conn.fetch(
            "SELECT user_id, changes FROM push_rule_changes WHERE user_id = ANY($1::text[])",
            user_ids)
        return {r["user_id"]: str(r["changes"]) for r in rows}
