"""SQL for device keys, one-time and fallback keys, cross-signing keys, signatures and the
device list stream."""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Conn

# A re-upload of the same fallback key keeps its `used` mark; a new key starts unused.
_SET_FALLBACK = """
INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (user_id, device_id, algorithm) DO UPDATE
SET key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json,
    used = e2e_fallback_keys.used AND e2e_fallback_keys.key_id = EXCLUDED.key_id
           AND e2e_fallback_keys.key_json = EXCLUDED.key_json
"""


_QUERY_KEYS = """
SELECT 0 AS kind, k.user_id, k.device_id AS a, d.display_name AS b, k.key_json AS c,
       NULL::text AS d
FROM e2e_device_keys k JOIN devices d USING (user_id, device_id)
WHERE k.user_id = ANY($1::text[])
UNION ALL
SELECT 1, user_id, key_type, public_key, key_json, NULL FROM e2e_cross_signing_keys
WHERE user_id = ANY($1::text[])
UNION ALL
SELECT 2, target_user_id, target_key_id, signer_user_id, signer_key_id, signature
FROM e2e_signatures WHERE target_user_id = ANY($1::text[])
"""

# One autocommitted statement per claim: a one-time key per requested device where one is left
# (deleted as it is picked), else that device's fallback key (marked used).
_CLAIM_WITH_FALLBACK = """
WITH req AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS r(user_id, device_id, algorithm)
), picked AS (
    SELECT k.user_id, k.device_id, k.algorithm, k.key_id
    FROM req CROSS JOIN LATERAL (
        SELECT o.user_id, o.device_id, o.algorithm, o.key_id FROM e2e_one_time_keys o
        WHERE o.user_id = req.user_id AND o.device_id = req.device_id
          AND o.algorithm = req.algorithm
        ORDER BY o.key_id LIMIT 1 FOR UPDATE SKIP LOCKED
    ) k
), claimed AS (
    DELETE FROM e2e_one_time_keys o USING picked p
    WHERE o.user_id = p.user_id AND o.device_id = p.device_id AND o.algorithm = p.algorithm
      AND o.key_id = p.key_id
    RETURNING o.user_id, o.device_id, o.algorithm, o.key_id, o.key_json
), fallback AS (
    UPDATE e2e_fallback_keys f SET used = TRUE
    FROM req r
    WHERE f.user_id = r.user_id AND f.device_id = r.device_id AND f.algorithm = r.algorithm
      AND NOT EXISTS (SELECT 1 FROM picked p
                      WHERE p.user_id = r.user_id AND p.device_id = r.device_id)
    RETURNING f.user_id, f.device_id, f.algorithm, f.key_id, f.key_json
)
SELECT * FROM claimed UNION ALL SELECT * FROM fallback
"""


