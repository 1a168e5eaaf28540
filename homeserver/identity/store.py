"""SQL for third-party identifiers, their bindings and validation sessions, login tokens and
single sign-on links (migration 0035)."""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Conn


class ThreepidStore:
    # ------------------------------------------------------------------ account 3PIDs

    async def add(self, conn: Conn, user_id: str, medium: str, address: str,
                  validated_at: int, now: int) -> str:
        """Record the 3PID for `user_id`; returns the account that holds it afterwards (another
        one if it was taken already, which the caller reports)."""
        owner = await conn.fetchval(
            "INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (medium, address) DO UPDATE"
            " SET validated_at = EXCLUDED.validated_at"
            " WHERE user_threepids.user_id = EXCLUDED.user_id RETURNING user_id",
            user_id, medium, address, validated_at, now)
        if owner is None:  # the conflict was another user's row
            owner = await self.owner(conn, medium, address)
        return str(owner)

    async def owner(self, conn: Conn, medium: str, address: str) -> str | None:
        value = await conn.fetchval(
            "SELECT user_id FROM user_threepids WHERE medium = $1 AND address = $2",
            medium, address)
        return str(value) if value is not None else None

    async def of_user(self, conn: Conn, user_id: str) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT medium, address, validated_at, added_at FROM user_threepids"
            " WHERE user_id = $1 ORDER BY added_at, medium, address", user_id))

    async def remove(self, conn: Conn, user_id: str, medium: str, address: str) -> bool:
        status = await conn.execute(
            "DELETE FROM user_threepids WHERE user_id = $1 AND medium = $2 AND address = $3",
            user_id, medium, address)
        return bool(status == "DELETE 1")

    async def remove_all(self, conn: Conn, user_id: str) -> None:
        await conn.execute("DELETE FROM user_threepids WHERE user_id = $1", user_id)

    # ------------------------------------------------------------------ bindings

    async def add_binding(self, conn: Conn, user_id: str, medium: str, address: str,
                          id_server: str) -> None:
        await conn.execute(
            "INSERT INTO threepid_bindings (user_id, medium, address, id_server)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            user_id, medium, address, id_server)

    async def binding_servers(self, conn: Conn, user_id: str, medium: str,
                              address: str) -> list[str]:
        return [r["id_server"] for r in await conn.fetch(
            "SELECT id_server FROM threepid_bindings"
            " WHERE user_id = $1 AND medium = $2 AND address = $3 ORDER BY id_server",
            user_id, medium, address)]

    async def bindings(self, conn: Conn, user_id: str) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT medium, address, id_server FROM threepid_bindings WHERE user_id = $1"
            " ORDER BY medium, address, id_server", user_id))

    async def remove_binding(self, conn: Conn, user_id: str, medium: str, address: str,
                             id_server: str) -> None:
        await conn.execute(
            "DELETE FROM threepid_bindings WHERE user_id = $1 AND medium = $2"
            " AND address = $3 AND id_server = $4", user_id, medium, address, id_server)

    # ------------------------------------------------------------------ validation sessions

    async def session_for(self, conn: Conn, client_secret: str, medium: str,
                          address: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT * FROM threepid_validation_sessions"
            " WHERE client_secret = $1 AND medium = $2 AND address = $3",
            client_secret, medium, address)

    async def upsert_session(self, conn: Conn, session_id: str, medium: str, address: str,
                             client_secret: str, token: str, send_attempt: int,
                             next_link: str | None, now: int) -> asyncpg.Record:
        """A new session, or a new token and send_attempt for the existing one (a resend)."""
        row = await conn.fetchrow(
            "INSERT INTO threepid_validation_sessions (session_id, medium, address,"
            " client_secret, token, send_attempt, next_link, created_ts)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (client_secret, medium, address) DO UPDATE"
            " SET token = EXCLUDED.token, send_attempt = EXCLUDED.send_attempt,"
            " next_link = EXCLUDED.next_link"
            " WHERE threepid_validation_sessions.send_attempt < EXCLUDED.send_attempt"
            " RETURNING *",
            session_id, medium, address, client_secret, token, send_attempt, next_link, now)
        if row is None:  # a concurrent request with the same send_attempt won
            row = await self.session_for(conn, client_secret, medium, address)
        assert row is not None
        return row

    async def session(self, conn: Conn, session_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT * FROM threepid_validation_sessions WHERE session_id = $1", session_id)

    async def mark_validated(self, conn: Conn, session_id: str, now: int) -> None:
        await conn.execute(
            "UPDATE threepid_validation_sessions SET validated_at = COALESCE(validated_at, $2)"
            " WHERE session_id = $1", session_id, now)

    async def delete_sessions_before(self, conn: Conn, before_ms: int) -> None:
        await conn.execute("DELETE FROM threepid_validation_sessions WHERE created_ts < $1",
                           before_ms)

    # ------------------------------------------------------------------ single sign-on

    async def add_login_token(self, conn: Conn, token: str, user_id: str,
                              expires_ts: int) -> None:
        await conn.execute(
            "INSERT INTO login_tokens (token, user_id, expires_ts) VALUES ($1, $2, $3)",
            token, user_id, expires_ts)

    async def take_login_token(self, conn: Conn, token: str, now: int) -> str | None:
        """The token's user, deleting it (single use); None if unknown or expired."""
        await conn.execute("DELETE FROM login_tokens WHERE expires_ts <= $1", now)
        value = await conn.fetchval(
            "DELETE FROM login_tokens WHERE token = $1 AND expires_ts > $2 RETURNING user_id",
            token, now)
        return str(value) if value is not None else None

    async def external_user(self, conn: Conn, provider: str, external_id: str) -> str | None:
        value = await conn.fetchval(
            "SELECT user_id FROM user_external_ids WHERE auth_provider = $1"
            " AND external_id = $2", provider, external_id)
        return str(value) if value is not None else None

    async def link_external(self, conn: Conn, provider: str, external_id: str,
                            user_id: str) -> None:
        await conn.execute(
            "INSERT INTO user_external_ids (auth_provider, external_id, user_id)"
            " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", provider, external_id, user_id)

    async def externals_of(self, conn: Conn, user_id: str) -> list[asyncpg.Record]:
        return list(await conn.fetch(
            "SELECT auth_provider, external_id FROM user_external_ids WHERE user_id = $1"
            " ORDER BY auth_provider, external_id", user_id))

    # ------------------------------------------------------------------ admin replacement

    async def replace_threepids(self, conn: Conn, user_id: str,
                                threepids: list[tuple[str, str]], now: int) -> list[str]:
        """The account's 3PIDs become exactly `threepids` (kept ones keep their times; new
        ones count as validated now, as an admin vouches for them). Returns the addresses
        that belong to another account (none added then: the caller rolls back)."""
        media, addresses = [m for m, _ in threepids], [a for _, a in threepids]
        await conn.execute(
            "DELETE FROM user_threepids WHERE user_id = $1 AND (medium, address) NOT IN"
            " (SELECT * FROM unnest($2::text[], $3::text[]))", user_id, media, addresses)
        await conn.executemany(
            "INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)"
            " VALUES ($1, $2, $3, $4, $4) ON CONFLICT (medium, address) DO NOTHING",
            [(user_id, m, a, now) for m, a in threepids])
        return [r["address"] for r in await conn.fetch(
            "SELECT address FROM user_threepids WHERE user_id <> $1 AND (medium, address) IN"
            " (SELECT * FROM unnest($2::text[], $3::text[]))", user_id, media, addresses)]

    async def replace_externals(self, conn: Conn, user_id: str,
                                externals: list[tuple[str, str]]) -> list[str]:
        """The account's single sign-on links become exactly `externals`. Returns the
        external ids linked to another account (the caller rolls back)."""
        providers, ids = [p for p, _ in externals], [e for _, e in externals]
        await conn.execute(
            "DELETE FROM user_external_ids WHERE user_id = $1 AND (auth_provider, external_id)"
            " NOT IN (SELECT * FROM unnest($2::text[], $3::text[]))", user_id, providers, ids)
        await conn.executemany(
            "INSERT INTO user_external_ids (auth_provider, external_id, user_id)"
            " VALUES ($1, $2, $3) ON CONFLICT (auth_provider, external_id) DO NOTHING",
            [(p, e, user_id) for p, e in externals])
        return [r["external_id"] for r in await conn.fetch(
            "SELECT external_id FROM user_external_ids WHERE user_id <> $1 AND"
            " (auth_provider, external_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))",
            user_id, providers, ids)]
