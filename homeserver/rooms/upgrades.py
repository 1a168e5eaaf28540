"""Room upgrades (spec "Room Upgrades", POST /rooms/{roomId}/upgrade).

The replacement room is made through `RoomService.create_room`, so it gets the same checks and
the same single-writer path as any new room; this module only decides what goes into it and
what happens to the old room afterwards, in the order the spec's "Server behaviour" lists:

1. the user must be able to send `m.room.tombstone` in the old room;
2. the new room's create event names the old room (`predecessor`) and keeps its `type`;
3. the transferable state is copied (server ACL, encryption, name, avatar, topic, guest access,
   history visibility, join rules, power levels; a space's `m.space.child` events too);
   members are not: local users follow the tombstone themselves, as the spec's clients do;
4. local aliases move to the new room (with the canonical alias event, and the directory
   listing);
5. the tombstone is sent to the old room (built before step 2 for versions whose room id is
   not the create event's hash, so that `predecessor.event_id` names it, as the reference
   server does); the old room's canonical alias is emptied after it;
6. the old room's power levels are raised so that sending and inviting need
   max(50, users_default + 1).

Bans are copied too (as Synapse does), so that a banned user cannot walk into the new room.

A local user's own state about the old room follows them into the new one when they join it
(the upgrader at once): its tags, and its place in their `m.direct` (carry_user_state; as the
reference server copies them, SyTest "local user has tags copied to the new room", "/upgrade
preserves direct room state").
"""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.errors import Codes, MatrixError, forbidden, invalid_param
from homeserver.events.auth import (
    creators,
    parse_power_level,
    required_power_level_for_event,
    user_power_level,
)
from homeserver.events.room_versions import ROOM_VERSIONS, RoomVersion
from homeserver.rooms.service import RoomService
from homeserver.rooms.state import RoomData
from homeserver.rooms.store import RoomStore
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester, is_valid_user_id
from homeserver.users.account_data import AccountDataService

# State copied as is (besides the power levels, which are adjusted, and the aliases).
COPIED = ("m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar",
          "m.room.topic", "m.room.guest_access", "m.room.history_visibility",
          "m.room.join_rules")
TOMBSTONE = "m.room.tombstone"


async def carry_user_state(account_data: AccountDataService, user_id: str, old_room: str,
                           new_room: str) -> None:
    """Copy the user's tags of `old_room` to `new_room` (those they set there already win),
    and list `new_room` in their m.direct wherever `old_room` is."""
    tags = await account_data.room_tags(user_id, old_room)
    if tags:
        current = await account_data.room_tags(user_id, new_room)
        merged = {**tags, **current}
        if merged != current:
            await account_data.put_account_data(user_id, new_room, "m.tag", {"tags": merged})
    try:
        direct = await account_data.get_account_data(user_id, "", "m.direct")
    except MatrixError:
        return
    changed = False
    for key, rooms in direct.items():
        if isinstance(rooms, list) and old_room in rooms and new_room not in rooms:
            direct[key] = [*rooms, new_room]
            changed = True
    if changed:
        await account_data.put_account_data(user_id, "", "m.direct", direct)


async def move_local_aliases(db: Database, store: RoomStore, old_room: str, new_room: str,
                             creator: str) -> list[str]:
    """This server's aliases of `old_room` point at `new_room` instead, and a listing of the
    old room in this server's public directory becomes one of the new room: done by the
    upgrading server at once, and by each other server when its first user joins the new room
    (as the reference server does; SyTest "/upgrade moves remote aliases to the new room").
    Returns the aliases moved."""
    async with db.transaction() as conn:
        moved = await store.aliases_for_room(conn, old_room)
        for alias in moved:
            row = await store.get_alias(conn, alias)
            await store.delete_alias(conn, alias)
            await store.create_alias(conn, alias, new_room,
                                     row["creator"] if row is not None else creator)
        row = await store.get_room(conn, old_room)
        if row is not None and row["is_public"]:
            await store.set_public(conn, old_room, False)
            await store.set_public(conn, new_room, True)
    return list(moved)


