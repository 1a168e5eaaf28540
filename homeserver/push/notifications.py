"""Push-rule evaluation for every event, unread counts and the notifications list.

`NotificationService.on_persist` is a RoomWriter persist hook: it runs inside the event's
transaction, so the event, its notifications and the new counts commit together and /sync shows
the count with the event (spec "Server behaviour"). It evaluates the rules of every local joined
member except the sender (and of a local invitee, for `.m.rule.invite_for_me`), with each user's
rules compiled once and kept until that user changes them.

Counts are per user, room and thread ('main' for the main timeline). A read receipt (m.read or
m.read.private, whichever is ahead: marks are never undone) marks the notifications up to its
event as read, in its thread only when the receipt is threaded, and the counts go down by as
many (they are always the number of unread rows). Sending an event counts as reading the
room up to it.

Limit: the compiled-rules cache is per process; a rule change on another process reaches this
one's evaluation when this process next drops the user (restart or cache eviction).
"""

from __future__ import annotations

import time
from collections import OrderedDict

import orjson

from homeserver.push import rules
from homeserver.push.evaluator import CompiledRules, EvalContext
from homeserver.push.notify_store import NotificationStore
from homeserver.push.store import PushRuleStore
from homeserver.rooms.state import EventCache, RoomData
from homeserver.rooms.writer import PersistEvent
from homeserver.storage.database import Conn, Database
from homeserver.types import JsonDict

MAIN = "main"
THREAD_HOPS = 3
RULES_CACHE_SIZE = 50_000


