"""Forward-only schema migrations: `migrations/NNNN_name.sql`, each applied once in its own
transaction and recorded in `schema_migrations`. A landed migration is never edited; add a new one.
"""

from __future__ import annotations

import logging
import re
import time
from importlib.resources import files
from importlib.resources.abc import Traversable

import asyncpg

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations_dir() -> Traversable:
    """The SQL files, read through importlib.resources so that an installed wheel finds the copy
    it ships (the `migrations` package) as a checkout finds the top-level folder."""
    return files("migrations")


def migration_files(directory: Traversable | None = None) -> list[tuple[int, Traversable]]:
    directory = migrations_dir() if directory is None else directory
    found = []
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        m = _NAME.match(path.name)
        if m:
            found.append((int(m.group(1)), path))
    versions = [v for v, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a number")
    return found


async def migrate(conn: asyncpg.Connection, directory: Traversable | None = None) -> list[int]:
    """Apply missing migrations; returns the versions applied. Safe to run concurrently."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ts BIGINT NOT NULL)"
    )
    applied: list[int] = []
    for version, path in migration_files(directory):
        async with conn.transaction():
            # An advisory lock serialises two servers starting on one database.
            await conn.execute("SELECT pg_advisory_xact_lock(7316001)")
            done = await conn.fetchval(
                "SELECT 1 FROM schema_migrations WHERE version = $1", version
            )
            if done:
                continue
            log.info("applying migration %s", path.name)
            await conn.execute(path.read_text())
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_ts) VALUES ($1, $2, $3)",
                version, path.name, int(time.time() * 1000),
            )
            applied.append(version)
    return applied


async def schema_version(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))