class RoomUpgrader:
    def __init__(self, db: Database, rooms: RoomService, store: RoomStore,
                 account_data: AccountDataService | None = None) -> None:
        self._db = db
        self._rooms = rooms
        self._store = store
        self._account_data = account_data
        self._locks: dict[str, asyncio.Lock] = {}

    async def upgrade(self, requester: Requester, room_id: str, new_version: str,
                      additional_creators: list[str] | None = None) -> str:
        """Upgrade `room_id` to `new_version`; returns the replacement room's id.

        Raises:
            MatrixError: 400 M_UNSUPPORTED_ROOM_VERSION, 400 M_INVALID_PARAM for a bad
                additional creator, 404 for an unknown room, 403 M_FORBIDDEN for a user who
                is not joined or may not send the tombstone.
        """
        rv = ROOM_VERSIONS.get(new_version)
        if rv is None:
            raise MatrixError(400, Codes.UNSUPPORTED_ROOM_VERSION,
                              f"Room version {new_version!r} is not supported")
        for u in additional_creators or ():
            if not is_valid_user_id(u):
                raise invalid_param(f"Invalid user id in additional_creators: {u!r}")
        lock = self._locks.setdefault(room_id, asyncio.Lock())
        try:
            async with lock:  # two upgrades of one room at once would make two new rooms
                return await self._upgrade(requester, room_id, rv, additional_creators or [])
        finally:
            if not lock.locked() and self._locks.get(room_id) is lock:
                del self._locks[room_id]

    async def _upgrade(self, requester: Requester, room_id: str, rv: RoomVersion,
                       extra_creators: list[str]) -> str:
        user = requester.user_id
        old = await self._rooms.get_room(room_id)
        if old.membership(user) != "join":
            raise forbidden("You are not in this room")
        if ("m.room.create", "") not in old.state:
            raise forbidden("This server does not hold this room's state")
        pdus = old.state_pdus()
        if user_power_level(old.version, user, pdus) < required_power_level_for_event(
                TOMBSTONE, True, pdus):
            raise forbidden("You cannot upgrade this room")
        if not rv.creators_have_infinite_power:
            extra_creators = []  # the field has no effect for these versions (spec)
        tombstone: tuple[str, JsonDict] | None = None
        if rv.room_id_is_create_event_hash:
            # The new room's id comes from its create event, so the tombstone cannot be known
            # before it: `predecessor` names the old room's last event (spec v1.16: event_id
            # may be omitted when upgrading to v12).
            new_id = await self._rooms.create_room(requester, self._create_body(
                old, rv, user, extra_creators, self._last_event(old)))
        else:
            # The tombstone is built first, so that the new room's create event names it as
            # the old room's last event (as the reference server does; SyTest "/upgrade
            # creates a new room"), and sent once the new room exists.
            new_id = self._rooms.new_room_id()
            tombstone = await self._rooms.build_state(requester, room_id, TOMBSTONE, "", {
                "body": "This room has been replaced", "replacement_room": new_id})
            await self._rooms.create_room(requester, self._create_body(
                old, rv, user, extra_creators, tombstone[0]), room_id=new_id)
        await self._after_create(requester, old, new_id, rv, user, extra_creators)
        if tombstone is not None:
            await self._rooms.persist_built(room_id, *tombstone)
        else:
            await self._rooms.set_state(requester, room_id, TOMBSTONE, "", {
                "body": "This room has been replaced", "replacement_room": new_id})
        await self._clear_old_canonical_alias(requester, old)
        await self._restrict_old(requester, room_id)
        if self._account_data is not None:  # the upgrader is in the new room already
            await carry_user_state(self._account_data, user, room_id, new_id)
        return new_id

    # ------------------------------------------------------------------ the new room

    def _content(self, room: RoomData, etype: str, key: str = "") -> JsonDict | None:
        ev = room.state.get((etype, key))
        if ev is None:
            return None
        content = ev.pdu.get("content")
        return dict(content) if isinstance(content, dict) else None

    def _power_levels(self, old: RoomData, rv: RoomVersion, user: str,
                      extra_creators: list[str]) -> JsonDict:
        """The old room's power levels as valid content for the new version: integer levels,
        the new room's creators unlisted when they have infinite power, and the old room's
        creators (who had infinite power there) at 100 unless they are creators again."""
        pl = self._content(old, "m.room.power_levels") or {}

        def level(v: object) -> int | None:
            return parse_power_level(old.version, v)

        out: JsonDict = {}
        for k, v in pl.items():
            if isinstance(v, dict):
                out[k] = {kk: lv for kk, vv in v.items() if (lv := level(vv)) is not None} \
                    if k in ("users", "events", "notifications") else v
            elif (lv := level(v)) is not None:
                out[k] = lv
        users: dict[str, Any] = dict(out.get("users") or {})
        new_creators = {user, *extra_creators} if rv.creators_have_infinite_power else set()
        if old.version.creators_have_infinite_power:
            # Creators of the old room who are not creators of the new one keep the top level.
            for c in creators(old.version, old.state_pdus()) - new_creators:
                users[c] = max(users.get(c, 0), 100)
        for u in new_creators:
            users.pop(u, None)  # v12 creators may not be listed
        out["users"] = users
        return out

    def _create_body(self, old: RoomData, rv: RoomVersion, user: str,
                     extra_creators: list[str], last_event: str) -> JsonDict:
        create = self._content(old, "m.room.create") or {}
        creation: JsonDict = {"predecessor": {"room_id": old.room_id, "event_id": last_event}}
        for k in ("type", "m.federate"):
            if k in create:
                creation[k] = create[k]
        if extra_creators:
            creation["additional_creators"] = list(dict.fromkeys(extra_creators))
        initial: list[JsonDict] = []
        for etype in COPIED:
            content = self._content(old, etype)
            if content is not None:
                initial.append({"type": etype, "state_key": "", "content": content})
        if self._content(old, "m.room.guest_access") is None:
            # No event means forbidden; keep it so (the preset below would allow guests).
            initial.append({"type": "m.room.guest_access", "state_key": "",
                            "content": {"guest_access": "forbidden"}})
        if create.get("type") == "m.space":
            for (etype, key), ev in old.state.items():
                if etype == "m.space.child" and ev.pdu.get("content"):
                    initial.append({"type": etype, "state_key": key,
                                    "content": dict(ev.pdu["content"])})
        join_rule = (self._content(old, "m.room.join_rules") or {}).get("join_rule")
        pl = self._power_levels(old, rv, user, extra_creators)
        pl["users"] = dict(pl["users"])
        if not rv.creators_have_infinite_power:
            # The upgrader sends the copied state, so for the moment they need the levels to
            # do so; the copied power levels are restored right after (_after_create).
            pl["users"][user] = max(pl["users"].get(user, 0), self._needed(pl, initial))
        return {
            "room_version": rv.identifier,
            "creation_content": creation,
            "preset": "public_chat" if join_rule == "public" else "private_chat",
            "initial_state": initial,
            "power_level_content_override": pl,
        }

    @staticmethod
    def _needed(pl: JsonDict, initial: list[JsonDict]) -> int:
        events = pl.get("events") or {}
        state_default = pl.get("state_default", 50)
        types = {s["type"] for s in initial} | {"m.room.power_levels",
                                                  "m.room.canonical_alias"}
        needed = [events.get(t, state_default) for t in types]
        needed += [pl.get("ban", 50), pl.get("users_default", 0)]
        needed += list((pl.get("users") or {}).values())  # to set others' levels at all
        return max(int(x) for x in needed if isinstance(x, int))

    @staticmethod
    def _last_event(room: RoomData) -> str:
        if room.recent:
            return room.recent[-1].event_id
        return room.extremities[-1] if room.extremities else room.state[
            ("m.room.create", "")].event_id

    async def _after_create(self, requester: Requester, old: RoomData, new_id: str,
                            rv: RoomVersion, user: str, extra_creators: list[str]) -> None:
        if not rv.creators_have_infinite_power:
            pl = self._power_levels(old, rv, user, extra_creators)
            await self._rooms.set_state(requester, new_id, "m.room.power_levels", "", pl)
        # Bans carry over (best effort: the upgrader may lack the ban level).
        for (etype, key), ev in list(old.state.items()):
            if etype == "m.room.member" and ev.pdu.get("content", {}).get(
                    "membership") == "ban":
                try:
                    await self._rooms.ban(requester, new_id, key,
                                          ev.pdu["content"].get("reason"))
                except MatrixError:
                    pass
        await self._move_aliases(requester, old, new_id)

    async def _move_aliases(self, requester: Requester, old: RoomData, new_id: str) -> None:
        moved = await move_local_aliases(self._db, self._store, old.room_id, new_id,
                                         requester.user_id)
        canonical = self._content(old, "m.room.canonical_alias") or {}
        main = canonical.get("alias")
        alt = canonical.get("alt_aliases")
        new: JsonDict = {}
        if isinstance(main, str) and main in moved:
            new["alias"] = main
        if isinstance(alt, list):
            kept = [a for a in alt if isinstance(a, str) and a in moved]
            if kept:
                new["alt_aliases"] = kept
        if new:
            await self._rooms.set_state(requester, new_id, "m.room.canonical_alias", "", new)

    async def _clear_old_canonical_alias(self, requester: Requester, old: RoomData) -> None:
        """The aliases no longer point at the old room (sent after the tombstone, so that the
        tombstone built before the new room was made follows the old room's last event)."""
        if self._content(old, "m.room.canonical_alias"):
            try:
                await self._rooms.set_state(requester, old.room_id, "m.room.canonical_alias",
                                            "", {})
            except MatrixError:
                pass

    # ------------------------------------------------------------------ the old room

    async def _restrict_old(self, requester: Requester, room_id: str) -> None:
        """Raise events_default and invite to max(50, users_default + 1), where the user may
        change the power levels at all (the spec's "if possible")."""
        room = await self._rooms.get_room(room_id)
        pl = self._content(room, "m.room.power_levels")
        if pl is None:
            return
        users_default = parse_power_level(room.version, pl.get("users_default", 0)) or 0
        floor = max(50, users_default + 1)
        changed = dict(pl)
        for k, default in (("events_default", 0), ("invite", 0)):
            current = parse_power_level(room.version, pl.get(k, default))
            if current is None or current < floor:
                changed[k] = floor
        if changed != pl:
            try:
                await self._rooms.set_state(requester, room_id, "m.room.power_levels", "",
                                            changed)
            except MatrixError:
                pass