class NotificationService:
    def __init__(self, db: Database, server_name: str, store: NotificationStore,
                 rule_store: PushRuleStore, cache: EventCache) -> None:
        self._db = db
        self._suffix = ":" + server_name
        self._store = store
        self._rule_store = rule_store
        self._cache = cache
        self._rules: OrderedDict[str, CompiledRules] = OrderedDict()

    # ------------------------------------------------------------------ compiled rules

    def invalidate(self, user_id: str) -> None:
        """The user's rules changed: compile them again on their next event."""
        self._rules.pop(user_id, None)

    async def _compiled(self, conn: Conn, user_ids: list[str]) -> dict[str, CompiledRules]:
        out: dict[str, CompiledRules] = {}
        missing: list[str] = []
        for u in user_ids:
            c = self._rules.get(u)
            if c is None:
                missing.append(u)
            else:
                out[u] = c
        if missing:
            raw = await self._rule_store.get_many(conn, missing)
            for u in missing:
                changes = orjson.loads(raw[u]) if u in raw else None
                out[u] = self._rules[u] = CompiledRules(rules.merge(u, changes))
            while len(self._rules) > RULES_CACHE_SIZE:
                self._rules.popitem(last=False)
        return out

    # ------------------------------------------------------------------ the persist hook

    async def thread_of(self, ev: PersistEvent) -> str:
        """The event's thread root, following relations up to THREAD_HOPS (the spec's advice);
        'main' when there is none or a related event is unknown."""
        if ev.rel_type == "m.thread" and ev.relates_to:
            return ev.relates_to
        parent_id = ev.relates_to
        for _ in range(THREAD_HOPS - 1):
            if not parent_id:
                return MAIN
            parent = (await self._cache.get_many([parent_id])).get(parent_id)
            if parent is None:
                return MAIN
            rel = parent.pdu.get("content", {}).get("m.relates_to")
            if not isinstance(rel, dict) or not isinstance(rel.get("event_id"), str):
                return MAIN
            if rel.get("rel_type") == "m.thread":
                return str(rel["event_id"])
            parent_id = rel["event_id"]
        return MAIN

    def _local(self, user_id: str) -> bool:
        return user_id.endswith(self._suffix)

    def wants(self, room: RoomData, ev: PersistEvent) -> bool:
        """Whether `on_persist` has work for this event: some local member other than the
        sender (or a local invitee). A sender alone with local nobody, the common case of a
        bot's or a note-to-self room, keeps the writer's one-statement path; the implicit
        read-up-to of their own send is then skipped (their next read receipt does it)."""
        if not ev.served:
            return False
        pdu = ev.pdu
        sender = pdu.get("sender")
        if any(u != sender and self._local(u) for u in room.joined_members()):
            return True
        return (pdu.get("type") == "m.room.member" and ev.state_key is not None
                and ev.state_key != sender and self._local(ev.state_key)
                and pdu.get("content", {}).get("membership") == "invite")

    async def on_persist(self, conn: Conn, room: RoomData, ev: PersistEvent) -> None:
        if not ev.served:
            return
        pdu = ev.pdu
        sender = pdu.get("sender")
        joined = room.joined_members()
        candidates = [u for u in joined if u != sender and self._local(u)]
        if pdu.get("type") == "m.room.member" and ev.state_key and ev.state_key != sender \
                and self._local(ev.state_key) and ev.state_key not in candidates \
                and pdu.get("content", {}).get("membership") == "invite":
            candidates.append(ev.state_key)
        reader = sender if isinstance(sender, str) and self._local(sender) else None
        if not candidates:
            if reader is not None:
                await self._store.mark_read(conn, reader, room.room_id, ev.pos, None)
            return
        state = room.state_pdus()
        pl_event = state.get(("m.room.power_levels", ""))
        power_levels = pl_event.get("content", {}) if pl_event is not None else {}
        compiled = await self._compiled(conn, candidates)
        member_count = len(joined)
        users: list[str] = []
        actions: list[str] = []
        highlights: list[bool] = []
        for user_id in candidates:
            member = state.get(("m.room.member", user_id))
            name = member.get("content", {}).get("displayname") if member is not None else None
            ctx = EvalContext(member_count, name if isinstance(name, str) else None,
                              power_levels)
            out = compiled[user_id].evaluate(pdu, ctx)
            if out is None or not out.notify:
                continue
            users.append(user_id)
            actions.append(out.actions_json)
            highlights.append(out.highlight)
        if not users and reader is None:
            return
        thread = await self.thread_of(ev) if users else MAIN
        await self._store.on_event(conn, room.room_id, ev.event_id, ev.pos, thread,
                                   int(time.time() * 1000), users, actions, highlights, reader)

    # ------------------------------------------------------------------ receipts

    async def on_receipt(self, conn: Conn, room_id: str, receipt_type: str, user_id: str,
                         thread_id: str | None, event_pos: int) -> None:
        """A ReceiptService write hook (in the receipt's transaction)."""
        if receipt_type not in ("m.read", "m.read.private") or event_pos <= 0:
            return
        await self._store.mark_read(conn, user_id, room_id, event_pos, thread_id or None)

    # ------------------------------------------------------------------ reads

    async def counts(self, user_id: str, room_ids: list[str],
                     by_thread: bool) -> dict[str, JsonDict]:
        """Per room: {"unread_notifications": {...}} and, when `by_thread`, the main
        timeline's counts there plus "unread_thread_notifications" per thread root."""
        out: dict[str, JsonDict] = {
            r: {"unread_notifications": {"notification_count": 0, "highlight_count": 0}}
            for r in room_ids}
        if not room_ids:
            return out
        async with self._db.connection() as conn:
            rows = await self._store.counts(conn, user_id, room_ids)
        for r in rows:
            body = out[r["room_id"]]
            n, h = int(r["notification_count"]), int(r["highlight_count"])
            if by_thread and r["thread_id"] != MAIN:
                if n or h:
                    body.setdefault("unread_thread_notifications", {})[r["thread_id"]] = {
                        "notification_count": n, "highlight_count": h}
                continue
            un = body["unread_notifications"]
            un["notification_count"] += n
            un["highlight_count"] += h
        return out

    async def total_unread(self, user_id: str) -> int:
        async with self._db.connection() as conn:
            return await self._store.total_unread(conn, user_id)

    async def page(self, user_id: str, before: int | None, limit: int,
                   only_highlight: bool) -> tuple[list[JsonDict], int | None]:
        """GET /notifications: (notifications newest first, next `from` or None)."""
        async with self._db.connection() as conn:
            rows = await self._store.page(conn, user_id, before, limit + 1, only_highlight)
        more = len(rows) > limit
        rows = rows[:limit]
        events = await self._cache.get_many([r["event_id"] for r in rows])
        items: list[JsonDict] = []
        for r in rows:
            entry = events.get(r["event_id"])
            if entry is None:
                continue
            items.append({
                "actions": orjson.loads(r["actions"]),
                "event": entry.to_client(user_id, None),
                "read": not r["unread"],
                "room_id": r["room_id"],
                "ts": int(r["ts"]),
            })
        return items, (int(rows[-1]["stream_ordering"]) if more and rows else None)
