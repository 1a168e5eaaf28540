"""Filters (spec "Filtering"): a client uploads a filter once and names it by id in /sync.

Stored as the JSON the client sent; client_api/sync.py parses it on use.
"""

from __future__ import annotations

import orjson

from homeserver.errors import Codes, MatrixError, not_found
from homeserver.storage.database import Database
from homeserver.types import JsonDict
from homeserver.users.store import UserStore

_MAX_ID_RACES = 100


class FilterService:
    def __init__(self, db: Database, store: UserStore) -> None:
        self._db = db
        self._store = store

    async def create_filter(self, user_id: str, filter_json: JsonDict) -> str:
        """Ids count up per user; two uploads at once may pick the same next id, and the one
        that loses the race takes the next (each retry follows another upload's success)."""
        raw = orjson.dumps(filter_json).decode()
        async with self._db.connection() as conn:
            for _ in range(_MAX_ID_RACES):
                filter_id = await self._store.insert_filter(conn, user_id, raw)
                if filter_id is not None:
                    return str(filter_id)
        raise MatrixError(503, Codes.UNKNOWN, "Too many filters uploaded at once; try again")

    async def get_filter(self, user_id: str, filter_id: str) -> JsonDict:
        if not (filter_id.isascii() and filter_id.isdigit()) or len(filter_id) > 18:
            raise not_found("Unknown filter")  # filter ids are BIGINTs we handed out
        async with self._db.connection() as conn:
            raw = await self._store.get_filter(conn, user_id, int(filter_id))
        if raw is None:
            raise not_found("Unknown filter")
        result: JsonDict = orjson.loads(raw)
        return result
