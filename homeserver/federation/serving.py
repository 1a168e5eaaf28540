"""The resident side of federation: what this server answers about rooms it is in.

- The membership handshake for other servers' users: make_join/send_join (v2) and
  make_leave/send_leave (v2); the accepted event goes through `RoomWriter.accept` and is
  forwarded to the other servers in the room (the joining server sends it only to us).
- An invite (v2) of one of our users into any room: checked, counter-signed, and kept as an
  out-of-band membership when this server is not in the room.
- Reads for a server that is in the room (now, or at the event asked about): /event, /state,
  /state_ids, /event_auth, /get_missing_events, /backfill. Rejected and soft-failed events are
  never served.
- The room's server ACL (current state) is applied to every one of these: a denied server
  gets 403 M_FORBIDDEN.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from homeserver.errors import Codes, MatrixError, bad_json, forbidden, not_found
from homeserver.events.auth import AuthError, check_auth
from homeserver.events.builder import EventBuilder
from homeserver.events.checks import InvalidPdu, KeyFetcher, check_format, check_signatures
from homeserver.events.format import event_ids_of, event_references
from homeserver.events.hashing import (
    compute_content_hash,
    compute_event_id,
    create_event_id_for_room,
    prune_event,
)
from homeserver.events.model import EventEntry, remote_stripped_state
from homeserver.events.room_versions import ROOM_VERSIONS, RoomVersion
from homeserver.federation.acl import server_allowed
from homeserver.rooms.service import RoomService
from homeserver.rooms.state import EventCache, RoomData, StateGroups
from homeserver.rooms.store import RoomStore
from homeserver.rooms.writer import MissingEvents, RoomWriter
from homeserver.signing import ServerSigningKey, canonical_json
from homeserver.storage.database import Database
from homeserver.types import JsonDict, is_valid_user_id

log = logging.getLogger(__name__)

MAX_MISSING = 20
MAX_BACKFILL = 100

# The state that lets an invited or knocking user identify a room (invite_room_state,
# knock_room_state); the create event first, as the spec requires it.
ROOM_STATE_TYPES = ("m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
                    "m.room.canonical_alias", "m.room.encryption", "m.room.topic")

# Called with an event accepted for another server, and the servers not to send it to.
Forward = Callable[[EventEntry, set[str]], Awaitable[None]]


def domain(identifier: str) -> str:
    return identifier.partition(":")[2]


def servers_of(room: RoomData) -> list[str]:
    """Servers with a joined member in the room's current state."""
    return sorted({domain(k) for (t, k), e in room.state.items()
                   if t == "m.room.member" and e.membership == "join"})


def check_acl(origin: str, room: RoomData) -> None:
    """403 M_FORBIDDEN for a server the room's `m.room.server_acl` denies."""
    acl = room.state.get(("m.room.server_acl", ""))
    if acl is not None and not server_allowed(origin, acl.pdu.get("content")):
        raise forbidden("Your server is denied by this room's server ACL")


def room_state_pdus(room: RoomData, user_id: str) -> list[JsonDict]:
    """The identifying state (full PDUs, as the spec asks since v1.16) and `user_id`'s
    member event."""
    pdus = [e.pdu for t in ROOM_STATE_TYPES if (e := room.state.get((t, ""))) is not None]
    if (member := room.state.get(("m.room.member", user_id))) is not None:
        pdus.append(member.pdu)
    return pdus


def add_signature(pdu: JsonDict, rv: RoomVersion, key: ServerSigningKey) -> JsonDict:
    """`pdu` with our signature over its redacted form added (an invite we counter-sign)."""
    pruned = prune_event(pdu, rv)
    pruned.pop("signatures", None)
    pruned.pop("unsigned", None)
    signed = dict(pdu)
    sigs = {k: dict(v) for k, v in (pdu.get("signatures") or {}).items()}
    sigs.setdefault(key.server_name, {})[key.key_id] = key.sign_bytes(canonical_json(pruned))
    signed["signatures"] = sigs
    return signed


