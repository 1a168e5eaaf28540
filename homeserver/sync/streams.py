"""The sync sections that are not room timelines, each behind a small interface.

SyncService asks each source for what is new between two positions of its own stream; the
sources (typing, receipts, to-device, presence) live in their own modules and are wired in
homeserver/app.py. A source with nothing new returns empty and costs no query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from homeserver.events.model import EventEntry
from homeserver.rooms.members import Membership
from homeserver.rooms.state import RoomData
from homeserver.types import JsonDict, Requester


class RoomEphemeralSource(Protocol):
    """Per-room ephemeral events for joined rooms (m.typing, m.receipt)."""

    def current(self) -> int: ...

    async def for_rooms(self, user_id: str, room_ids: list[str], since: int | None,
                        upto: int) -> dict[str, list[JsonDict]]:
        """Events per room that changed in (since, upto]; since None means initial sync."""
        ...


class ToDeviceSource(Protocol):
    def current(self) -> int: ...

    async def for_device(self, user_id: str, device_id: str, since: int | None,
                         upto: int) -> tuple[list[JsonDict], int]:
        """Messages for this device after `since` (acknowledging everything up to `since`),
        and the position next_batch must carry (below `upto` if more are waiting)."""
        ...


class PresenceSource(Protocol):
    def current(self) -> int: ...

    async def for_user(self, user_id: str, since: int | None, upto: int,
                       newly_shared: Collection[str] = ()) -> list[JsonDict]:
        """m.presence events of users sharing a room with `user_id`, changed in (since, upto],
        and the current presence of `newly_shared` (users who came to share a room with
        `user_id` in that window, whose presence the client has never had)."""
        ...


class DeviceListSource(Protocol):
    def current(self) -> int: ...

    async def for_sync(self, user_id: str, memberships: Mapping[str, Membership],
                       since_lists: int, upto_lists: int, since_events: int,
                       upto_events: int) -> tuple[set[str], set[str]]:
        """(changed, left): users whose device lists the syncing user must re-read or drop."""
        ...


class KeyCountSource(Protocol):
    async def counts(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """The device's unclaimed one-time keys per algorithm and unused fallback key types."""
        ...


class NotificationCountSource(Protocol):
    async def counts(self, user_id: str, room_ids: list[str],
                     by_thread: bool) -> dict[str, JsonDict]: ...


class AggregationSource(Protocol):
    async def bundle_in_room(self, requester: Requester, room: RoomData,
                             events: list[EventEntry], served: list[JsonDict], upto: int,
                             joined: bool = True) -> None:
        """Add bundled aggregations (m.thread) to `served`, the client form of `events`."""
        ...


class PeekSource(Protocol):
    async def of_device(self, user_id: str, device_id: str) -> dict[str, int]:
        """The rooms this device peeks into (MSC2753, homeserver/sync/peeks.py), each with
        the events-stream position its peek started at."""
        ...


@dataclass(slots=True)
class SyncSources:
    typing: RoomEphemeralSource | None = None
    receipts: RoomEphemeralSource | None = None
    to_device: ToDeviceSource | None = None
    presence: PresenceSource | None = None
    device_lists: DeviceListSource | None = None
    key_counts: KeyCountSource | None = None
    notifications: NotificationCountSource | None = None
    aggregations: AggregationSource | None = None
    # Whether a user blocks invites (spec v1.18, homeserver/users/invite_permission.py): their
    # invites are not served.
    invite_blocked: Callable[[str], Awaitable[bool]] | None = None
    peeks: PeekSource | None = None  # MSC2753 peeking through /sync (rooms.peek)
