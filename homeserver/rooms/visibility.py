"""History visibility: who may read which event (spec "History visibility").

Decided from the room state *at* each event (its state group), so changing the setting later
never exposes or hides what was sent before the change.

Events of users a server admin erased (deactivation with `erase`, homeserver/admin/users.py)
are served with their content removed to readers who were not joined when they were sent, as
Synapse does: those who saw a message then still see it, later joiners do not.
"""

from __future__ import annotations

from dataclasses import replace

from homeserver.events.model import EventEntry
from homeserver.rooms.state import EventCache, StateGroups


def may_see(history_visibility: str, membership_at_event: str | None,
            currently_joined: bool) -> bool:
    """Pure rule table (tested in tests/unit/test_visibility.py)."""
    if history_visibility == "world_readable":
        return True
    if membership_at_event == "join":
        return True
    if history_visibility == "shared" and currently_joined:
        return True
    return history_visibility == "invited" and membership_at_event == "invite"


class Visibility:
    def __init__(self, groups: StateGroups, cache: EventCache) -> None:
        self._groups = groups
        self._cache = cache
        # Erased users (kept by homeserver/admin/users.py: loaded at start, added on erase).
        self.erased: set[str] = set()

    async def _content_field(self, event_id: str | None, field: str) -> str | None:
        if event_id is None:
            return None
        ev = self._cache.peek(event_id)
        if ev is None:
            ev = (await self._cache.get_many([event_id])).get(event_id)
        if ev is None:
            return None
        v = ev.pdu.get("content", {}).get(field)
        return v if isinstance(v, str) else None

    async def filter(self, user_id: str, events: list[EventEntry],
                     currently_joined: bool) -> list[EventEntry]:
        out = []
        for ev in events:
            if ev.type == "m.room.member" and ev.state_key == user_id:
                out.append(ev)  # a user always sees their own membership changes
                continue
            if await self._allowed(user_id, ev.state_group, currently_joined):
                out.append(ev)
            elif (ev.type == "m.room.history_visibility" and ev.state_key == ""
                  and ev.state_group_before
                  and await self._allowed(user_id, ev.state_group_before, currently_joined)):
                # The spec lets a user see a change of the setting if the value before *or*
                # after it allows them: a room going from shared to joined shows that change
                # to members who join later, so they know why the history stops there.
                out.append(ev)
        if self.erased:
            out = [await self._erased_view(user_id, ev)
                   if ev.sender in self.erased and ev.sender != user_id else ev for ev in out]
        return out

    async def _erased_view(self, user_id: str, ev: EventEntry) -> EventEntry:
        """`ev` of an erased sender as `user_id` may see it: whole if they were joined at
        the time, else without its content (a member event keeps its membership)."""
        state = await self._groups.state_ids(ev.state_group)
        if await self._content_field(state.get(("m.room.member", user_id)),
                                     "membership") == "join":
            return ev
        content = ev.client.get("content") or {}
        kept = ({"membership": content["membership"]}
                if ev.type == "m.room.member" and "membership" in content else {})
        return replace(ev, client={**ev.client, "content": kept}, pruned_content=kept)

    async def _allowed(self, user_id: str, group: int, currently_joined: bool) -> bool:
        state = await self._groups.state_ids(group)
        hv = await self._content_field(state.get(("m.room.history_visibility", "")),
                                       "history_visibility") or "shared"
        if hv == "world_readable" or (hv == "shared" and currently_joined):
            return True
        membership = await self._content_field(state.get(("m.room.member", user_id)),
                                               "membership")
        return may_see(hv, membership, currently_joined)
