"""Filters (spec "Filtering"): a client uploads a filter once and names it by id in /sync.

Stored as the JSON the client sent; client_api/sync.py parses it on use.
"""

from __future__ import annotations

import orjson

from homeserver.errors import not_found
from homeserver.storage.database import Database
from homeserver.types import JsonDict
from homeserver.users.store import UserStore


class FilterService:
    def __init__(self, db: Database, store: UserStore) -> None:
        self._db = db
        self._store = store

    async def create_filter(self, user_id: str, filter_json: JsonDict) -> str:
        async with self._db.connection() as conn:
            return str(await self._store.insert_filter(conn, user_id,
                                                       orjson.dumps(filter_json).decode()))

    async def get_filter(self, user_id: str, filter_id: str) -> JsonDict:
        if not (filter_id.isascii() and filter_id.isdigit()) or len(filter_id) > 18:
            raise not_found("Unknown filter")  # filter ids are BIGINTs we handed out
        async with self._db.connection() as conn:
            raw = await self._store.get_filter(conn, user_id, int(filter_id))
        if raw is None:
            raise not_found("Unknown filter")
        result: JsonDict = orjson.loads(raw)
        return result
