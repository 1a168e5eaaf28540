"""SQL for OpenID tokens (migration 0025)."""

from __future__ import annotations

from homeserver.storage.database import Conn


class OpenIdStore:
    async def add(self, conn: Conn, token_hash: str, user_id: str, expires_ts: int) -> None:
        await conn.execute(
            "INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)",
            token_hash, user_id, expires_ts)

    async def user_of(self, conn: Conn, token_hash: str, now: int) -> str | None:
        val = await conn.fetchval(
            "SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts > $2",
            token_hash, now)
        return None if val is None else str(val)

    async def delete_expired(self, conn: Conn, now: int) -> None:
        await conn.execute("DELETE FROM openid_tokens WHERE expires_ts <= $1", now)
