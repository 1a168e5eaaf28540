"""User-interactive auth sessions: which stages of which API call a client has completed.

The sessions are rows in the database rather than a map in memory, so that a client may finish a
flow after a restart, or on another process sharing the database. A session is bound to the API
call and the user it was started for (the spec's session is "for the same API call"), lives
SESSION_TTL_MS from its start, and is deleted by the request whose flow it completes: deleting is
the step that authorises that request, so two requests racing on one session cannot both pass.
Expired sessions are swept whenever a new one starts, so the table stays as small as the number
of flows started in the last TTL.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from homeserver.storage.database import Database
from homeserver.uia.store import UIASessionStore

SESSION_TTL_MS = 600_000


def _now() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class UIASession:
    session_id: str
    operation: str
    user_id: str | None  # None: registration, before there is a user
    completed: frozenset[str]


class UIASessionService:
    def __init__(self, db: Database, store: UIASessionStore,
                 ttl_ms: int = SESSION_TTL_MS) -> None:
        self._db = db
        self._store = store
        self._ttl_ms = ttl_ms

    async def start(self, operation: str, user_id: str | None,
                    completed: frozenset[str] = frozenset()) -> UIASession:
        """A new session for `operation` by `user_id`, with `completed` stages already done."""
        now = _now()
        session_id = secrets.token_urlsafe(16)
        async with self._db.connection() as conn:
            await self._store.delete_created_before(conn, now - self._ttl_ms)
            await self._store.insert(conn, session_id, operation, user_id, sorted(completed),
                                     now)
        return UIASession(session_id, operation, user_id, completed)

    async def get(self, session_id: str) -> UIASession | None:
        """The session, unless it is unknown, finished or expired."""
        async with self._db.connection() as conn:
            row = await self._store.get(conn, session_id, _now() - self._ttl_ms)
        if row is None:
            return None
        return UIASession(row["session_id"], row["operation"], row["user_id"],
                          frozenset(row["completed"]))

    async def complete_stage(self, session_id: str, stage: str) -> frozenset[str] | None:
        """Record a completed stage; the session's completed stages, or None if it is gone."""
        async with self._db.connection() as conn:
            done = await self._store.add_completed(conn, session_id, stage,
                                                   _now() - self._ttl_ms)
        return frozenset(done) if done is not None else None

    async def finish(self, session_id: str) -> bool:
        """Delete the session of a completed flow; False if another request already did."""
        async with self._db.connection() as conn:
            return await self._store.delete(conn, session_id)

    async def delete_expired(self) -> int:
        async with self._db.connection() as conn:
            return await self._store.delete_created_before(conn, _now() - self._ttl_ms)
