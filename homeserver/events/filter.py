"""The Matrix filter language (spec "Filtering"), parsed once per request."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from homeserver.events.model import EventEntry
from homeserver.types import JsonDict


def _list(v: Any) -> tuple[str, ...] | None:
    if isinstance(v, list):
        return tuple(str(x) for x in v)
    return None


def _type_match(t: str, patterns: tuple[str, ...]) -> bool:
    return any(p == t or ("*" in p and fnmatch.fnmatchcase(t, p)) for p in patterns)


@dataclass(frozen=True, slots=True)
class EventFilter:
    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    contains_url: bool | None = None
    unread_thread_notifications: bool = False

    @classmethod
    def parse(cls, d: Any) -> EventFilter:
        if not isinstance(d, dict):
            return cls()
        limit = d.get("limit")
        return cls(
            limit=int(limit) if isinstance(limit, int) and limit >= 0 else None,
            types=_list(d.get("types")),
            not_types=_list(d.get("not_types")) or (),
            senders=_list(d.get("senders")),
            not_senders=_list(d.get("not_senders")) or (),
            rooms=_list(d.get("rooms")),
            not_rooms=_list(d.get("not_rooms")) or (),
            lazy_load_members=bool(d.get("lazy_load_members", False)),
            include_redundant_members=bool(d.get("include_redundant_members", False)),
            contains_url=d.get("contains_url") if isinstance(d.get("contains_url"), bool)
            else None,
            unread_thread_notifications=d.get("unread_thread_notifications") is True,
        )

    def allows_type(self, etype: str) -> bool:
        if self.not_types and _type_match(etype, self.not_types):
            return False
        return self.types is None or _type_match(etype, self.types)

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def allows(self, ev: EventEntry) -> bool:
        if not self.allows_type(ev.type):
            return False
        if ev.sender in self.not_senders:
            return False
        if self.senders is not None and ev.sender not in self.senders:
            return False
        if self.contains_url is not None:
            has = isinstance(ev.pdu.get("content", {}).get("url"), str)
            if has != self.contains_url:
                return False
        return True

    @property
    def is_default(self) -> bool:
        return self == EventFilter(limit=self.limit)

    @property
    def drops_events(self) -> bool:
        """Whether `allows` can refuse some event of a room."""
        return (self.types is not None or bool(self.not_types) or self.senders is not None
                or bool(self.not_senders) or self.contains_url is not None)


@dataclass(frozen=True, slots=True)
class SyncFilter:
    timeline: EventFilter = EventFilter()
    state: EventFilter = EventFilter()
    ephemeral: EventFilter = EventFilter()
    room_account_data: EventFilter = EventFilter()
    account_data: EventFilter = EventFilter()
    presence: EventFilter = EventFilter()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"  # or "federation": events as the PDUs servers exchange

    @classmethod
    def parse(cls, d: JsonDict | None) -> SyncFilter:
        if not d:
            return cls()
        raw_room = d.get("room")
        room: JsonDict = raw_room if isinstance(raw_room, dict) else {}
        state = EventFilter.parse(room.get("state"))
        return cls(
            timeline=EventFilter.parse(room.get("timeline")),
            state=state,
            ephemeral=EventFilter.parse(room.get("ephemeral")),
            room_account_data=EventFilter.parse(room.get("account_data")),
            account_data=EventFilter.parse(d.get("account_data")),
            presence=EventFilter.parse(d.get("presence")),
            rooms=_list(room.get("rooms")),
            not_rooms=_list(room.get("not_rooms")) or (),
            include_leave=bool(room.get("include_leave", False)),
            event_fields=_list(d.get("event_fields")),
            event_format="federation" if d.get("event_format") == "federation" else "client",
        )

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    @property
    def lazy_load_members(self) -> bool:
        return self.state.lazy_load_members
