"""The end-to-end encryption parts of an AS's transactions, for bridges that encrypt as their
users' devices ("appservice mode"): to-device messages (MSC2409, now MSC4203) and MSC3202's
device lists, one-time key counts and unused fallback key types.

To-device messages (for an AS with `receive_ephemeral` / `de.sorunome.msc2409.push_ephemeral`):
the inbox rows (`to_device_inbox`) of users the AS is interested in, read after a saved
position of the `to_device` stream (consumer `appservice-to_device:<id>`), each with
`to_user_id` and `to_device_id`, go in `to_device` and `de.sorunome.msc2409.to_device`. The
position moves in the database transaction that writes the AS transaction, so a message is
sent once and a crash loses none.

Synapse leaves the messages in the inbox as well, where they wait for a /sync of a device that,
for an AS-run device, never comes, and the table grows for ever. Here a message to a user the AS
holds exclusively (or to its sender: only the AS can act as either) leaves the inbox in that
same transaction: the AS transaction now carries it, and is sent until the AS accepts it. A
message to a user of a non-exclusive namespace is sent to the AS and also kept, since a client
of that user's own may sync the device.

MSC3202 (`org.matrix.msc3202: true`): `org.matrix.msc3202.device_lists.changed` names users
whose device list changed (rows of `device_list_changes` after the consumer
`appservice-device_lists:<id>`) when the AS is interested in them or one of its rooms has them
joined (a change meant for one user only, `only_for`, goes only to the AS of that user), as
Synapse does. Membership completes it as /sync's device_lists does (Synapse leaves `left`
empty): from the membership events of the transaction, a user the AS's users newly share a room
with is `changed` (the bridge has not seen their devices), and one they no longer share any room
with is `left` (it may stop tracking them); both read against membership as it is now.

The key counts (`org.matrix.msc3202.device_one_time_keys_count`, also under Synapse's older
`device_one_time_key_counts` spelling, and `device_unused_fallback_key_types`, both
{user: {device: ...}}) cover every device of: the AS's sender, the recipients of the
transaction's to-device messages, and the AS's users whose keys were uploaded or claimed since
the last transaction (a claim makes a transaction of its own, so that the bridge tops its keys
up). Those "keys changed" marks live in memory: after a restart a device's count is sent again
with the next to-device message to it (a claim of an Olm key is followed by one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from homeserver.appservice.registration import AppService
from homeserver.appservice.store import AppServiceStore
from homeserver.events.model import EventEntry
from homeserver.storage.database import Conn, Database
from homeserver.storage.streams import Stream
from homeserver.types import JsonDict

MAX_SENDS = 100  # to-device positions (sends) per transaction


@dataclass(slots=True)
class DeviceData:
    """What one transaction carries, and what to record once it is written."""

    to_device: list[JsonDict] = field(default_factory=list)
    to_device_end: int | None = None  # the to-device position to save
    delivered: list[tuple[str, str, int]] = field(default_factory=list)  # rows leaving the inbox
    changed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    lists_end: int | None = None  # the device-list position to save
    key_users: set[str] = field(default_factory=set)  # marks taken for this transaction
    otk_counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    fallback: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def has_content(self) -> bool:
        """Whether this alone makes a transaction (key counts only ride along)."""
        return bool(self.to_device or self.changed or self.left or self.key_users)

    def moves(self) -> bool:
        return self.to_device_end is not None or self.lists_end is not None

    def fill(self, body: JsonDict, service: AppService) -> None:
        """Add this data to a transaction body, under the keys the AS asked for."""
        if self.to_device:
            body["to_device"] = self.to_device
            body["de.sorunome.msc2409.to_device"] = self.to_device
        if not service.msc3202:
            return
        if self.changed or self.left:
            body["org.matrix.msc3202.device_lists"] = {"changed": self.changed,
                                                       "left": self.left}
        if self.otk_counts:
            body["org.matrix.msc3202.device_one_time_keys_count"] = self.otk_counts
            body["org.matrix.msc3202.device_one_time_key_counts"] = self.otk_counts
        if self.fallback:
            body["org.matrix.msc3202.device_unused_fallback_key_types"] = self.fallback


class DeviceFeed:
    """One AS's reader of the to-device and device-list streams, and its key-change marks."""

    def __init__(self, db: Database, store: AppServiceStore, service: AppService,
                 to_device: Stream | None, device_lists: Stream | None,
                 shares_room: Callable[[AppService, str], Awaitable[bool]],
                 room_members: Callable[[str], Awaitable[set[str]]]) -> None:
        self._db = db
        self._store = store
        self.service = service
        # Only the streams the AS asked for are read.
        self._to_device = to_device if service.receive_ephemeral else None
        self._lists = device_lists if service.msc3202 else None
        self._shares_room = shares_room
        self._room_members = room_members
        self._td_name = f"appservice-to_device:{service.id}"
        self._dl_name = f"appservice-device_lists:{service.id}"
        self._td_pos: int | None = None
        self._dl_pos: int | None = None
        self.key_users: set[str] = set()

    def on_advance(self, wake: Callable[[], None]) -> None:
        """Call `wake` when a stream this feed reads moves."""
        for stream in (self._to_device, self._lists):
            if stream is not None:
                stream.on_advance(lambda _pos: wake())

    async def start(self) -> None:
        """Load (or create at the streams' current positions) the saved positions."""
        async with self._db.connection() as conn:
            if self._to_device is not None:
                self._td_pos = await self._store.position(
                    conn, self._td_name, self._to_device.name, self._to_device.current)
            if self._lists is not None:
                self._dl_pos = await self._store.position(
                    conn, self._dl_name, self._lists.name, self._lists.current)

    def keys_changed(self, user_id: str, device_id: str) -> None:
        """DeviceKeyService hook: a device's one-time or fallback keys were uploaded or
        claimed."""
        if self.service.msc3202 and self.service.is_interested_in_user(user_id):
            self.key_users.add(user_id)

    def behind(self) -> bool:
        """Whether there may be something to send (or positions to load, after `clear`)."""
        return bool(self.key_users) or (
            self._to_device is not None and (
                self._td_pos is None or self._to_device.current > self._td_pos)) or (
            self._lists is not None and (
                self._dl_pos is None or self._lists.current > self._dl_pos))

    def clear(self) -> None:
        """Another process sends to this AS: it reads the streams from the saved positions."""
        self.key_users.clear()
        self._td_pos = self._dl_pos = None

    async def collect(self, entries: list[EventEntry]) -> DeviceData:
        """The data of the next transaction, whose events are `entries` (nothing is recorded
        until `written`)."""
        if (self._to_device is not None and self._td_pos is None) or (
                self._lists is not None and self._dl_pos is None):
            await self.start()
        data = DeviceData()
        s = self.service
        if self._to_device is not None and self._td_pos is not None:
            upto = self._to_device.current
            if upto > self._td_pos:
                async with self._db.connection() as conn:
                    rows, end = await self._store.to_device_after(conn, self._td_pos, upto,
                                                                  MAX_SENDS)
                data.to_device_end = end
                for r in rows:
                    user_id = r["user_id"]
                    if not s.is_interested_in_user(user_id):
                        continue
                    data.to_device.append({
                        "type": r["type"], "sender": r["sender"],
                        "content": orjson.loads(r["content"]),
                        "to_user_id": user_id, "to_device_id": r["device_id"]})
                    if user_id == s.sender or s.is_exclusive_user(user_id):
                        data.delivered.append((user_id, r["device_id"], int(r["stream_id"])))
        if self._lists is not None and self._dl_pos is not None:
            upto = self._lists.current
            if upto > self._dl_pos:
                async with self._db.connection() as conn:
                    changes = await self._store.device_list_changes(conn, self._dl_pos, upto)
                data.lists_end = upto
                changed: set[str] = set()
                for user_id, only_for in changes:
                    if user_id in changed:
                        continue
                    if only_for is not None:
                        if s.is_interested_in_user(only_for):
                            changed.add(user_id)
                    elif await self._shares_room(s, user_id):
                        changed.add(user_id)
                data.changed = sorted(changed)
        if s.msc3202:
            await self._memberships(entries, data)
            data.key_users, self.key_users = self.key_users, set()
        return data

    async def _memberships(self, entries: list[EventEntry], data: DeviceData) -> None:
        """`changed` and `left` from the joins and leaves among `entries`."""
        s = self.service
        joined: set[str] = set()
        gone: set[str] = set()
        for e in entries:
            target, membership = e.state_key, e.membership
            if target is None or membership not in ("join", "leave", "ban"):
                continue
            if s.is_interested_in_user(target):
                # One of the AS's users: everyone in the room is new to it, or may be gone.
                (joined if membership == "join" else gone).update(
                    await self._room_members(e.room_id))
            else:
                (joined if membership == "join" else gone).add(target)
        changed, left = set(data.changed), set()
        for user_id in sorted(joined | gone):
            if s.is_interested_in_user(user_id):
                continue  # its own users' devices are the AS's to know
            if await self._shares_room(s, user_id):
                if user_id in joined:
                    changed.add(user_id)
            elif user_id in gone:
                left.add(user_id)
        data.changed, data.left = sorted(changed), sorted(left)

    async def add_counts(self, data: DeviceData) -> None:
        """A transaction is being made: add the key counts it carries (MSC3202)."""
        if not self.service.msc3202:
            return
        users = data.key_users | {m["to_user_id"] for m in data.to_device} | {
            self.service.sender}
        async with self._db.connection() as conn:
            data.otk_counts = await self._store.one_time_key_counts(conn, sorted(users))
            data.fallback = await self._store.unused_fallback_types(conn, sorted(users))

    def not_written(self, data: DeviceData) -> None:
        """The transaction was not made: the key marks wait for the next one."""
        self.key_users |= data.key_users

    async def write(self, conn: Conn, data: DeviceData) -> None:
        """In the transaction that writes the AS transaction: move the positions on and take
        the delivered messages out of the inbox."""
        await self._store.delete_to_device(conn, data.delivered)
        if data.to_device_end is not None:
            await self._store.save_position(conn, self._td_name, data.to_device_end)
        if data.lists_end is not None:
            await self._store.save_position(conn, self._dl_name, data.lists_end)

    def written(self, data: DeviceData) -> None:
        """The transaction committed."""
        if data.to_device_end is not None and self._td_pos is not None:
            self._td_pos = max(self._td_pos, data.to_device_end)
        if data.lists_end is not None and self._dl_pos is not None:
            self._dl_pos = max(self._dl_pos, data.lists_end)
