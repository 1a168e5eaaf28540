"""RoomService: the only entry point for local room writes (create, send, state, membership).

Each write takes the room's lock, builds the event (prev_events = forward extremities, auth events
from current state, depth, hashes, signature) and hands it to `RoomWriter` under the same lock.

The rules the client API states beyond the auth rules (who may be invited, kicked or unbanned,
which canonical aliases may be set, who may edit the alias directory) live here too, so that
every transport (HTTP, the sync WebSocket) that makes a change goes through the same method.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from homeserver.appservice.registry import AppServiceRegistry
from homeserver.errors import (
    Codes,
    MatrixError,
    bad_json,
    forbidden,
    invalid_param,
    not_found,
    suspended,
)
from homeserver.events.auth import AuthError, check_auth, redact_level, user_power_level
from homeserver.events.builder import EventBuilder
from homeserver.events.hashing import room_id_for_create_event
from homeserver.events.model import EventEntry
from homeserver.events.room_versions import ROOM_VERSIONS, RoomVersion
from homeserver.rooms.guests import guests_can_join
from homeserver.rooms.members import MembershipIndex
from homeserver.rooms.state import EventCache, RoomData, RoomRegistry
from homeserver.rooms.state_checks import bad_alias, new_canonical_aliases
from homeserver.rooms.store import RoomStore
from homeserver.rooms.writer import Batch, PersistEvent, RoomWriter
from homeserver.storage.database import Conn, Database
from homeserver.types import (
    JsonDict,
    Requester,
    is_valid_room_alias,
    is_valid_room_id,
    is_valid_user_id,
)
from homeserver.users.profiles import ProfileService

log = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, str]] = {
    "private_chat": {"join_rule": "invite", "history": "shared", "guest": "can_join"},
    "trusted_private_chat": {"join_rule": "invite", "history": "shared", "guest": "can_join"},
    "public_chat": {"join_rule": "public", "history": "shared", "guest": "forbidden"},
}


MAX_GROUP = 100  # messages written in one group commit at most
# Keys of a join request's body that never go into the member event as they are: the server
# sets the membership, the reason is checked on its own, the rest belong to other mechanisms
# (restricted joins, third-party invites).
JOIN_RESERVED = frozenset({"membership", "reason", "third_party_signed", "third_party_invite",
                           "join_authorised_via_users_server"})


@dataclass(slots=True)
class _Pending:
    sender: str
    etype: str
    content: JsonDict
    txn: tuple[str, str, str] | None
    ts: int | None  # origin_server_ts an application service asked for (spec v1.3)
    fut: asyncio.Future[EventEntry] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class RemoteRooms(Protocol):
    """Membership through other servers (homeserver/federation/membership.py), for rooms this
    server is not in and users of other servers."""

    async def resolve_alias(self, alias: str) -> tuple[str, list[str]]: ...

    async def join(self, requester: Requester, room_id: str, servers: Sequence[str],
                   content: JsonDict) -> str: ...

    async def leave(self, requester: Requester, room_id: str, content: JsonDict) -> str: ...

    async def knock(self, requester: Requester, room_id: str, servers: Sequence[str],
                    content: JsonDict) -> str: ...

    async def sign_invite(self, room: RoomData, event_id: str, pdu: JsonDict) -> JsonDict: ...


class _RoomIdTaken(Exception):
    """The create event's hash names a room that exists already (built again with a later
    timestamp)."""


def _fail(item: _Pending, e: BaseException) -> None:
    if not item.fut.done():
        item.fut.set_exception(e if isinstance(e, Exception) else RuntimeError("cancelled"))


class RoomService:
    def __init__(
        self, db: Database, server_name: str, builder: EventBuilder, rooms: RoomRegistry,
        store: RoomStore, writer: RoomWriter, cache: EventCache, default_version: str,
        members: MembershipIndex, profiles: ProfileService,
    ) -> None:
        self._members = members
        self._profiles = profiles
        self._db = db
        self.server_name = server_name
        self._builder = builder
        self.rooms = rooms
        self._store = store
        self._writer = writer
        self._cache = cache
        self._default_version = default_version
        self._txns: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._last_create_ts = 0
        self.remote: RemoteRooms | None = None  # set when federation is on
        # Rooms a server admin blocked (homeserver/admin/rooms.py): no local user may join.
        self.is_blocked: Callable[[str], Awaitable[bool]] | None = None
        # (user, room) -> whether it is the user's server notices room (homeserver/admin/
        # notices.py), whose invite cannot be rejected (spec "Server Notices").
        self.is_notice_room: Callable[[str, str], Awaitable[bool]] | None = None
        # Whether a local user blocks invites (spec v1.18; homeserver/users/invite_permission.py).
        self.invite_blocked: Callable[[str], Awaitable[bool]] | None = None
        # Application services (homeserver/appservice/): their exclusive alias namespaces, and
        # the queries that let an AS create an unknown user or alias in its namespace on
        # demand (alias -> whether the AS says it made it).
        self.appservices: AppServiceRegistry | None = None
        self.query_user: Callable[[str], Awaitable[None]] | None = None
        self.query_alias: Callable[[str], Awaitable[bool]] | None = None
        # (user, old room, new room, whether the join brought this server in): a local user
        # joined the replacement of an upgraded room; their state about the old room follows
        # (homeserver/rooms/upgrades.py).
        self.on_upgraded_join: Callable[[str, str, str, bool], Awaitable[None]] | None = None

    # ------------------------------------------------------------------ helpers

    async def get_room(self, room_id: str) -> RoomData:
        room = await self.rooms.get(room_id)
        if room is None:
            raise not_found("Unknown room")
        return room

    async def resolve_room(self, room_id_or_alias: str) -> str:
        """The id of a known room, given its id or an alias of this server's directory.

        Raises:
            MatrixError: 400 M_INVALID_PARAM for a malformed id or alias, 404 M_NOT_FOUND for
                an unknown room or alias.
        """
        if room_id_or_alias.startswith("#"):
            if not is_valid_room_alias(room_id_or_alias):
                raise invalid_param("Invalid room alias")
            async with self._db.connection() as conn:
                row = await self._store.get_alias(conn, room_id_or_alias)
            if row is None and self.query_alias is not None and await self.query_alias(
                    room_id_or_alias):
                async with self._db.connection() as conn:  # the AS made it: look again
                    row = await self._store.get_alias(conn, room_id_or_alias)
            if row is None:
                raise not_found("Room alias not found")
            return str(row["room_id"])
        if not is_valid_room_id(room_id_or_alias):
            raise invalid_param("Invalid room id")
        await self.get_room(room_id_or_alias)
        return room_id_or_alias

    async def _profile(self, user_id: str) -> JsonDict:
        """The display name and avatar a member event of `user_id` carries ({} if unknown)."""
        try:
            return await self._profiles.profile(user_id)
        except MatrixError:
            return {}

    def _build(self, room: RoomData | None, rv: RoomVersion, room_id: str | None,
               sender: str, etype: str, content: JsonDict, state_key: str | None = None,
               redacts: str | None = None, ts: int | None = None) -> tuple[str, JsonDict]:
        if room is None:
            return self._builder.build(rv, room_id, sender, etype, content, state=None,
                                       extremities=[], depth=0, state_key=state_key)
        known = None
        if not rv.reference_hash_event_ids:  # v1/v2 cite prev and auth events with hashes
            known = {e.event_id: e for e in room.state.values()}
            for e in room.recent[-20:]:
                known[e.event_id] = e
            for eid in room.extremities:
                if eid not in known and (hit := self._cache.peek(eid)) is not None:
                    known[eid] = hit
        return self._builder.build(rv, room_id, sender, etype, content, state=room.state,
                                   extremities=room.extremities, depth=room.depth,
                                   state_key=state_key, redacts=redacts, known=known,
                                   origin_server_ts=ts)

    async def _send_locked(
        self, room: RoomData, sender: str, etype: str, content: JsonDict,
        state_key: str | None = None, txn: tuple[str, str, str] | None = None,
        redacts: str | None = None, batch: Batch | None = None, ts: int | None = None,
    ) -> EventEntry:
        event_id, pdu = self._build(room, room.version, room.room_id, sender, etype, content,
                                    state_key, redacts, ts)
        try:
            return await self._writer.persist(room, PersistEvent(event_id, pdu, txn),
                                              batch=batch)
        except AuthError as e:
            raise forbidden(str(e)) from e

    async def send(
        self, room_id: str, sender: str, etype: str, content: JsonDict,
        state_key: str | None = None, txn: tuple[str, str, str] | None = None,
        redacts: str | None = None, ts: int | None = None,
    ) -> EventEntry:
        room = await self.get_room(room_id)
        if state_key is None and redacts is None:
            return await self._send_grouped(room, _Pending(sender, etype, content, txn, ts))
        async with self.locked(room_id) as room:
            return await self._send_locked(room, sender, etype, content, state_key, txn, redacts,
                                           ts=ts)

    @asynccontextmanager
    async def locked(self, room_id: str) -> AsyncIterator[RoomData]:
        """The room, with its writer lock held: the copy the registry holds now (a copy
        dropped from the cache while we waited for the lock is reloaded first)."""
        while True:
            room = await self.get_room(room_id)
            await room.lock.acquire()
            if self.rooms.loaded(room_id) is room:
                break
            room.lock.release()
        try:
            yield room
        finally:
            room.lock.release()

    # ------------------------------------------------------------------ group commit

    async def _send_grouped(self, room: RoomData, item: _Pending) -> EventEntry:
        """Messages that queue up behind a room's lock are written together: one transaction,
        one WAL flush for the lot. A message that arrives alone is written alone, at once."""
        room.pending.append(item)
        if room.flusher is None:
            room.flusher = asyncio.get_running_loop().create_task(self._flush(room))
        return await item.fut

    async def _flush(self, room: RoomData) -> None:
        try:
            while room.pending:
                async with room.lock:
                    if self.rooms.loaded(room.room_id) is not room:  # dropped from the cache
                        fresh = await self.rooms.get(room.room_id)
                        if fresh is not None and fresh is not room:
                            fresh.pending.extend(room.pending)
                            room.pending.clear()
                            if fresh.flusher is None:
                                fresh.flusher = asyncio.get_running_loop().create_task(
                                    self._flush(fresh))
                            break
                    items = room.pending[:MAX_GROUP]
                    del room.pending[:MAX_GROUP]
                    await self._persist_group(room, items)
        except BaseException as e:  # never leave a sender waiting forever
            for it in room.pending:
                _fail(it, e)
            room.pending.clear()
            raise
        finally:
            room.flusher = None

    async def _persist_group(self, room: RoomData, items: list[_Pending]) -> None:
        if len(items) > 1:
            snap = room.snapshot()
            batch = Batch()
            built: list[tuple[_Pending, EventEntry]] = []
            for it in items:
                try:
                    built.append((it, await self._send_locked(
                        room, it.sender, it.etype, it.content, txn=it.txn, batch=batch,
                        ts=it.ts)))
                except Exception as e:  # refused by auth or too large: fails alone
                    _fail(it, e)
            if not built:
                return
            try:
                await self._writer.commit(room, batch)
            except Exception:
                # E.g. a txn id sent twice at once: undo the batch in memory and write the
                # messages one by one, so that only the offending one fails.
                room.restore(snap)
                items = [it for it, _ in built]
            else:
                for it, entry in built:
                    if not it.fut.done():
                        it.fut.set_result(entry)
                return
        for it in items:
            try:
                entry = await self._send_locked(room, it.sender, it.etype, it.content, txn=it.txn,
                                                ts=it.ts)
            except Exception as e:
                _fail(it, e)
            else:
                if not it.fut.done():
                    it.fut.set_result(entry)

    # ------------------------------------------------------------------ messages

    async def send_message(
        self, requester: Requester, room_id: str, etype: str, content: JsonDict, txn_id: str,
        ts: int | None = None,
    ) -> str:
        """Idempotent per (user, device, txn_id): a resend returns the first event's id.
        `ts`: the origin_server_ts an application service chose (timestamp massaging).

        Raises:
            MatrixError: 404 for an unknown room, 403 when the auth rules refuse the event
                (e.g. the sender is not joined), 400 for content the room version refuses.
        """
        await self.get_room(room_id)
        if requester.suspended and etype != "m.room.redaction":
            raise suspended()
        if requester.shadow_banned:  # looks sent, goes nowhere (as Synapse does)
            return "$" + secrets.token_urlsafe(32)
        return await self._send_once(room_id, requester, txn_id, etype, content, ts=ts)

    async def _send_once(self, room_id: str, requester: Requester, txn_id: str, etype: str,
                         content: JsonDict, redacts: str | None = None,
                         ts: int | None = None) -> str:
        """Send unless (user, device, txn_id) was already used; then return that event's id.

        The txn id is written in the event's own statement, so a concurrent duplicate fails on
        the unique key and reads the winner's id instead of storing a second event."""
        key = (requester.user_id, requester.device_id, txn_id)
        known = self._txns.get(key)
        if known is not None:
            return known
        try:
            entry = await self.send(room_id, requester.user_id, etype, content, txn=key,
                                    redacts=redacts, ts=ts)
        except asyncpg.UniqueViolationError:
            async with self._db.connection() as conn:
                existing = await self._store.get_txn(conn, *key)
            if existing is None:
                raise
            return existing
        self._txns[key] = entry.event_id
        if len(self._txns) > 100_000:
            self._txns.popitem(last=False)
        return entry.event_id

    async def redact(
        self, requester: Requester, room_id: str, event_id: str, reason: str | None,
        txn_id: str,
    ) -> str:
        room = await self.get_room(room_id)
        content: JsonDict = {}
        if reason is not None:
            content["reason"] = reason
        if room.version.redacts_in_content:
            content["redacts"] = event_id
        target = (await self._cache.get_many([event_id])).get(event_id)
        if target is not None and target.room_id != room_id:
            raise MatrixError(400, Codes.INVALID_PARAM, "That event is in another room")
        if target is not None and target.sender != requester.user_id:
            if requester.suspended:
                raise suspended()
            state = room.state_pdus()
            if user_power_level(room.version, requester.user_id, state) < redact_level(state):
                raise forbidden("You may not redact other users' events")
        return await self._send_once(room_id, requester, "redact:" + txn_id, "m.room.redaction",
                                     content, redacts=event_id)

    async def set_state(
        self, requester: Requester, room_id: str, etype: str, state_key: str, content: JsonDict,
        ts: int | None = None,
    ) -> str:
        """Send one state event; re-sending the current content unchanged returns its id.

        Raises:
            MatrixError: 404 for an unknown room, 400 M_BAD_JSON for an m.room.member without
                a valid membership, 400 M_BAD_ALIAS / M_INVALID_PARAM for a canonical
                alias that is malformed or does not point at this room, 403 from the auth rules.
        """
        await self.get_room(room_id)
        if requester.suspended and not (etype == "m.room.member" and state_key == requester.user_id
                                        and content.get("membership") == "leave"):
            raise suspended()  # a suspended user may leave, not change a room
        if etype == "m.room.member":
            # Allowed by the spec (clients set a per-room display name this way); the auth
            # rules decide, as for the membership endpoints.
            membership = content.get("membership")
            if membership not in ("join", "invite", "leave", "ban", "knock"):
                raise bad_json("m.room.member content needs a valid 'membership'")
            extra = {k: v for k, v in content.items() if k != "membership"}
            return await self._update_membership(requester, room_id, state_key, membership,
                                                 extra=extra)
        async with self.locked(room_id) as room:
            current = room.state.get((etype, state_key))
            for alias in new_canonical_aliases(current, etype, state_key, content):
                async with self._db.connection() as conn:
                    row = await self._store.get_alias(conn, alias)
                if row is None or row["room_id"] != room.room_id:
                    raise bad_alias(alias)
            if (current is not None and current.sender == requester.user_id
                    and current.pdu.get("content") == content):
                return current.event_id
            entry = await self._send_locked(room, requester.user_id, etype, content, state_key,
                                            ts=ts)
        return entry.event_id

    # ------------------------------------------------------------------ membership

    async def _is_remote(self, room_id: str) -> bool:
        """Whether joining needs another server: a room this server is not in (unknown, known
        only through an invite, or left behind by all our users while others stayed)."""
        if self.remote is None or not is_valid_room_id(room_id):
            return False
        room = await self.rooms.get(room_id)
        return room is None or ("m.room.create", "") not in room.state \
            or room.left_behind(self.server_name)

    async def join(self, requester: Requester, room_id_or_alias: str,
                   reason: str | None = None, servers: Sequence[str] = (),
                   custom: JsonDict | None = None) -> str:
        """Join a room by id or alias with the requester's profile; returns the room id.
        A room this server is not in is joined through another server (federation).

        `custom` holds the other keys of the join request's body, which go into the member
        event's content as the reference server puts them (the spec leaves extra keys open;
        SyTest's "join with custom content" expects them): a `displayname` or `avatar_url`
        there is a per-room profile and wins over the global one; keys the server controls
        (JOIN_RESERVED) are dropped."""
        if requester.suspended:
            raise suspended()
        extra = {k: v for k, v in (custom or {}).items() if k not in JOIN_RESERVED}
        for key in ("displayname", "avatar_url"):
            if key in extra and not isinstance(extra[key], str):
                raise MatrixError(400, Codes.BAD_JSON, f"{key} must be a string")
        room_id_or_alias, via, content = await self._remotely(requester, room_id_or_alias,
                                                              reason, servers)
        if content is not None:
            assert self.remote is not None
            await self._check_not_blocked(room_id_or_alias)
            content.update(extra)
            joined = await self.remote.join(requester, room_id_or_alias, via, content)
            if requester.is_guest:
                await self._guest_joined_remotely(requester, joined)
            # This server was not in the room before this join.
            await self._joined_upgraded(requester.user_id, await self.get_room(joined), True)
            return joined
        room_id = await self.resolve_room(room_id_or_alias)
        await self._check_not_blocked(room_id)
        room = await self.get_room(room_id)
        was = room.membership(requester.user_id)
        await self._update_membership(requester, room_id, requester.user_id, "join", reason,
                                     extra=extra or None,
                                     profile=await self._profile(requester.user_id))
        if was != "join":
            await self._joined_upgraded(requester.user_id, room, False)
        return room_id

    async def _joined_upgraded(self, user_id: str, room: RoomData, server_joined: bool) -> None:
        """A local user joined the replacement of an upgraded room: their state about the old
        room follows them, and when this join brought this server into the room, so do the
        server's aliases and directory listing of the old room (homeserver/rooms/upgrades.py)."""
        create = room.state.get(("m.room.create", ""))
        predecessor = create.pdu.get("content", {}).get("predecessor") if create else None
        if (self.on_upgraded_join is not None and isinstance(predecessor, dict)
                and isinstance(predecessor.get("room_id"), str)):
            await self.on_upgraded_join(user_id, predecessor["room_id"], room.room_id,
                                        server_joined)

    async def _guest_joined_remotely(self, requester: Requester, room_id: str) -> None:
        """A room on another server shows its state only in the answer to the join itself:
        a guest who got into one that does not allow guests leaves it at once (403)."""
        room = await self.rooms.get(room_id)
        if room is None or guests_can_join(room):
            return
        try:
            await self.leave(requester, room_id)
        except MatrixError:
            pass  # refused by the room: the revocation rule still applies to it
        raise forbidden("Guest access is not allowed in this room")

    async def _check_not_blocked(self, room_id: str) -> None:
        if self.is_blocked is not None and await self.is_blocked(room_id):
            raise forbidden("This room has been blocked on this server")

    async def _remotely(self, requester: Requester, room_id_or_alias: str, reason: str | None,
                        servers: Sequence[str]) -> tuple[str, list[str], JsonDict | None]:
        """For a join or knock: the room id (a remote alias resolved) or local alias, the
        servers to try, and the member event's content when another server is needed (None
        for a room this server is in)."""
        via = list(servers)
        if self.remote is None:
            return room_id_or_alias, via, None
        alias_server = room_id_or_alias.partition(":")[2]
        if room_id_or_alias.startswith("#") and alias_server != self.server_name:
            if not is_valid_room_alias(room_id_or_alias):
                raise invalid_param("Invalid room alias")
            room_id_or_alias, more = await self.remote.resolve_alias(room_id_or_alias)
            via += more + [alias_server]
        if not await self._is_remote(room_id_or_alias):
            return room_id_or_alias, via, None
        content: JsonDict = {k: v for k, v in (await self._profile(
            requester.user_id)).items() if v is not None}
        if reason is not None:
            content["reason"] = reason
        return room_id_or_alias, via, content

    async def knock(self, requester: Requester, room_id_or_alias: str,
                    reason: str | None = None, servers: Sequence[str] = ()) -> str:
        """Knock on a room by id or alias; returns the room id. A room this server is not in
        is knocked on through another server (federation)."""
        if requester.suspended:
            raise suspended()
        room_id_or_alias, via, content = await self._remotely(requester, room_id_or_alias,
                                                              reason, servers)
        if content is not None:
            assert self.remote is not None
            return await self.remote.knock(requester, room_id_or_alias, via, content)
        room_id = await self.resolve_room(room_id_or_alias)
        await self._update_membership(requester, room_id, requester.user_id, "knock", reason,
                                     profile=await self._profile(requester.user_id))
        return room_id

    async def invite(self, requester: Requester, room_id: str, target: str,
                     reason: str | None = None, is_direct: bool = False) -> str:
        """Invite `target`, whose member event carries their profile; refused (403) for a
        user who is already joined or is banned, which the auth rules alone would allow or
        report less clearly."""
        if requester.suspended:
            raise suspended()
        room = await self.get_room(room_id)
        if requester.shadow_banned:  # looks sent, goes nowhere (as Synapse does)
            return "$" + secrets.token_urlsafe(32)
        await self._check_not_blocked(room_id)
        if room.membership(target) in ("join", "ban"):
            raise forbidden(f"{target} is already in the room or banned")
        if self.remote is not None and target.partition(":")[2] != self.server_name:
            return await self._invite_remote(requester, room_id, target, reason, is_direct)
        if self.query_user is not None:  # an AS's user it has not made yet: ask it to
            await self.query_user(target)
        return await self._update_membership(
            requester, room_id, target, "invite", reason,
            extra={"is_direct": True} if is_direct else None,
            profile=await self._profile(target))

    async def _invite_remote(self, requester: Requester, room_id: str, target: str,
                             reason: str | None, is_direct: bool) -> str:
        """The invited user's server counter-signs the invite before it is persisted; the
        room's lock is not held while it is asked."""
        assert self.remote is not None
        if not is_valid_user_id(target):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user id")
        content: JsonDict = {"membership": "invite"}
        if reason is not None:
            content["reason"] = reason
        if is_direct:
            content["is_direct"] = True
        return await self._invite_remote_as(requester.user_id, room_id, target, content)

    async def _invite_remote_as(self, sender: str, room_id: str, target: str,
                                content: JsonDict) -> str:
        assert self.remote is not None
        async with self.locked(room_id) as room:
            event_id, pdu = self._build(room, room.version, room_id, sender,
                                        "m.room.member", content, target)
            try:
                check_auth(room.version, pdu, room.state_pdus())
            except AuthError as e:
                raise forbidden(str(e)) from e
        signed = await self.remote.sign_invite(room, event_id, pdu)
        async with self.locked(room_id) as room:
            try:
                entry = await self._writer.persist(room, PersistEvent(event_id, signed))
            except AuthError as e:
                raise forbidden(str(e)) from e
        return entry.event_id

    async def redeem_third_party_invite(self, room_id: str, sender: str, target: str,
                                        content: JsonDict) -> str:
        """Persist the m.room.member invite that redeems a third-party invite
        (homeserver/identity/invites.py). Its sender is whoever sent the
        m.room.third_party_invite, who may have left since: the auth rules check the
        identity server's signature instead of the sender's membership."""
        room = await self.get_room(room_id)
        if room.membership(target) in ("join", "ban"):
            raise forbidden(f"{target} is already in the room or banned")
        if self.remote is not None and target.partition(":")[2] != self.server_name:
            # A user of another server: theirs counter-signs (and learns of) the invite.
            return await self._invite_remote_as(sender, room_id, target, content)
        async with self.locked(room_id) as room:
            entry = await self._send_locked(room, sender, "m.room.member", content, target)
        return entry.event_id

    async def kick(self, requester: Requester, room_id: str, target: str,
                   reason: str | None = None) -> str:
        """Kick `target` (or withdraw their invite or knock); 403 for a user with no
        membership, and for a banned one (a kick must not lift a ban: that is unban)."""
        room = await self.get_room(room_id)
        current = room.membership(target)
        if current == "ban":
            raise forbidden(f"{target} is banned: unban them instead")
        if current not in ("join", "invite", "knock"):
            raise forbidden(f"{target} is not in the room")
        return await self._update_membership(requester, room_id, target, "leave", reason)

    async def ban(self, requester: Requester, room_id: str, target: str,
                  reason: str | None = None) -> str:
        return await self._update_membership(requester, room_id, target, "ban", reason)

    async def unban(self, requester: Requester, room_id: str, target: str,
                    reason: str | None = None) -> str:
        """Lift a ban (membership back to leave); 403 unless `target` is banned, so that an
        unban never kicks."""
        room = await self.get_room(room_id)
        if room.membership(target) != "ban":
            raise forbidden("User is not banned")
        return await self._update_membership(requester, room_id, target, "leave", reason)

    async def leave(self, requester: Requester, room_id: str, reason: str | None = None) -> str:
        """Leave, or reject an invite or withdraw a knock (403 if never in the room). An
        invite to a room this server is not in is rejected through the inviting server."""
        if self.remote is not None and is_valid_room_id(room_id):
            room = await self.rooms.get(room_id)
            if room is not None and ("m.room.create", "") not in room.state:
                content: JsonDict = {} if reason is None else {"reason": reason}
                return await self.remote.leave(requester, room_id, content)
        if self.is_notice_room is not None and is_valid_room_id(room_id):
            room = await self.rooms.get(room_id)
            if (room is not None and room.membership(requester.user_id) == "invite"
                    and await self.is_notice_room(requester.user_id, room_id)):
                raise MatrixError(403, Codes.CANNOT_LEAVE_SERVER_NOTICE_ROOM,
                                  "You cannot reject the invite to your server notices room")
        return await self._update_membership(requester, room_id, requester.user_id, "leave",
                                            reason)

    async def update_profile(self, requester: Requester, user_id: str) -> None:
        """Mirror `user_id`'s current profile into their member event in every room they are
        joined to (spec "Profiles"); a room that refuses the change is skipped."""
        profile = await self._profiles.profile(user_id)
        for room_id in await self._members.joined_rooms(user_id):
            try:
                await self._update_membership(
                    requester, room_id, user_id, "join",
                    profile={"displayname": profile.get("displayname"),
                             "avatar_url": profile.get("avatar_url")})
            except MatrixError:
                continue

    async def _update_membership(
        self, requester: Requester, room_id: str, target: str, membership: str,
        reason: str | None = None, extra: JsonDict | None = None,
        profile: JsonDict | None = None,
    ) -> str:
        await self.get_room(room_id)
        if not is_valid_user_id(target):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user id")
        if membership == "invite" and await self._blocks_invites(target):
            raise MatrixError(403, "M_INVITE_BLOCKED", f"{target} does not accept invites")
        content: JsonDict = {"membership": membership}
        if profile:
            content.update({k: v for k, v in profile.items() if v is not None})
        if reason is not None:
            content["reason"] = reason
        if extra:
            content.update(extra)
        async with self.locked(room_id) as room:
            current = room.membership(target)
            if membership == "join" and current == "join" and requester.user_id == target:
                ev = room.state[("m.room.member", target)]
                same = all(ev.pdu["content"].get(k) == v for k, v in content.items())
                if same:
                    return ev.event_id
            if membership == "leave" and requester.user_id == target and current is None:
                raise forbidden("You are not a member of this room")
            if (membership == "join" and requester.is_guest and current != "join"
                    and not guests_can_join(room)):
                # Spec "Guest access": only rooms whose m.room.guest_access is can_join.
                raise forbidden("Guest access is not allowed in this room")
            entry = await self._send_locked(room, requester.user_id, "m.room.member", content,
                                            target)
        return entry.event_id

    async def _blocks_invites(self, user_id: str) -> bool:
        return (self.invite_blocked is not None and is_valid_user_id(user_id)
                and user_id.partition(":")[2] == self.server_name
                and await self.invite_blocked(user_id))

    async def leave_all(self, requester: Requester) -> None:
        """Leave (or reject) every room the user is in, for account deactivation."""
        for room_id, m in list((await self._members.rooms_of(requester.user_id)).items()):
            if m.membership in ("join", "invite", "knock"):
                try:
                    await self._update_membership(requester, room_id, requester.user_id, "leave")
                except MatrixError:
                    pass  # the leave may be refused by the room; deactivation goes on

    async def forget(self, requester: Requester, room_id: str) -> None:
        room = await self.rooms.get(room_id)
        if room is not None and room.membership(requester.user_id) in ("join", "invite", "knock"):
            raise MatrixError(400, Codes.UNKNOWN, "You must leave the room before forgetting it")
        async with self._db.connection() as conn:
            await self._store.forget(conn, requester.user_id, room_id)

    # ------------------------------------------------------------------ create

    def new_room_id(self) -> str:
        """A fresh random room id, for versions whose room id is not the create event's hash
        (a room upgrade names the new room in the tombstone before creating it)."""
        return "!" + "".join(secrets.choice(string.ascii_letters) for _ in range(18)) \
            + ":" + self.server_name

    async def create_room(self, requester: Requester, body: JsonDict,
                          room_id: str | None = None) -> str:
        """createRoom: the room with its initial state, the creator joined with their profile.

        A v12 room id is its create event's hash; in the unlikely case another process made
        the same create event (same creator, content and millisecond), it is built again.
        `room_id` (from new_room_id) is the id of a room of an earlier version."""
        if requester.suspended:
            raise suspended()
        for _ in range(3):
            try:
                return await self._create_room_once(requester, body, room_id)
            except _RoomIdTaken:
                continue
        raise MatrixError(503, Codes.UNKNOWN, "Could not allocate a room id; please retry")

    async def build_state(self, requester: Requester, room_id: str, etype: str,
                          state_key: str, content: JsonDict) -> tuple[str, JsonDict]:
        """A state event built on the room's current extremities and checked against its auth
        rules, not yet persisted (persist_built does that): a room upgrade names the old
        room's tombstone in the new room's create event before the tombstone is sent.

        Raises:
            MatrixError: 404 for an unknown room, 403 from the auth rules.
        """
        async with self.locked(room_id) as room:
            event_id, pdu = self._build(room, room.version, room_id, requester.user_id, etype,
                                        content, state_key)
            try:
                check_auth(room.version, pdu, room.state_pdus())
            except AuthError as e:
                raise forbidden(str(e)) from e
        return event_id, pdu

    async def persist_built(self, room_id: str, event_id: str, pdu: JsonDict) -> str:
        """Persist an event from build_state (events sent meanwhile make it a fork, which the
        writer resolves as for any event built on fewer extremities)."""
        async with self.locked(room_id) as room:
            try:
                entry = await self._writer.persist(room, PersistEvent(event_id, pdu))
            except AuthError as e:
                raise forbidden(str(e)) from e
        return entry.event_id

    async def _create_room_once(self, requester: Requester, body: JsonDict,
                                chosen_id: str | None = None) -> str:
        version_id = body.get("room_version", self._default_version)
        rv = ROOM_VERSIONS.get(version_id) if isinstance(version_id, str) else None
        if rv is None:
            raise MatrixError(400, Codes.UNSUPPORTED_ROOM_VERSION,
                              f"Room version {version_id!r} is not supported")
        visibility = body.get("visibility", "private")
        preset_name = body.get("preset") or (
            "public_chat" if visibility == "public" else "private_chat")
        preset = PRESETS[preset_name]
        creator = requester.user_id
        invites = list(dict.fromkeys(body.get("invite", [])))
        for u in invites:
            if not is_valid_user_id(u):
                raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid user id {u!r}")
        # Users who block invites are left out; the room is made all the same (spec v1.18).
        invites = [u for u in invites if not await self._blocks_invites(u)]
        remote_invites = [u for u in invites if self.remote is not None
                          and u.partition(":")[2] != self.server_name]

        alias = None
        if body.get("room_alias_name") is not None:
            local = body["room_alias_name"]
            if not local or ":" in local or "#" in local or any(c.isspace() for c in local):
                raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room_alias_name")
            alias = f"#{local}:{self.server_name}"
            if self.appservices is not None:  # M_EXCLUSIVE inside an AS's namespace
                self.appservices.check_alias_allowed(alias, requester.app_service)
            async with self._db.connection() as conn:
                if await self._store.get_alias(conn, alias) is not None:
                    raise MatrixError(400, Codes.ROOM_IN_USE, "Room alias already taken")

        profile = await self._profile(creator)
        create_content: JsonDict = dict(body.get("creation_content") or {})
        create_content["room_version"] = rv.identifier
        if not rv.implicit_room_creator:
            create_content["creator"] = creator
        if rv.creators_have_infinite_power and preset_name == "trusted_private_chat" and invites:
            extra = [u for u in invites if u != creator]
            if extra:
                create_content.setdefault("additional_creators", extra)

        if rv.room_id_is_create_event_hash:
            # The room id is the create event's hash: two rooms created by one user with the
            # same content in the same millisecond would get one id, so every create event of
            # this process takes a later timestamp than the one before.
            ts = max(int(time.time() * 1000), self._last_create_ts + 1)
            self._last_create_ts = ts
            create_id, create_pdu = self._builder.build(
                rv, None, creator, "m.room.create", create_content, state=None, extremities=[],
                depth=0, state_key="", origin_server_ts=ts)
            room_id = room_id_for_create_event(create_id)
            if self.rooms.loaded(room_id) is not None:
                raise _RoomIdTaken
        else:
            room_id = chosen_id or self.new_room_id()
            if chosen_id is not None and await self.rooms.get(chosen_id) is not None:
                raise MatrixError(400, Codes.ROOM_IN_USE, "Room id already taken")
            create_id, create_pdu = self._build(None, rv, room_id, creator, "m.room.create",
                                                create_content, "")

        room = RoomData(room_id=room_id, version=rv, state={}, state_group=0, chain_len=0,
                        extremities=[], depth=0)
        batch = Batch()

        async def add_alias(conn: Conn) -> None:
            if alias is not None and not await self._store.create_alias(conn, alias, room_id,
                                                                        creator):
                raise MatrixError(400, Codes.ROOM_IN_USE, "Room alias already taken")

        async with room.lock:
            # The room is registered only once committed; until then nobody can find it.
            try:
                await self._create_locked(room, rv, creator, create_id, create_pdu, body,
                                          preset_name, preset, invites, alias, profile,
                                          visibility == "public", batch,
                                          [u for u in invites if u not in remote_invites])
                self.rooms.add(room)
                await self._writer.commit(room, batch, add_alias)
            except BaseException as e:
                self._writer.abort(batch)
                if self.rooms.loaded(room_id) is room:
                    self.rooms.drop(room_id)
                if isinstance(e, asyncpg.UniqueViolationError) and \
                        e.constraint_name == "rooms_pkey":
                    raise _RoomIdTaken from e
                raise
        # A remote invitee's server must counter-sign the invite (spec: /v2/invite), which
        # cannot happen inside the creation batch: those invites go out once the room exists.
        # One unreachable server does not undo the room or the other invites (logged instead).
        for u in remote_invites:
            try:
                await self._invite_remote(requester, room_id, u, None, bool(body.get("is_direct")))
            except Exception as e:  # noqa: BLE001 - any failure of one remote invite
                log.warning("createRoom %s: invite of %s failed: %s", room_id, u, e)
        return room_id

    async def _create_locked(
        self, room: RoomData, rv: RoomVersion, creator: str, create_id: str,
        create_pdu: JsonDict, body: JsonDict, preset_name: str, preset: dict[str, str],
        invites: list[str], alias: str | None, profile: JsonDict | None, is_public: bool,
        batch: Batch, local_invites: list[str],
    ) -> None:
        try:
            await self._writer.persist(
                room, PersistEvent(create_id, create_pdu, new_room=(creator, is_public)),
                batch=batch)
        except AuthError as e:
            raise MatrixError(400, Codes.BAD_JSON, f"Invalid creation_content: {e}") from e

        async def state(etype: str, content: JsonDict, key: str = "") -> None:
            try:
                await self._send_locked(room, creator, etype, content, key, batch=batch)
            except MatrixError as e:
                raise MatrixError(400, Codes.INVALID_PARAM if e.errcode == Codes.FORBIDDEN
                                  else e.errcode, f"Could not create {etype}: {e.error}") from e

        join: JsonDict = {"membership": "join"}
        if profile:
            join.update({k: v for k, v in profile.items() if v is not None})
        await state("m.room.member", join, creator)

        users: dict[str, int] = {} if rv.creators_have_infinite_power else {creator: 100}
        if preset_name == "trusted_private_chat":
            for u in invites:
                if not rv.creators_have_infinite_power:
                    users[u] = 100
        pl: JsonDict = {
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50, "m.room.power_levels": 100,
                "m.room.history_visibility": 100, "m.room.canonical_alias": 50,
                "m.room.avatar": 50, "m.room.tombstone": 100, "m.room.server_acl": 100,
                "m.room.encryption": 100,
            },
            "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50,
            "invite": 50 if preset_name == "public_chat" else 0,
            "notifications": {"room": 50},
        }
        override = body.get("power_level_content_override")
        if isinstance(override, dict):
            pl.update(override)
        await state("m.room.power_levels", pl)
        if alias is not None:
            await state("m.room.canonical_alias", {"alias": alias})
        initial = {(s.get("type"), s.get("state_key", "")): s.get("content", {})
                   for s in body.get("initial_state", [])}
        defaults = [
            ("m.room.join_rules", {"join_rule": preset["join_rule"]}),
            ("m.room.history_visibility", {"history_visibility": preset["history"]}),
        ]
        if preset["guest"] == "can_join":
            defaults.append(("m.room.guest_access", {"guest_access": "can_join"}))
        for etype, content in defaults:
            if (etype, "") not in initial:
                await state(etype, content)
        for (etype, key), content in initial.items():
            if etype in ("m.room.create", "m.room.power_levels", "m.room.member"):
                continue
            await state(str(etype), content, str(key))
        if body.get("name") is not None:
            await state("m.room.name", {"name": body["name"]})
        if body.get("topic") is not None:
            await state("m.room.topic", {"topic": body["topic"]})
        for u in local_invites:
            invite: JsonDict = {"membership": "invite"}
            if body.get("is_direct"):
                invite["is_direct"] = True
            await self._send_locked(room, creator, "m.room.member", invite, u, batch=batch)

    # ------------------------------------------------------------------ directory

    async def create_alias(self, requester: Requester, alias: str, room_id: str) -> None:
        """PUT /directory/room/{alias}: members (and admins) may point a new alias at a room.

        Raises:
            MatrixError: 404 unknown room, 403 not joined, 409 alias already exists.
        """
        room = await self.get_room(room_id)
        if self.appservices is not None:  # M_EXCLUSIVE inside another's namespace
            self.appservices.check_alias_allowed(alias, requester.app_service)
        owned = self.appservices is not None and self.appservices.owns_alias(
            alias, requester.app_service)  # an AS manages its aliases from outside the room
        if room.membership(requester.user_id) != "join" and not requester.is_admin \
                and not owned:
            raise forbidden("You must be in the room to add an alias")
        async with self._db.connection() as conn:
            if not await self._store.create_alias(conn, alias, room_id, requester.user_id):
                raise MatrixError(409, Codes.UNKNOWN, "Room alias already exists")

    async def delete_alias(self, requester: Requester, alias: str) -> None:
        """DELETE /directory/room/{alias}: its creator, an admin, or a room moderator (power
        level 50) may delete it.

        Raises:
            MatrixError: 404 unknown alias, 403 anyone else.
        """
        async with self._db.connection() as conn:
            row = await self._store.get_alias(conn, alias)
        if row is None:
            raise not_found("Room alias not found")
        owned = self.appservices is not None and self.appservices.owns_alias(
            alias, requester.app_service)
        if row["creator"] != requester.user_id and not requester.is_admin and not owned:
            room = await self.get_room(row["room_id"])
            if await self.power_level(room, requester.user_id) < 50:
                raise forbidden("You may not delete this alias")
        async with self._db.connection() as conn:
            await self._store.delete_alias(conn, alias)
        await self._drop_canonical_alias(requester, str(row["room_id"]), alias)

    async def _drop_canonical_alias(self, requester: Requester, room_id: str,
                                    alias: str) -> None:
        """A deleted alias no longer names its room: it leaves the room's m.room.canonical_alias
        (as the reference server does), when the deleter may change that event; otherwise
        the event keeps it (an alias that resolves to nothing, which clients tolerate)."""
        room = await self.get_room(room_id)
        current = room.state.get(("m.room.canonical_alias", ""))
        if current is None:
            return
        content = dict(current.pdu.get("content", {}))
        alt = content.get("alt_aliases")
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        if isinstance(alt, list) and alias in alt:
            content["alt_aliases"] = [a for a in alt if a != alias]
            changed = True
        if not changed:
            return
        try:
            await self.set_state(requester, room_id, "m.room.canonical_alias", "", content)
        except MatrixError:  # not allowed to send it: the alias is gone all the same
            pass

    async def set_public(self, requester: Requester, room_id: str, is_public: bool) -> None:
        """PUT /directory/list/room/{roomId}: moderators (power level 50) and admins may list
        or unlist a room.

        Raises:
            MatrixError: 404 unknown room, 403 anyone else.
        """
        room = await self.get_room(room_id)
        if await self.power_level(room, requester.user_id) < 50 and not requester.is_admin:
            raise forbidden("You may not change this room's visibility")
        async with self._db.connection() as conn:
            await self._store.set_public(conn, room.room_id, is_public)

    def directory_entry(self, room: RoomData) -> JsonDict:
        """A /publicRooms chunk entry, read from current state in memory."""
        def content(t: str) -> JsonDict:
            ev = room.state.get((t, ""))
            return ev.pdu.get("content", {}) if ev is not None else {}

        entry: JsonDict = {
            "room_id": room.room_id,
            "num_joined_members": len(room.joined_members()),
            "world_readable": content("m.room.history_visibility").get(
                "history_visibility") == "world_readable",
            "guest_can_join": content("m.room.guest_access").get("guest_access") == "can_join",
            "join_rule": content("m.room.join_rules").get("join_rule", "invite"),
            "room_type": content("m.room.create").get("type"),
        }
        for key, t, attr in (("name", "m.room.name", "name"), ("topic", "m.room.topic", "topic"),
                              ("avatar_url", "m.room.avatar", "url"),
                              ("canonical_alias", "m.room.canonical_alias", "alias")):
            v = content(t).get(attr)
            if isinstance(v, str):
                entry[key] = v
        return {k: v for k, v in entry.items() if v is not None}

    # ------------------------------------------------------------------ reads

    async def power_level(self, room: RoomData, user_id: str) -> Any:
        return user_power_level(room.version, user_id, room.state_pdus())
