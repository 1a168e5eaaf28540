"""`PushRuleService`: reads and changes a user's push rules.

Each change is read-modify-write of the user's changes row, then the merged ruleset is written as
the user's `m.push_rules` global account data so /sync delivers it (spec "Push Rules: Events").
A per-user lock serialises the two writes, so the account data always ends on the latest rules.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

import orjson

from homeserver.push import rules
from homeserver.push.store import PushRuleStore
from homeserver.storage.database import Database
from homeserver.types import JsonDict
from homeserver.users.account_data import AccountDataService


class PushRuleService:
    def __init__(self, db: Database, store: PushRuleStore,
                 account_data: AccountDataService) -> None:
        self._db = db
        self._store = store
        self._account_data = account_data
        # Dropped when no change of that user is in flight.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())
        self.on_change: list[Callable[[str], None]] = []  # compiled-rules caches

    def _lock(self, user_id: str) -> asyncio.Lock:
        lock = self._locks.get(user_id)
        if lock is None:
            lock = self._locks[user_id] = asyncio.Lock()
        return lock

    async def _changes(self, user_id: str) -> JsonDict:
        async with self._db.connection() as conn:
            raw = await self._store.get_changes(conn, user_id)
        if raw is None:
            return rules.empty_changes()
        changes: JsonDict = orjson.loads(raw)
        return changes

    async def ruleset(self, user_id: str) -> JsonDict:
        """The merged ruleset {"global": {kind: [...]}} served by GET /pushrules/."""
        return rules.merge(user_id, await self._changes(user_id))

    async def change(self, user_id: str, change: rules.Change) -> JsonDict:
        """Apply `change` (a pure function of the changes; it may raise MatrixError), store it
        and publish the new merged ruleset as `m.push_rules`. Returns the new ruleset."""
        async with self._lock(user_id):
            new = change(await self._changes(user_id))
            async with self._db.connection() as conn:
                await self._store.put_changes(conn, user_id, orjson.dumps(new).decode())
            for cb in self.on_change:
                cb(user_id)
            ruleset = rules.merge(user_id, new)
            await self._account_data.put_account_data(user_id, "", "m.push_rules", ruleset)
            return ruleset
