"""Account data (spec "Client Config"): per-user JSON, global or per room, delivered to every
device of the user through /sync, including room tags (spec "Room Tagging"), which are the
room's `m.tag` account data.

Each write takes a position on the account data stream, which sync reads between two tokens.
"""

from __future__ import annotations

import asyncio
import weakref

import orjson

from homeserver.errors import not_found
from homeserver.storage.database import Database
from homeserver.storage.streams import Stream
from homeserver.streams.notifier import Notifier
from homeserver.types import JsonDict
from homeserver.users.store import UserStore


class AccountDataService:
    def __init__(self, db: Database, store: UserStore, stream: Stream,
                 notifier: Notifier) -> None:
        self._db = db
        self._store = store
        self.stream = stream
        self._notifier = notifier
        # One lock per user with a tag change in flight (dropped when unused), so concurrent
        # changes to different tags of a room are not lost in the read-modify-write of m.tag.
        self._tag_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    async def put_account_data(self, user_id: str, room_id: str, type: str,
                               content: JsonDict) -> None:
        pos = await self.stream.allocate()
        try:
            async with self._db.connection() as conn:
                await self._store.put_account_data(conn, user_id, room_id, type,
                                                   orjson.dumps(content).decode(), pos)
        except BaseException:
            self.stream.finish(pos)
            raise
        # Woken only once every earlier position has committed too: a long-poll woken sooner
        # would not be shown this change yet and would sleep its full timeout.
        self.stream.finish(pos, wake=[user_id])

    async def written_by(self, type: str, after: int, upto: int) -> list[str]:
        """Users whose global `type` account data changed between two stream positions (what
        another process wrote, for caches built from it)."""
        async with self._db.connection() as conn:
            return await self._store.account_data_writers(conn, type, after, upto)

    async def get_account_data(self, user_id: str, room_id: str, type: str) -> JsonDict:
        async with self._db.connection() as conn:
            raw = await self._store.get_account_data(conn, user_id, room_id, type)
        if raw is None:
            raise not_found("Account data not found")
        result: JsonDict = orjson.loads(raw)
        return result

    async def room_tags(self, user_id: str, room_id: str) -> JsonDict:
        """The user's tags on a room: the `tags` of the room's `m.tag` account data, or {}."""
        async with self._db.connection() as conn:
            raw = await self._store.get_account_data(conn, user_id, room_id, "m.tag")
        tags = orjson.loads(raw).get("tags") if raw is not None else None
        return dict(tags) if isinstance(tags, dict) else {}

    async def set_room_tag(self, user_id: str, room_id: str, tag: str,
                           info: JsonDict | None) -> None:
        """Add or replace one tag (`info`, e.g. {"order": 0.5}) or remove it (None).

        Stored as the room's `m.tag` account data, so it reaches every device through sync.
        """
        lock = self._tag_locks.get(user_id)
        if lock is None:
            lock = self._tag_locks[user_id] = asyncio.Lock()
        async with lock:
            tags = await self.room_tags(user_id, room_id)
            if info is None:
                if tag not in tags:
                    return  # nothing changes, nothing to sync
                del tags[tag]
            else:
                tags[tag] = info
            await self.put_account_data(user_id, room_id, "m.tag", {"tags": tags})

    async def account_data_since(self, user_id: str, since: int) -> list[tuple[str, str, JsonDict]]:
        """(room_id or "", type, content) written after stream position `since`, up to the
        stream's current position (a write still in flight is left for the next sync)."""
        async with self._db.connection() as conn:
            rows = await self._store.account_data_since(conn, user_id, since)
        return [(r["room_id"], r["type"], orjson.loads(r["content"])) for r in rows
                if r["stream_id"] <= self.stream.current]
