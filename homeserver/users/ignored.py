"""Ignored users (spec "Ignoring Users"): the users in a user's m.ignored_user_list account
data, whose non-state events and invites /sync leaves out.

Sync asks on every request, so the set is kept per user together with the account-data stream
position it was read at, and read again only once that stream has moved (any account-data
write anywhere may be this user's list); an idle long-poll costs no query.
"""

from __future__ import annotations

from collections import OrderedDict

from homeserver.errors import MatrixError
from homeserver.users.account_data import AccountDataService

IGNORED_USER_LIST = "m.ignored_user_list"
_CACHE_SIZE = 10_000


class IgnoredUsers:
    def __init__(self, account_data: AccountDataService) -> None:
        self._account_data = account_data
        self._cache: OrderedDict[str, tuple[int, frozenset[str]]] = OrderedDict()

    async def of(self, user_id: str) -> frozenset[str]:
        """The users `user_id` ignores now (empty when the list is unset or malformed)."""
        pos = self._account_data.stream.current
        hit = self._cache.get(user_id)
        if hit is not None and hit[0] == pos:
            self._cache.move_to_end(user_id)
            return hit[1]
        try:
            content = await self._account_data.get_account_data(user_id, "",
                                                                IGNORED_USER_LIST)
        except MatrixError:  # not set
            content = {}
        users = content.get("ignored_users")
        ignored = (frozenset(u for u in users if isinstance(u, str) and u != user_id)
                   if isinstance(users, dict) else frozenset())
        self._cache[user_id] = (pos, ignored)
        self._cache.move_to_end(user_id)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return ignored