class KeyStore:
    # -- device keys
    async def device_keys(self, conn: Conn, user_id: str, device_id: str) -> str | None:
        val = await conn.fetchval(
            "SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2",
            user_id, device_id)
        return str(val) if val is not None else None

    async def device_exists(self, conn: Conn, user_id: str, device_id: str) -> bool:
        return bool(await conn.fetchval(
            "SELECT 1 FROM devices WHERE user_id = $1 AND device_id = $2 FOR SHARE",
            user_id, device_id))

    async def set_device_keys(self, conn: Conn, user_id: str, device_id: str, key_json: str,
                              ts: int) -> None:
        await conn.execute(
            "INSERT INTO e2e_device_keys (user_id, device_id, key_json, ts)"
            " VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = EXCLUDED.key_json,"
            " ts = EXCLUDED.ts", user_id, device_id, key_json, ts)

    async def query_device_keys(self, conn: Conn, user_ids: list[str]) -> list[asyncpg.Record]:
        """Devices with keys of these users: user_id, device_id, display_name, key_json."""
        return list(await conn.fetch(
            "SELECT k.user_id, k.device_id, d.display_name, k.key_json"
            " FROM e2e_device_keys k JOIN devices d USING (user_id, device_id)"
            " WHERE k.user_id = ANY($1::text[])", user_ids))

    async def query_keys(self, conn: Conn, user_ids: list[str]) -> list[asyncpg.Record]:
        """Everything /keys/query serves for these users, in one round trip; `kind` says what a
        row is: 0 a device (user_id, a=device_id, b=display name, c=key JSON), 1 a cross-signing
        key (a=key type, b=public key, c=key JSON), 2 an uploaded signature (user_id=target,
        a=target key id, b=signer, c=signer's key id, d=signature)."""
        return list(await conn.fetch(_QUERY_KEYS, user_ids))

    # -- one-time and fallback keys
    async def existing_one_time_keys(self, conn: Conn, user_id: str, device_id: str,
                                     algorithms: list[str],
                                     key_ids: list[str]) -> dict[tuple[str, str], str]:
        rows = await conn.fetch(
            "SELECT o.algorithm, o.key_id, o.key_json FROM e2e_one_time_keys o"
            " JOIN unnest($3::text[], $4::text[]) AS r(algorithm, key_id)"
            " USING (algorithm, key_id)"
            " WHERE o.user_id = $1 AND o.device_id = $2", user_id, device_id, algorithms, key_ids)
        return {(r["algorithm"], r["key_id"]): r["key_json"] for r in rows}

    async def add_one_time_keys(self, conn: Conn, user_id: str, device_id: str,
                                algorithms: list[str], key_ids: list[str], key_jsons: list[str],
                                ts: int) -> None:
        await conn.execute(
            "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json, ts)"
            " SELECT $1, $2, a, k, j, $6 FROM unnest($3::text[], $4::text[], $5::text[])"
            " AS r(a, k, j) ON CONFLICT DO NOTHING",
            user_id, device_id, algorithms, key_ids, key_jsons, ts)

    async def one_time_key_counts(self, conn: Conn, user_id: str,
                                  device_id: str) -> dict[str, int]:
        rows = await conn.fetch(
            "SELECT algorithm, count(*) AS n FROM e2e_one_time_keys"
            " WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm", user_id, device_id)
        return {r["algorithm"]: int(r["n"]) for r in rows}

    async def set_fallback_key(self, conn: Conn, user_id: str, device_id: str, algorithm: str,
                               key_id: str, key_json: str) -> None:
        await conn.execute(_SET_FALLBACK, user_id, device_id, algorithm, key_id, key_json)

    async def unused_fallback_algorithms(self, conn: Conn, user_id: str,
                                         device_id: str) -> list[str]:
        rows = await conn.fetch(
            "SELECT algorithm FROM e2e_fallback_keys"
            " WHERE user_id = $1 AND device_id = $2 AND NOT used ORDER BY algorithm",
            user_id, device_id)
        return [r["algorithm"] for r in rows]

    async def claim_keys(self, conn: Conn, user_ids: list[str], device_ids: list[str],
                         algorithms: list[str]) -> list[asyncpg.Record]:
        """A one-time key per (user, device, algorithm), else its fallback key; one
        statement, so it needs no transaction of its own."""
        return list(await conn.fetch(_CLAIM_WITH_FALLBACK, user_ids, device_ids, algorithms))

    async def cross_signing_keys(self, conn: Conn,
                                 user_ids: list[str]) -> list[asyncpg.Record]:
        """user_id, key_type, public_key, key_json of these users."""
        return list(await conn.fetch(
            "SELECT user_id, key_type, public_key, key_json FROM e2e_cross_signing_keys"
            " WHERE user_id = ANY($1::text[])", user_ids))

    async def lock_cross_signing_keys(self, conn: Conn, user_id: str) -> dict[str, asyncpg.Record]:
        """The user's keys, locked for an update (two uploads at once are serialised)."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('e2e_cs:' || $1))", user_id)
        rows = await conn.fetch(
            "SELECT key_type, public_key, key_json FROM e2e_cross_signing_keys"
            " WHERE user_id = $1", user_id)
        return {r["key_type"]: r for r in rows}

    async def set_cross_signing_key(self, conn: Conn, user_id: str, key_type: str,
                                    public_key: str, key_json: str, stream_id: int) -> None:
        await conn.execute(
            "INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json,"
            " stream_id) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (user_id, key_type) DO UPDATE SET public_key = EXCLUDED.public_key,"
            " key_json = EXCLUDED.key_json, stream_id = EXCLUDED.stream_id",
            user_id, key_type, public_key, key_json, stream_id)

    async def delete_cross_signing(self, conn: Conn, user_id: str) -> None:
        await conn.execute("DELETE FROM e2e_cross_signing_keys WHERE user_id = $1", user_id)
        await conn.execute("DELETE FROM e2e_signatures WHERE signer_user_id = $1"
                           " OR target_user_id = $1", user_id)

    async def delete_signatures_by(self, conn: Conn, signer_user_id: str,
                                   signer_key_id: str) -> None:
        await conn.execute(
            "DELETE FROM e2e_signatures WHERE signer_user_id = $1 AND signer_key_id = $2",
            signer_user_id, signer_key_id)

    async def delete_signatures_of(self, conn: Conn, target_user_id: str,
                                   target_key_ids: list[str] | None) -> None:
        if target_key_ids is None:
            await conn.execute("DELETE FROM e2e_signatures WHERE target_user_id = $1",
                               target_user_id)
        else:
            await conn.execute(
                "DELETE FROM e2e_signatures WHERE target_user_id = $1"
                " AND target_key_id = ANY($2::text[])", target_user_id, target_key_ids)

    async def add_signatures(self, conn: Conn, rows: list[tuple[str, str, str, str, str]]) -> None:
        """(signer_user_id, signer_key_id, target_user_id, target_key_id, signature) rows."""
        await conn.executemany(
            "INSERT INTO e2e_signatures (signer_user_id, signer_key_id, target_user_id,"
            " target_key_id, signature) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id)"
            " DO UPDATE SET signature = EXCLUDED.signature", rows)

    async def add_device_list_changes(self, conn: Conn, stream_id: int, user_id: str,
                                      device_ids: list[str], only_for: str | None = None) -> None:
        await conn.execute(
            "INSERT INTO device_list_changes (stream_id, user_id, device_id, only_for)"
            " SELECT $1, $2, d, $4 FROM unnest($3::text[]) AS d ON CONFLICT DO NOTHING",
            stream_id, user_id, device_ids, only_for)

    async def users_changed_between(self, conn: Conn, since: int,
                                    upto: int) -> list[tuple[str, str | None]]:
        """Distinct (user_id, only_for) of the changes in (since, upto]."""
        rows = await conn.fetch(
            "SELECT DISTINCT user_id, only_for FROM device_list_changes"
            " WHERE stream_id > $1 AND stream_id <= $2", since, upto)
        return [(r["user_id"], r["only_for"]) for r in rows]

    # -- dehydrated devices (MSC3814)
    async def dehydrated_device(self, conn: Conn, user_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = $1", user_id)

    async def set_dehydrated_device(self, conn: Conn, user_id: str, device_id: str,
                                    device_data: str) -> None:
        await conn.execute(
            "INSERT INTO dehydrated_devices (user_id, device_id, device_data) VALUES ($1, $2, $3)",
            user_id, device_id, device_data)

    async def lock_user_dehydration(self, conn: Conn, user_id: str) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('e2e_dehydrated:' || $1))",
                           user_id)