class FederationRooms:
    def __init__(self, server_name: str, db: Database, rooms: RoomService, store: RoomStore,
                 writer: RoomWriter, builder: EventBuilder, cache: EventCache,
                 groups: StateGroups, keys: KeyFetcher, key: ServerSigningKey) -> None:
        self.server_name = server_name
        self._db = db
        self._rooms = rooms
        self._store = store
        self._writer = writer
        self._builder = builder
        self._cache = cache
        self._groups = groups
        self._keys = keys
        self._key = key
        self.forward: Forward | None = None

    # ------------------------------------------------------------------ helpers

    async def _joined_room(self, room_id: str) -> RoomData:
        room = await self._rooms.rooms.get(room_id)
        if room is None or ("m.room.create", "") not in room.state:
            raise not_found("This server is not in that room")
        return room

    async def servers_in_room(self, room_id: str) -> list[str]:
        room = await self._rooms.rooms.get(room_id)
        return servers_of(room) if room is not None else []

    async def _may_see(self, origin: str, room: RoomData, entry: EventEntry | None) -> bool:
        """The origin has a joined member now, or at the event; or the room is readable by
        anyone."""
        if origin in servers_of(room):
            return True
        vis = room.state.get(("m.room.history_visibility", ""))
        if vis is not None and vis.pdu.get("content", {}).get(
                "history_visibility") == "world_readable":
            return True
        if entry is not None and entry.state_group:
            state = await self._groups.state_ids(entry.state_group)
            members = [eid for (t, k), eid in state.items()
                       if t == "m.room.member" and domain(k) == origin]
            got = await self._cache.get_many(members)
            return any(e.membership == "join" for e in got.values())
        return False

    async def _servable(self, event_ids: Iterable[str]) -> list[EventEntry]:
        got = await self._cache.get_many(list(event_ids))
        return [e for e in got.values() if e.rejected is None and not e.soft_failed]

    async def auth_chain(self, event_ids: Iterable[str]) -> list[EventEntry]:
        """Every event in the auth chains of `event_ids` (not those events themselves unless
        they are in another's chain), oldest first by depth. In v12 rooms, whose events do
        not cite the create event, it is added: every auth chain rests on it."""
        seen: dict[str, EventEntry] = {}
        frontier = set()
        for e in (await self._cache.get_many(list(event_ids))).values():
            frontier.update(event_ids_of(e.pdu.get("auth_events")))
            room = await self._rooms.rooms.get(e.room_id)
            if room is not None and room.version.room_id_is_create_event_hash \
                    and e.type != "m.room.create":
                frontier.add(create_event_id_for_room(e.room_id))
        while frontier:
            got = await self._cache.get_many([i for i in frontier if i not in seen])
            frontier = set()
            for eid, e in got.items():
                if eid in seen:
                    continue
                seen[eid] = e
                frontier.update(a for a in event_ids_of(e.pdu.get("auth_events"))
                                if a not in seen)
        return sorted(seen.values(), key=lambda e: (e.depth, e.event_id))

    # ------------------------------------------------------------------ membership handshake

    async def make_membership(self, origin: str, room_id: str, user_id: str,
                              membership: str, versions: list[str] | None) -> JsonDict:
        """A make_join / make_leave / make_knock template for `user_id` of `origin`."""
        room = await self._joined_room(room_id)
        check_acl(origin, room)
        if versions is not None and room.version.identifier not in versions or (
                membership == "knock" and not room.version.knock_join_rule):
            raise MatrixError(400, Codes.INCOMPATIBLE_ROOM_VERSION,
                              "Your server does not support this room's version"
                              if membership != "knock" else "This room's version has no knocking",
                              room_version=room.version.identifier)
        if not is_valid_user_id(user_id) or domain(user_id) != origin:
            raise forbidden("The user is not of the requesting server")
        rv = room.version
        template = self._builder.template(
            rv, room_id, user_id, "m.room.member", {"membership": membership},
            state=room.state, extremities=room.extremities, depth=room.depth,
            state_key=user_id)
        try:
            check_auth(rv, {**template, "origin_server_ts": int(time.time() * 1000)},
                       room.state_pdus())
        except AuthError as e:
            raise forbidden(f"Not allowed to {membership}: {e}") from e
        if not rv.reference_hash_event_ids:  # v1/v2 cite events with their content hashes
            cited = await self._cache.get_many(event_ids_of(template["prev_events"])
                                               + event_ids_of(template["auth_events"]))
            hashes = {k: e.pdu["hashes"]["sha256"] for k, e in cited.items()}
            for name in ("prev_events", "auth_events"):
                template[name] = event_references(rv, template[name], hashes)
        return {"event": template, "room_version": rv.identifier}

    def _check_membership_pdu(self, origin: str, room: RoomData, event_id: str, pdu: Any,
                              membership: str) -> JsonDict:
        if not isinstance(pdu, dict):
            raise bad_json("The event must be an object")
        try:
            check_format(room.version, pdu)
            computed = compute_event_id(pdu, room.version)
        except (InvalidPdu, ValueError) as e:
            raise bad_json(f"Bad event: {e}") from e
        if computed != event_id:
            raise bad_json("The event id does not match the event")
        content = pdu.get("content")
        sender = pdu.get("sender")
        if pdu.get("type") != "m.room.member" or pdu.get("state_key") != sender or \
                not isinstance(content, dict) or content.get("membership") != membership:
            raise bad_json(f"Not a {membership} event of its sender")
        if pdu.get("room_id") != room.room_id:
            raise bad_json("The event is for another room")
        if domain(str(sender)) != origin:
            raise forbidden("The event's sender is not of the requesting server")
        return pdu

    async def send_membership(self, origin: str, room_id: str, event_id: str, pdu: Any,
                              membership: str) -> EventEntry:
        """send_join / send_leave / send_knock: accept the event and forward it to the room's
        others."""
        room = await self._joined_room(room_id)
        check_acl(origin, room)
        pdu = self._check_membership_pdu(origin, room, event_id, pdu, membership)
        async with self._rooms.locked(room_id) as room:
            try:
                entry = await self._writer.accept(room, event_id, pdu, self._keys)
            except InvalidPdu as e:
                raise forbidden(f"Event refused: {e}") from e
            except MissingEvents as e:
                raise bad_json(f"The event cites events unknown here: {e}") from e
        if entry.rejected is not None or entry.soft_failed:
            raise forbidden(f"Event not allowed: {entry.rejected or 'soft-failed'}")
        if self.forward is not None:
            await self.forward(entry, {origin})
        return entry

    async def join_response(self, entry: EventEntry) -> JsonDict:
        """send_join v2: the state before the join and its auth chain (members are never
        omitted, which the spec allows whatever `omit_members` asked)."""
        room = await self._joined_room(entry.room_id)
        state_ids = (await self._groups.state_ids(entry.state_group_before)
                     if entry.state_group_before else {})
        state = await self._servable(state_ids.values())
        chain = await self.auth_chain([e.event_id for e in state] + [entry.event_id])
        return {
            "origin": self.server_name,
            "state": [e.pdu for e in state],
            "auth_chain": [e.pdu for e in chain],
            "event": entry.pdu,
            "members_omitted": False,
            "servers_in_room": servers_of(room),
        }

    async def knock_response(self, entry: EventEntry) -> JsonDict:
        """send_knock: the state that lets the knocking user identify the room."""
        room = await self._joined_room(entry.room_id)
        return {"knock_room_state": room_state_pdus(room, "")}

    # ------------------------------------------------------------------ invites

    async def receive_invite(self, origin: str, room_id: str, event_id: str,
                             body: Any) -> JsonDict:
        """PUT /v2/invite: check the invite of our user, counter-sign it and keep it."""
        if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
            raise bad_json("Missing event")
        version = body.get("room_version")
        rv = ROOM_VERSIONS.get(version) if isinstance(version, str) else None
        if rv is None:
            raise MatrixError(400, Codes.INCOMPATIBLE_ROOM_VERSION,
                              f"Room version {version!r} is not supported here",
                              room_version=version)
        pdu: JsonDict = body["event"]
        try:
            check_format(rv, pdu)
            if compute_event_id(pdu, rv) != event_id:
                raise bad_json("The event id does not match the event")
        except (InvalidPdu, ValueError) as e:
            raise bad_json(f"Bad invite: {e}") from e
        try:
            await check_signatures(rv, pdu, event_id, self._keys)
        except (InvalidPdu, ValueError) as e:  # not signed by its sender's server
            raise forbidden(f"Bad invite: {e}") from e
        target = pdu.get("state_key")
        content = pdu.get("content", {})
        if pdu.get("type") != "m.room.member" or content.get("membership") != "invite" or \
                not isinstance(target, str) or not is_valid_user_id(target):
            raise bad_json("Not an invite")
        if domain(target) != self.server_name:
            raise bad_json("The invited user is not of this server")
        if self._rooms.invite_blocked is not None and await self._rooms.invite_blocked(target):
            raise MatrixError(403, "M_INVITE_BLOCKED", f"{target} does not accept invites")
        if domain(pdu["sender"]) != origin or pdu.get("room_id") != room_id:
            raise forbidden("The invite is not from the requesting server, or another room")
        if compute_content_hash(pdu) != pdu["hashes"]["sha256"]:
            raise bad_json("The invite's content hash does not match")
        known = await self._rooms.rooms.get(room_id)
        if known is not None:
            check_acl(origin, known)
        signed = add_signature(pdu, rv, self._key)
        # What the inviter sent to identify the room, shown in the invitee's sync while this
        # server is not in the room (kept in `unsigned`, which no signature covers).
        sent = remote_stripped_state(body.get("invite_room_state"))
        stored = {**signed, "unsigned": {**(signed.get("unsigned") or {}),
                                         "invite_room_state": sent}} if sent else signed
        room = await self._rooms.rooms.get(room_id)
        if room is None or ("m.room.create", "") not in room.state \
                or room.left_behind(self.server_name):
            # Not in the room: keep the invite as the room's out-of-band state. A room all our
            # users left: our copy stopped then, so it gives way to the invite as well.
            async with self._db.connection() as conn:
                await self._store.ensure_room(conn, room_id, rv.identifier, pdu["sender"],
                                              int(time.time() * 1000))
            async with self._rooms.locked(room_id) as room:
                if room.version.identifier != rv.identifier:
                    raise bad_json("Room version differs from the one known here")
                if room.left_behind(self.server_name):
                    await self._writer.forget_out_of_band(room, self.server_name)
                if ("m.room.create", "") not in room.state:
                    await self._writer.store_out_of_band(room, event_id, stored)
        # In the room already: the invite arrives in a transaction like any event.
        return {"event": signed}

    # ------------------------------------------------------------------ reads

    async def event(self, origin: str, event_id: str) -> JsonDict:
        got = await self._servable([event_id])
        if not got:
            raise not_found("Unknown event")
        entry = got[0]
        room = await self._rooms.rooms.get(entry.room_id)
        if room is not None:
            check_acl(origin, room)
        if room is None or not await self._may_see(origin, room, entry):
            raise forbidden("Your server may not see this event")
        return entry.pdu

    async def _event_in(self, origin: str, room_id: str, event_id: str) -> EventEntry:
        room = await self._joined_room(room_id)
        check_acl(origin, room)
        got = await self._servable([event_id])
        if not got or got[0].room_id != room_id:
            raise not_found("Unknown event in this room")
        if not await self._may_see(origin, room, got[0]):
            raise forbidden("Your server may not see this room")
        return got[0]

    async def state(self, origin: str, room_id: str, event_id: str) -> tuple[
            list[EventEntry], list[EventEntry]]:
        """The state before `event_id` and its auth chain (for /state and /state_ids)."""
        entry = await self._event_in(origin, room_id, event_id)
        ids = (await self._groups.state_ids(entry.state_group_before)
               if entry.state_group_before else {})
        state = await self._servable(ids.values())
        return state, await self.auth_chain([e.event_id for e in state])

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> list[EventEntry]:
        entry = await self._event_in(origin, room_id, event_id)
        return await self.auth_chain([entry.event_id])

    async def missing_events(self, origin: str, room_id: str, earliest: list[str],
                             latest: list[str], limit: int, min_depth: int) -> list[EventEntry]:
        """Walk back from `latest` along prev_events, not past `earliest` nor `min_depth`."""
        room = await self._joined_room(room_id)
        check_acl(origin, room)
        if not await self._may_see(origin, room, None):
            raise forbidden("Your server is not in this room")
        stop = set(earliest) | set(latest)
        frontier: list[str] = []
        for e in await self._servable(latest):
            if e.room_id == room_id:
                frontier += event_ids_of(e.pdu.get("prev_events"))
        found: dict[str, EventEntry] = {}
        while frontier and len(found) < limit:
            got = await self._servable([f for f in frontier if f not in stop and f not in found])
            frontier = []
            for e in sorted(got, key=lambda x: -x.depth):
                if len(found) >= limit or e.room_id != room_id or e.depth < min_depth:
                    continue
                found[e.event_id] = e
                frontier += event_ids_of(e.pdu.get("prev_events"))
        return sorted(found.values(), key=lambda e: (e.depth, e.event_id))

    async def backfill(self, origin: str, room_id: str, start: list[str],
                       limit: int) -> list[EventEntry]:
        """Up to `limit` events from `start` backwards (the start events included)."""
        room = await self._joined_room(room_id)
        check_acl(origin, room)
        if not await self._may_see(origin, room, None):
            raise forbidden("Your server is not in this room")
        found: dict[str, EventEntry] = {}
        frontier = list(start)
        while frontier and len(found) < limit:
            got = await self._servable([f for f in frontier if f not in found])
            frontier = []
            for e in sorted(got, key=lambda x: -x.depth):
                if len(found) >= limit or e.room_id != room_id:
                    continue
                found[e.event_id] = e
                frontier += event_ids_of(e.pdu.get("prev_events"))
        return sorted(found.values(), key=lambda e: (-e.depth, e.event_id))
