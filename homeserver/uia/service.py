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

import orjson

from homeserver.storage.database import Database
from homeserver.types import JsonDict
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
    params: JsonDict | None = None  # the starting request's parameters, if remembered
    result: str | None = None  # what the finished flow produced (the registered user)
    finished: bool = False


class UIASessionService:
    def __init__(self, db: Database, store: UIASessionStore,
                 ttl_ms: int = SESSION_TTL_MS) -> None:
        self._db = db
        self._store = store
        self._ttl_ms = ttl_ms

    async def start(self, operation: str, user_id: str | None,
                    completed: frozenset[str] = frozenset(),
                    params: JsonDict | None = None) -> UIASession:
        """A new session for `operation` by `user_id`, with `completed` stages already done
        (and `params`, the request's parameters, remembered for the requests that follow)."""
        now = _now()
        session_id = secrets.token_urlsafe(16)
        async with self._db.connection() as conn:
            await self._store.delete_created_before(conn, now - self._ttl_ms)
            await self._store.insert(conn, session_id, operation, user_id, sorted(completed),
                                     now, None if params is None else orjson.dumps(params).decode())
        return UIASession(session_id, operation, user_id, completed, params)

    async def get(self, session_id: str) -> UIASession | None:
        """The session, unless it is unknown, deleted or expired (a kept one may be finished)."""
        async with self._db.connection() as conn:
            row = await self._store.get(conn, session_id, _now() - self._ttl_ms)
        if row is None:
            return None
        params = orjson.loads(row["params"]) if row["params"] is not None else None
        return UIASession(row["session_id"], row["operation"], row["user_id"],
                          frozenset(row["completed"]), params, row["result"], row["finished"])

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

    async def finish_kept(self, session_id: str) -> bool:
        """Finish a session that is kept until it expires (so that a repeated request can be
        answered with the same `result`); False if another request already finished it."""
        async with self._db.connection() as conn:
            return await self._store.mark_finished(conn, session_id)

    async def set_result(self, session_id: str, result: str) -> None:
        async with self._db.connection() as conn:
            await self._store.set_result(conn, session_id, result)

    async def delete_expired(self) -> int:
        async with self._db.connection() as conn:
            return await self._store.delete_created_before(conn, _now() - self._ttl_ms)
