"""Push-rule evaluation for every event, unread counts and the notifications list.

`NotificationService` is a RoomWriter persist hook: `write` runs inside the transaction of the
events it wants (one event, or a group commit's batch), so the events, their notifications and
the new counts commit together and /sync shows the count with the event (spec "Server
behaviour"). It evaluates the rules of every local joined member except the sender (and of a
local invitee, for `.m.rule.invite_for_me`). Users with the same rule changes (most have none)
share one ruleset compiled with the user as a parameter, evaluated for all of them in one pass
(`CompiledRules.evaluate_many`); a batch is written in one statement.

Counts are per user, room and thread ('main' for the main timeline). Each notification row is
written once, with its event; what the user has read is a position per user, room and thread
(push_read: the stream ordering of the last event read there, '' for the whole room), and a
notification is unread when it is after both its room's position and its thread's. A read
receipt (m.read or m.read.private, whichever is ahead: positions only move forward) moves the
position of its thread when threaded, else of the whole room. Sending an event reads the room
up to it (spec "Marking notifications as read"): one position row per sender and batch. Counts
are the rows after the positions. (Until 0037 the rows had an `unread` flag, updated on every
read, and push_counts was kept with them: every row was written twice, and in a busy shared
room each group commit also marked every sender's rows read.)

Every woken /sync of every member reads its counts, so while this process is the only one on
the database the counts are also kept in memory per (user, room): loaded on first read, moved
by `finished` after each write commits (before readers are woken), and dropped after a receipt
commits. A load that overlaps a write is not kept. With other processes on the database every
read goes to it.

Compiled rules are cached per process; a rule change on another process reaches this one
through `invalidate`, called when this process sees that user's m.push_rules account data
written elsewhere (app.py wires it to the account data stream's advance).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from homeserver.push import rules
from homeserver.push.evaluator import USER, CompiledRules, EvalContext
from homeserver.push.notify_store import NotificationStore
from homeserver.push.store import PushRuleStore
from homeserver.rooms.state import EventCache, RoomData
from homeserver.rooms.writer import PersistEvent
from homeserver.storage.database import Conn, Database
from homeserver.types import JsonDict

MAIN = "main"
THREAD_HOPS = 3
RULES_CACHE_SIZE = 50_000
COUNTS_CACHE_SIZE = 200_000
USER_ROOMS_CACHE_SIZE = 50_000

Counts = dict[str, tuple[int, int]]  # thread -> (notifications, highlights), non-zero only


@dataclass(slots=True)
class Written:
    """What one `write` changed, for `committed` to apply to the in-memory counts."""

    room_id: str
    readers: set[str] = field(default_factory=set)  # read the whole room (their own send)
    added: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)


class NotificationService:
    def __init__(self, db: Database, server_name: str, store: NotificationStore,
                 rule_store: PushRuleStore, cache: EventCache) -> None:
        self._db = db
        self._suffix = ":" + server_name
        self._store = store
        self._rule_store = rule_store
        self._cache = cache
        self._default_rules = CompiledRules(rules.merge(USER, None))
        self._rules: OrderedDict[str, CompiledRules] = OrderedDict()
        self._by_changes: dict[str, CompiledRules] = {}  # shared by users with equal changes
        self._counts: OrderedDict[tuple[str, str], Counts] = OrderedDict()
        self._cache_counts = True
        self._loading: dict[tuple[str, str], int] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._writing: dict[tuple[str, str], int] = {}
        # Per user (with a pusher): the rooms they have notifications in, for the badge.
        self._user_rooms: dict[str, set[str]] = {}
        self._rooms_loading: dict[str, int] = {}
        self._rooms_pending: dict[str, set[str]] = {}  # written while a load was in flight

    def on_peers(self, peers: list[str]) -> None:
        """Other processes share the database: their writes would not move our counts."""
        self._cache_counts = not peers
        if peers:
            self._counts.clear()
            self._user_rooms.clear()

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
                changes = raw.get(u)
                shared = self._default_rules if changes is None \
                    else self._by_changes.get(changes)
                if shared is None:
                    assert changes is not None
                    if len(self._by_changes) >= RULES_CACHE_SIZE:
                        self._by_changes.clear()
                    shared = self._by_changes[changes] = CompiledRules(
                        rules.merge(USER, orjson.loads(changes)))
                out[u] = self._rules[u] = shared
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
        """Whether `write` has work for this event: some local member other than the
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

    async def _notified(self, conn: Conn, room: RoomData, ev: PersistEvent,
                        ) -> list[tuple[str, str, bool]]:
        """(user, actions JSON, highlight) for each local user the event notifies."""
        pdu = ev.pdu
        sender = pdu.get("sender")
        joined = room.joined_members()
        candidates = [u for u in joined if u != sender and self._local(u)]
        if pdu.get("type") == "m.room.member" and ev.state_key and ev.state_key != sender \
                and self._local(ev.state_key) and ev.state_key not in candidates \
                and pdu.get("content", {}).get("membership") == "invite":
            candidates.append(ev.state_key)
        if not candidates:
            return []
        state = room.state_pdus()
        pl_event = state.get(("m.room.power_levels", ""))
        power_levels = pl_event.get("content", {}) if pl_event is not None else {}
        ctx = EvalContext(len(joined), None, power_levels)

        def display_name(user_id: str) -> str | None:
            member = state.get(("m.room.member", user_id))
            name = member.get("content", {}).get("displayname") if member is not None else None
            return name if isinstance(name, str) else None

        compiled = await self._compiled(conn, candidates)
        groups: dict[int, tuple[CompiledRules, list[str]]] = {}
        for user_id in candidates:
            c = compiled[user_id]
            groups.setdefault(id(c), (c, []))[1].append(user_id)
        out: list[tuple[str, str, bool]] = []
        for c, users in groups.values():
            for user_id, outcome in zip(users, c.evaluate_many(pdu, ctx, users, display_name),
                                        strict=True):
                if outcome is not None and outcome.notify:
                    out.append((user_id, outcome.actions_json, outcome.highlight))
        return out

    async def write(self, conn: Conn, room: RoomData,
                    events: Sequence[PersistEvent]) -> Written:
        """In the events' transaction, one statement: their notifications (a row per
        notified member and event) and each local sender's read position. `events` are in
        stream order."""
        done = Written(room.room_id)
        # Per notification: (user, pos, event id, thread, actions, highlight).
        rows: list[tuple[str, int, str, str, str, bool]] = []
        last_send: dict[str, int] = {}
        for ev in events:
            if not ev.served:
                continue
            notified = await self._notified(conn, room, ev)
            if notified:
                thread = await self.thread_of(ev)
                rows += [(u, ev.pos, ev.event_id, thread, a, h) for u, a, h in notified]
            sender = ev.pdu.get("sender")
            if isinstance(sender, str) and self._local(sender):
                last_send[sender] = ev.pos
        # A sender's notifications from before their send are read; those from events after
        # it (later in this batch) are not. Rows of earlier writes are all before this batch,
        # so a sender known to have nothing unread needs no new position unless this batch
        # notifies them before their send.
        before_send = {r[0] for r in rows if last_send.get(r[0], 0) > r[1]}
        readers = [u for u in last_send
                   if u in before_send or not self._known_clean(u, room.room_id)]
        await self._store.write(conn, room.room_id, int(time.time() * 1000), rows, readers,
                                [last_send[u] for u in readers])
        done.readers = set(last_send)
        for u, pos, _e, thread, _a, h in rows:
            if last_send.get(u, 0) < pos:
                n0, h0 = done.added.get((u, thread), (0, 0))
                done.added[(u, thread)] = (n0 + 1, h0 + int(h))
        if self._cache_counts:  # until `finished`, a load of these counts is not kept
            for key in [(u, room.room_id) for u in done.readers] + [
                    (u, room.room_id) for u, _ in done.added]:
                self._writing[key] = self._writing.get(key, 0) + 1
        return done

    def _known_clean(self, user_id: str, room_id: str) -> bool:
        """The counts in memory say the user has nothing unread in the room (so moving their
        position would change nothing: the counts are the number of unread rows)."""
        if not self._cache_counts:
            return False
        counts = self._counts.get((user_id, room_id))
        return counts is not None and not counts

    def finished(self, room: RoomData, done: Written, committed: bool) -> None:
        """After the transaction of what `write` wrote, before readers are woken."""
        if not self._cache_counts:
            return
        keys = [(u, done.room_id) for u in done.readers] + [
            (u, done.room_id) for u, _ in done.added]
        for key in keys:
            left = self._writing.get(key, 0) - 1
            if left > 0:
                self._writing[key] = left
            else:
                self._writing.pop(key, None)
        if not committed:
            for key in keys:
                self._unkeep_load(key)
            return
        for u in done.readers:
            # Read up to their send, in every thread, and nothing of this room can have been
            # written since (the room's writes are serialised): known to be zero, cached or not.
            key = (u, done.room_id)
            self._unkeep_load(key)
            counts = self._counts.get(key)
            if counts is None:
                self._counts[key] = {}
            else:
                counts.clear()
        for u in {u for u, _ in done.added}:
            rooms = self._user_rooms.get(u)
            if rooms is not None:
                rooms.add(done.room_id)
            if u in self._rooms_loading:
                self._rooms_pending.setdefault(u, set()).add(done.room_id)
        for (u, thread), (n, h) in done.added.items():
            counts = self._touch((u, done.room_id))
            if counts is not None:
                n0, h0 = counts.get(thread, (0, 0))
                counts[thread] = (n0 + n, h0 + h)
        while len(self._counts) > COUNTS_CACHE_SIZE:
            self._counts.popitem(last=False)

    def _unkeep_load(self, key: tuple[str, str]) -> None:
        """A load of `key` in flight may have read the counts from before a change: it is
        not kept."""
        if key in self._loading:
            self._dirty.add(key)

    def _touch(self, key: tuple[str, str]) -> Counts | None:
        """The cached counts of `key` to change in place, or None when not cached."""
        self._unkeep_load(key)
        return self._counts.get(key)

    def forget_room(self, room_id: str) -> None:
        """The room's notifications were deleted (an admin purge): its counts in memory go
        and are read again from the database."""
        for key in [k for k in self._counts if k[1] == room_id]:
            del self._counts[key]
        self._dirty.update(k for k in self._loading if k[1] == room_id)

    # ------------------------------------------------------------------ receipts

    async def on_receipt(self, conn: Conn, room_id: str, receipt_type: str, user_id: str,
                         thread_id: str | None, event_pos: int) -> None:
        """A ReceiptService write hook (in the receipt's transaction): the user's position
        in the receipt's thread, or in the whole room, moves forward to its event."""
        if receipt_type not in ("m.read", "m.read.private") or event_pos <= 0:
            return
        await self._store.mark_read(conn, user_id, room_id, event_pos, thread_id or None)

    def receipt_committed(self, room_id: str, user_id: str) -> None:
        """After a receipt's transaction commits: its counts are read again from the
        database (a receipt is rarer than an event, so no need to work out the change)."""
        key = (user_id, room_id)
        self._unkeep_load(key)
        self._counts.pop(key, None)

    # ------------------------------------------------------------------ reads

    async def counts(self, user_id: str, room_ids: list[str],
                     by_thread: bool) -> dict[str, JsonDict]:
        """Per room: {"unread_notifications": {...}} and, when `by_thread`, the main
        timeline's counts there plus "unread_thread_notifications" per thread root."""
        out: dict[str, JsonDict] = {}
        for room_id, counts in (await self._room_counts(user_id, room_ids)).items():
            body: JsonDict = {}
            n_all = h_all = 0
            for thread, (n, h) in counts.items():
                if by_thread and thread != MAIN:
                    body.setdefault("unread_thread_notifications", {})[thread] = {
                        "notification_count": n, "highlight_count": h}
                else:
                    n_all += n
                    h_all += h
            body["unread_notifications"] = {"notification_count": n_all,
                                            "highlight_count": h_all}
            out[room_id] = body
        return out

    async def _room_counts(self, user_id: str, room_ids: list[str]) -> dict[str, Counts]:
        out: dict[str, Counts] = {}
        missing: list[str] = []
        for room_id in room_ids:
            counts = self._counts.get((user_id, room_id)) if self._cache_counts else None
            if counts is None:
                missing.append(room_id)
            else:
                self._counts.move_to_end((user_id, room_id))
                out[room_id] = dict(counts)
        if not missing:
            return out
        keys = [(user_id, r) for r in missing]
        for k in keys:
            self._loading[k] = self._loading.get(k, 0) + 1
        try:
            async with self._db.connection() as conn:
                rows = await self._store.counts(conn, user_id, missing)
        finally:
            for k in keys:
                left = self._loading[k] - 1
                if left:
                    self._loading[k] = left
                else:
                    del self._loading[k]
        loaded: dict[str, Counts] = {r: {} for r in missing}
        for r in rows:
            n, h = int(r["notification_count"]), int(r["highlight_count"])
            if n or h:
                loaded[r["room_id"]][r["thread_id"]] = (n, h)
        for room_id, counts in loaded.items():
            out[room_id] = dict(counts)
            key = (user_id, room_id)
            if key in self._dirty:
                if key not in self._loading:
                    self._dirty.discard(key)
            elif self._cache_counts and key not in self._writing:
                self._counts[key] = counts
        while len(self._counts) > COUNTS_CACHE_SIZE:
            self._counts.popitem(last=False)
        return out

    async def total_unread(self, user_id: str) -> int:
        return (await self.unread_totals([user_id])).get(user_id, 0)

    async def unread_totals(self, user_ids: Sequence[str]) -> dict[str, int]:
        """Each user's unread notifications over every room they have notifications in (a
        push's badge, asked for each pushed user on every pusher round). While counts are
        cached this is memory after the first time: the user's rooms (loaded once, then
        followed by `finished`) and each room's cached counts. Otherwise one query, which
        reads the user's unread rows."""
        if not self._cache_counts:
            async with self._db.connection() as conn:
                return await self._store.unread_totals(conn, user_ids)
        missing = [u for u in user_ids if u not in self._user_rooms]
        loaded: dict[str, set[str]] = {u: set() for u in missing}
        if missing:
            for u in missing:
                self._rooms_loading[u] = self._rooms_loading.get(u, 0) + 1
            try:
                async with self._db.connection() as conn:
                    for r in await self._store.rooms_of(conn, missing):
                        loaded[r["user_id"]].add(r["room_id"])
            finally:
                for u in missing:
                    left = self._rooms_loading[u] - 1
                    if left:
                        self._rooms_loading[u] = left
                    else:
                        del self._rooms_loading[u]
                        # rooms written since the load's snapshot: `finished` saw them
                        loaded[u] |= self._rooms_pending.pop(u, set())
            if len(self._user_rooms) + len(missing) > USER_ROOMS_CACHE_SIZE:
                self._user_rooms.clear()
            for u, rooms in loaded.items():
                if u not in self._rooms_loading and self._cache_counts:
                    self._user_rooms[u] = rooms
        out: dict[str, int] = {}
        for u in user_ids:
            rooms = self._user_rooms.get(u, loaded.get(u, set()))
            if not rooms:
                continue
            counts = await self._room_counts(u, sorted(rooms))
            total = sum(n for c in counts.values() for n, _h in c.values())
            if total:
                out[u] = total
        return out

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
                "profile_tag": None,  # no rule here has a profile tag
                "read": not r["unread"],
                "room_id": r["room_id"],
                "ts": int(r["ts"]),
            })
        return items, (int(rows[-1]["stream_ordering"]) if more and rows else None)
