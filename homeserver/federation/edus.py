"""EDUs (server-server spec "EDUs"): routing inbound ones to their handlers, and the real-time
ones both ways — m.typing, m.receipt and m.presence.

Inbound, each EDU lands in the service that keeps the same data for local users (TypingService,
ReceiptService, PresenceService), so /sync and WebSocket sync wake on it as on a local change.
Every EDU is checked before it is used: the user it speaks for must belong to the origin, and a
room EDU is ignored when the room's server ACL denies the origin (the spec's rule for m.typing
and m.receipt) or the user is not joined to the room here. A bad EDU is dropped alone; the
transaction carrying it is still acknowledged (EDUs have no per-item answer).

Outbound, these are ephemeral (queued in memory per destination, homeserver/federation/sender.py):
- m.typing to the servers in the room, on each local start (which renews their timeout) and
  stop, including a stop when a local user's notice times out;
- m.receipt for public read receipts (threaded ones carry `thread_id` in their data);
- m.presence only to servers sharing a room with the user, one entry per user coalesced until
  sent, and not at all when `presence.federation` is false (incoming ones are then ignored);
  also when a server gets its first member into a room with ours, and when ours join.
  A user who stays online is sent again every 25 minutes, and a remote user not heard of for
  30 minutes is taken as offline (Synapse's FEDERATION_PING_INTERVAL / FEDERATION_TIMEOUT: a
  server that crashed never says its users went offline).
Room EDUs are not sent to servers the room's ACL denies (they must ignore them anyway);
events still go to them, as the spec says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.federation.acl import server_allowed
from homeserver.federation.sender import FederationSender
from homeserver.federation.serving import domain, servers_of
from homeserver.presence.service import PresenceService
from homeserver.receipts.service import ReceiptService
from homeserver.rooms.members import MembershipIndex
from homeserver.rooms.state import RoomData, RoomRegistry
from homeserver.rooms.typing import TypingService
from homeserver.rooms.writer import MembershipHook
from homeserver.types import JsonDict, is_valid_event_id, is_valid_user_id

log = logging.getLogger(__name__)

EduHandler = Callable[[str, Any], Awaitable[None]]  # (origin, content)
MAX_RECEIPT_EVENTS = 10  # event ids of one user's receipt considered
PRESENCE_PING_MS = 25 * 60_000
PRESENCE_REMOTE_TIMEOUT_MS = 30 * 60_000


def _now() -> int:
    return int(time.time() * 1000)


def allowed(origin: str, room: RoomData) -> bool:
    acl = room.state.get(("m.room.server_acl", ""))
    return acl is None or server_allowed(origin, acl.pdu.get("content"))


def _presence_entry(user_id: str, content: JsonDict) -> JsonDict:
    entry = {"user_id": user_id, "presence": content["presence"],
             "currently_active": bool(content.get("currently_active")),
             "last_active_ago": content.get("last_active_ago", 0)}  # required
    if "status_msg" in content:
        entry["status_msg"] = content["status_msg"]
    return entry


class EduRouter:
    """Hands each inbound EDU to the handler of its type; unknown types are ignored."""

    def __init__(self) -> None:
        self.handlers: dict[str, EduHandler] = {}

    async def receive(self, origin: str, edus: list[Any]) -> None:
        for edu in edus:
            if not isinstance(edu, dict) or not isinstance(edu.get("edu_type"), str):
                continue
            handler = self.handlers.get(edu["edu_type"])
            if handler is None:
                continue
            try:
                await handler(origin, edu.get("content"))
            except Exception:  # one bad EDU never fails the others or the transaction
                log.exception("EDU %s from %s failed", edu["edu_type"], origin)


class RealtimeEdus:
    def __init__(self, server_name: str, sender: FederationSender, rooms: RoomRegistry,
                 members: MembershipIndex, typing: TypingService, receipts: ReceiptService,
                 presence: PresenceService, presence_federation: bool) -> None:
        self.server_name = server_name
        self._sender = sender
        self._rooms = rooms
        self._members = members
        self._typing = typing
        self._receipts = receipts
        self._presence = presence
        self._presence_federation = presence_federation and presence.enabled
        self._tasks: set[asyncio.Task[None]] = set()
        self._sent: dict[str, int] = {}  # local user -> when their presence was last sent
        self._heard: dict[str, int] = {}  # remote user (not offline) -> when last heard of
        self.ping_ms = PRESENCE_PING_MS
        self.remote_timeout_ms = PRESENCE_REMOTE_TIMEOUT_MS
        self.check_interval_s = 60.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._presence_federation:
            self._task = asyncio.get_running_loop().create_task(self._presence_timers())

    async def stop(self) -> None:
        for t in [self._task, *self._tasks]:
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        self._task = None

    async def _presence_timers(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_s)
            try:
                await self.check_presence(_now())
            except Exception:
                log.exception("presence pings and timeouts failed")

    async def check_presence(self, now: int) -> None:
        """Send online users again; take remote users not heard of for long as offline."""
        for user_id, at in list(self._sent.items()):
            if now - at >= self.ping_ms:
                content = await self._presence.get(user_id, user_id)
                if content.get("presence") == "offline":
                    self._sent.pop(user_id, None)
                else:
                    await self._send_presence(user_id, content)
        for user_id, at in list(self._heard.items()):
            if now - at >= self.remote_timeout_ms:
                self._heard.pop(user_id, None)
                await self._presence.apply_remote(user_id, "offline", None, None)

    def register(self, router: EduRouter, membership_hooks: list[MembershipHook]) -> None:
        router.handlers["m.typing"] = self.receive_typing
        router.handlers["m.receipt"] = self.receive_receipt
        if self._presence_federation:
            router.handlers["m.presence"] = self.receive_presence
        self._typing.on_local.append(self.typing_changed)
        self._receipts.on_local.append(self.receipt_written)
        if self._presence_federation:
            self._presence.on_local.append(self.presence_changed)
            membership_hooks.append(self.on_membership)

    # ------------------------------------------------------------------ outbound

    def _room_destinations(self, room: RoomData) -> list[str]:
        return [s for s in servers_of(room) if s != self.server_name and allowed(s, room)]

    def typing_changed(self, room_id: str, user_id: str, typing: bool) -> None:
        if domain(user_id) != self.server_name:
            return
        room = self._rooms.loaded(room_id)
        if room is None:
            return
        self._sender.send_ephemeral(
            self._room_destinations(room), ("m.typing", room_id, user_id), "m.typing",
            {"room_id": room_id, "user_id": user_id, "typing": typing})

    def receipt_written(self, room_id: str, receipt_type: str, user_id: str, event_id: str,
                        data: JsonDict) -> None:
        room = self._rooms.loaded(room_id)
        if room is None:
            return
        thread = data.get("thread_id", "")
        self._sender.send_ephemeral(
            self._room_destinations(room), ("m.receipt", room_id, receipt_type, user_id,
                                            str(thread)), "m.receipt",
            {room_id: {receipt_type: {user_id: {"event_ids": [event_id], "data": data}}}})

    def presence_changed(self, user_id: str, content: JsonDict) -> None:
        if domain(user_id) != self.server_name:
            return
        task = asyncio.get_running_loop().create_task(self._send_presence(user_id, content))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_presence(self, user_id: str, content: JsonDict) -> None:
        if content.get("presence") == "offline":
            self._sent.pop(user_id, None)
        else:
            self._sent[user_id] = _now()
        servers: set[str] = set()
        for room_id in await self._members.joined_rooms(user_id):
            room = await self._rooms.get(room_id)
            if room is not None:
                servers.update(servers_of(room))
        servers.discard(self.server_name)
        if servers:
            self._sender.send_ephemeral(servers, ("m.presence", user_id), "m.presence",
                                        _presence_entry(user_id, content))

    def on_membership(self, room: RoomData, user_id: str, membership: str) -> None:
        """RoomWriter hook: a server that just got its first member into a room hears the
        presence of our users there, and a local user who joins is announced to the room's
        servers, instead of at the next change or ping."""
        if membership == "join" and self._presence_federation:
            task = asyncio.get_running_loop().create_task(self._presence_on_join(room, user_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _presence_on_join(self, room: RoomData, user_id: str) -> None:
        members = room.joined_members()
        server = domain(user_id)
        if server == self.server_name:
            content = await self._presence.get(user_id, user_id)
            others = [s for s in servers_of(room) if s != self.server_name]
            if content.get("presence") != "offline" and others:
                self._sender.send_ephemeral(others, ("m.presence", user_id), "m.presence",
                                            _presence_entry(user_id, content))
            return
        if sum(1 for m in members if domain(m) == server) > 1:
            return  # the server was in the room already
        for member in members:
            if domain(member) == self.server_name:
                content = await self._presence.get(member, member)
                if content.get("presence") != "offline":
                    self._sender.send_ephemeral([server], ("m.presence", member), "m.presence",
                                                _presence_entry(member, content))

    # ------------------------------------------------------------------ inbound

    async def _room_for(self, origin: str, room_id: Any) -> RoomData | None:
        if not isinstance(room_id, str):
            return None
        room = await self._rooms.get(room_id)
        if room is None or not allowed(origin, room):
            return None
        return room

    async def receive_typing(self, origin: str, content: Any) -> None:
        if not isinstance(content, dict):
            return
        user_id, typing = content.get("user_id"), content.get("typing")
        if not isinstance(user_id, str) or not is_valid_user_id(user_id) \
                or domain(user_id) != origin or not isinstance(typing, bool):
            return
        room = await self._room_for(origin, content.get("room_id"))
        if room is not None:
            await self._typing.set_remote(room.room_id, user_id, typing)

    async def receive_receipt(self, origin: str, content: Any) -> None:
        if not isinstance(content, dict):
            return
        for room_id, by_type in content.items():
            room = await self._room_for(origin, room_id)
            if room is None or not isinstance(by_type, dict):
                continue
            receipts = by_type.get("m.read")
            if not isinstance(receipts, dict):
                continue
            for user_id, receipt in receipts.items():
                if not isinstance(user_id, str) or domain(user_id) != origin \
                        or not isinstance(receipt, dict):
                    continue
                ids = receipt.get("event_ids")
                raw = receipt.get("data")
                data: JsonDict = {k: raw[k] for k in ("ts", "thread_id")
                                  if isinstance(raw, dict) and k in raw}
                if not isinstance(ids, list):
                    continue
                for event_id in ids[:MAX_RECEIPT_EVENTS]:
                    if isinstance(event_id, str) and is_valid_event_id(event_id):
                        await self._receipts.receive_remote(room.room_id, "m.read", user_id,
                                                            event_id, data)

    async def receive_presence(self, origin: str, content: Any) -> None:
        push = content.get("push") if isinstance(content, dict) else None
        if not isinstance(push, list):
            return
        for entry in push[:1000]:
            if not isinstance(entry, dict):
                continue
            user_id = entry.get("user_id")
            if not isinstance(user_id, str) or domain(user_id) != origin:
                continue
            status = entry.get("status_msg")
            ago = entry.get("last_active_ago")
            if entry.get("presence") == "offline":
                self._heard.pop(user_id, None)
            else:
                self._heard[user_id] = _now()
            await self._presence.apply_remote(
                user_id, str(entry.get("presence")),
                status if isinstance(status, str) else None,
                ago if isinstance(ago, int) and not isinstance(ago, bool) else None)
