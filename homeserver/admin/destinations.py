"""The servers this one sends to, as Synapse's federation admin API shows them (synapse-admin's
"Federation" page): each destination's retry state, the rooms it shares with us, and a reset
that ends its backoff so its queue is sent at once (after an outage the operator fixed).

Known destinations are those the federation sender has sent a transaction to
(federation_destinations); the rooms are those with a joined member of that server.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from homeserver.errors import Codes, MatrixError, not_found
from homeserver.federation.store import DESTINATION_ORDER, FederationStore
from homeserver.storage.database import Database
from homeserver.types import JsonDict


def _destination_json(r: asyncpg.Record) -> JsonDict:
    return {"destination": r["destination"], "retry_last_ts": int(r["retry_last_ts"]),
            "retry_interval": int(r["retry_interval"]), "failure_ts": r["failure_ts"],
            "last_successful_stream_ordering": r["last_success_stream"]}


class DestinationAdmin:
    def __init__(self, db: Database, store: FederationStore) -> None:
        self._db = db
        self._store = store
        # The federation sender's "retry this destination now" (set when federation is on).
        self.retry_now: Callable[[str], None] | None = None

    async def page(self, search: str | None, order_by: str, backwards: bool, limit: int,
                   offset: int) -> tuple[list[JsonDict], int]:
        async with self._db.connection() as conn:
            rows, total = await self._store.list_destinations(
                conn, search, DESTINATION_ORDER[order_by], backwards, limit, offset)
        return [_destination_json(r) for r in rows], total

    async def get(self, destination: str) -> JsonDict:
        async with self._db.connection() as conn:
            row = await self._store.destination_info(conn, destination)
        if row is None:
            raise not_found("Unknown destination")
        return _destination_json(row)

    async def rooms(self, destination: str, backwards: bool, limit: int,
                    offset: int) -> tuple[list[JsonDict], int]:
        await self.get(destination)
        async with self._db.connection() as conn:
            rows, total = await self._store.destination_rooms(conn, destination, backwards,
                                                              limit, offset)
        return [{"room_id": r["room_id"], "stream_ordering": int(r["stream_ordering"])}
                for r in rows], total

    async def reset_connection(self, destination: str) -> None:
        """End the destination's backoff and send its queue now; 400 when it is not
        backing off (as Synapse answers)."""
        if not (await self.get(destination))["retry_last_ts"]:
            raise MatrixError(400, Codes.UNKNOWN,
                              "The retry timing does not need to be reset for this destination.")
        async with self._db.connection() as conn:
            await self._store.reset_destination(conn, destination)
        if self.retry_now is not None:
            self.retry_now(destination)
