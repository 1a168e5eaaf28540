"""Simplified Sliding Sync (MSC4186) on the same engine as /sync.

A connection (user, device, conn_id) remembers, per `pos` it handed out, which rooms it sent and
up to which event position and with which room config: a request with that `pos` sends only the
rooms of its lists and subscriptions that are new to the connection, changed since, or asked
for with a bigger config (sent again as `initial`). The connection state lives in this process's
memory, the last two positions of each connection (the client may retry the latest request);
an unknown `pos` (expired, another process, a restart) is M_UNKNOWN_POS and the client starts
again, as the MSC allows.

Rooms are ordered by their newest event (the MSC's "activity ordering"); `bump_stamp` is the
newest event of the MSC's bump types. The timeline, state and invite parts come from SyncService
(the same code as /sync), and the extensions from the same SyncSources. The long poll
subscribes to the notifier before computing, as /sync does.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from homeserver.errors import Codes, MatrixError
from homeserver.rooms.members import Membership, MembershipIndex
from homeserver.rooms.state import EventCache, RoomData, RoomRegistry
from homeserver.rooms.visibility import Visibility
from homeserver.storage.database import Database
from homeserver.streams.notifier import Notifier
from homeserver.streams.tokens import PaginationToken, SyncToken
from homeserver.sync.service import SyncService
from homeserver.sync.sliding_extensions import SlidingExtensions
from homeserver.sync.sliding_filters import ListFacts, RoomInfo
from homeserver.sync.sliding_request import RoomConfig, SlidingRequest
from homeserver.sync.sliding_store import SlidingStore
from homeserver.types import JsonDict, Requester
from homeserver.users.account_data import AccountDataService

BUMP_TYPES = ("m.room.create", "m.room.message", "m.room.encrypted", "m.sticker",
              "m.call.invite", "m.poll.start", "m.beacon_info")
MAX_CONNECTIONS_PER_DEVICE = 10
MAX_CONNECTIONS = 50_000


def unknown_pos() -> MatrixError:
    return MatrixError(400, Codes.UNKNOWN_POS, "Unknown position; start a new connection")


@dataclass(frozen=True, slots=True)
class SentRoom:
    events_pos: int  # the room's events up to here were sent (or were not wanted)
    membership_pos: int  # the user's membership event when sent
    config: RoomConfig
    membership: str = "join"


@dataclass(slots=True)
class ConnState:
    token: SyncToken
    rooms: dict[str, SentRoom]
    counts: dict[str, int]
    subscriptions: dict[str, RoomConfig] = field(default_factory=dict)  # unstable: sticky
    extensions: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class Connection:
    states: OrderedDict[str, ConnState] = field(default_factory=OrderedDict)


@dataclass(slots=True)
class SlidingResult:
    body: JsonDict
    empty: bool


class SlidingSyncService:
    def __init__(self, db: Database, sync: SyncService, rooms: RoomRegistry,
                 members: MembershipIndex, cache: EventCache, visibility: Visibility,
                 account_data: AccountDataService, notifier: Notifier,
                 store: SlidingStore) -> None:
        self._db = db
        self._sync = sync
        self._rooms = rooms
        self._members = members
        self._cache = cache
        self._visibility = visibility
        self._account_data = account_data
        self._notifier = notifier
        self._store = store
        self._ext = SlidingExtensions(sync.sources, account_data)
        self._epoch = secrets.token_hex(3)  # a pos from an earlier run is unknown, not misread
        self._next = 0
        self._conns: OrderedDict[tuple[str, str, str], Connection] = OrderedDict()

    # ------------------------------------------------------------ connections

    def _connection(self, requester: Requester, req: SlidingRequest
                    ) -> tuple[Connection, ConnState | None]:
        key = (requester.user_id, requester.device_id, req.conn_id)
        conn = self._conns.get(key)
        if req.pos is None:
            if conn is None:
                conn = self._conns[key] = Connection()
                self._evict(key)
            self._conns.move_to_end(key)
            return conn, None
        if conn is None or req.pos not in conn.states:
            raise unknown_pos()  # includes a pos issued to another user, device or conn_id
        self._conns.move_to_end(key)
        # The client has processed this pos: everything before it can go.
        while next(iter(conn.states)) != req.pos:
            conn.states.popitem(last=False)
        return conn, conn.states[req.pos]

    def _evict(self, key: tuple[str, str, str]) -> None:
        same = [k for k in self._conns if k[:2] == key[:2]]
        for k in same[:-MAX_CONNECTIONS_PER_DEVICE]:
            del self._conns[k]
        while len(self._conns) > MAX_CONNECTIONS:
            self._conns.popitem(last=False)

    def _issue(self, conn: Connection, state: ConnState) -> str:
        self._next += 1
        pos = f"{self._epoch}_{self._next}"
        conn.states[pos] = state
        while len(conn.states) > 2:
            conn.states.popitem(last=False)
        return pos

    # ------------------------------------------------------------ the request

    async def sync(self, requester: Requester, req: SlidingRequest,
                   stable: bool) -> JsonDict:
        conn, prev = self._connection(requester, req)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + req.timeout_ms / 1000
        waits = prev is not None and req.timeout_ms > 0
        user_id = requester.user_id
        while True:
            fut = self._notifier.subscribe(user_id, deadline if waits else None)
            try:
                result, state = await self.compute(requester, req, prev, stable)
                if not result.empty or not waits or loop.time() >= deadline:
                    break
                if not await fut or self._notifier.closed:
                    # timed out, or shutting down: answer with what there is
                    result, state = await self.compute(requester, req, prev, stable)
                    break
            finally:
                self._notifier.unsubscribe(user_id, fut, deadline if waits else None)
        result.body["pos"] = self._issue(conn, state)
        if req.txn_id is not None:
            result.body["txn_id"] = req.txn_id
        return result.body

    async def compute(self, requester: Requester, req: SlidingRequest, prev: ConnState | None,
                      stable: bool) -> tuple[SlidingResult, ConnState]:
        user_id = requester.user_id
        now = self._sync.current_token()
        since = prev.token.capped(now) if prev is not None else None
        sent = prev.rooms if prev is not None else {}
        memberships = await self._members.rooms_of(user_id)
        candidates = await self._candidates(user_id, memberships, sent, now)
        infos = await self._infos(candidates, memberships, now)
        order = sorted(candidates, key=lambda r: infos[r].last, reverse=True)

        configs: dict[str, RoomConfig] = {}
        in_lists: dict[str, list[str]] = {}
        lists_out: JsonDict = {}
        counts: dict[str, int] = {}
        facts = ListFacts(user_id, self._account_data, self._members, self._rooms)
        for lst in req.lists:
            matching = [r for r in order
                        if await facts.passes(lst.filters, r, memberships[r], infos[r])]
            counts[lst.name] = len(matching)
            lists_out[lst.name] = {"count": len(matching)}
            if lst.ranges is None:
                chosen = matching
            else:
                seen: set[str] = set()
                chosen = []
                for a, b in lst.ranges:
                    for r in matching[a:b + 1]:
                        if r not in seen:
                            seen.add(r)
                            chosen.append(r)
            for r in chosen:
                in_lists.setdefault(r, []).append(lst.name)
                configs[r] = configs[r].merge(lst.config) if r in configs else lst.config
        subs = dict(req.subscriptions)
        if not stable and prev is not None:
            # The unstable dialect (matrix-js-sdk) sends a subscription once and ends it
            # with unsubscribe_rooms; the accepted MSC sends them with every request.
            subs = {**prev.subscriptions, **subs}
        for room_id in req.unsubscribe:
            subs.pop(room_id, None)
        for room_id, config in subs.items():
            m = memberships.get(room_id)
            if m is None or m.stream_ordering > now.events:
                continue  # never in the room (or no such room): ignored, as the MSC says
            if room_id not in infos:
                infos.update(await self._infos([room_id], memberships, now))
            configs[room_id] = configs[room_id].merge(config) if room_id in configs else config

        new_rooms = dict(sent)
        rooms_out: JsonDict = {}
        initial_rooms: list[str] = []
        for room_id in sorted(configs, key=lambda r: infos[r].last, reverse=True):
            config, m, info = configs[room_id], memberships[room_id], infos[room_id]
            old = sent.get(room_id)
            # A room joined after an invite or knock was sent with stripped state only: it
            # is sent whole now.
            initial = old is None or config.expands(old.config) or (
                m.membership == "join" and old.membership != "join")
            if not initial and old is not None:
                room = self._rooms.loaded(room_id) if m.membership == "join" else None
                last = room.last_stream if room is not None else info.last
                if min(last, now.events) <= old.events_pos and \
                        m.stream_ordering <= old.membership_pos:
                    continue  # nothing new for this room
            body = await self._room(requester, room_id, m, info, config,
                                    None if initial else old, since, now, stable)
            if body is None:
                continue
            if initial:
                body["initial"] = True
                initial_rooms.append(room_id)
            if room_id in in_lists:
                body["lists"] = in_lists[room_id]
            rooms_out[room_id] = body
            keep = config if old is None or initial else old.config
            new_rooms[room_id] = SentRoom(now.events, m.stream_ordering, keep, m.membership)
        await self._counts(user_id, rooms_out, memberships)

        body_out: JsonDict = {"lists": lists_out}
        if rooms_out:
            body_out["rooms"] = rooms_out
        # Extension configs are sticky: matrix-rust-sdk sends `enabled` once and then only
        # what changes (e.g. to_device's `since`); a key the request gives replaces the old.
        exts = dict(prev.extensions) if prev is not None else {}
        for name, cfg in req.extensions.items():
            exts[name] = {**exts.get(name, {}), **cfg}
        extensions, ext_state, ext_empty = await self._ext.compute(
            requester, exts, since, now, memberships, list(configs), initial_rooms)
        body_out["extensions"] = extensions
        empty = not rooms_out and ext_empty and (prev is None or prev.counts == counts)
        return SlidingResult(body_out, empty), ConnState(ext_state, new_rooms, counts, subs,
                                                            exts)

    # ------------------------------------------------------------ the room list

    async def _candidates(self, user_id: str, memberships: dict[str, Membership],
                          sent: dict[str, SentRoom], now: SyncToken) -> list[str]:
        """The server's room list: joined, invited, knocked; left rooms already sent on this
        connection; and rooms the user was kicked or banned from (they may not know)."""
        out: list[str] = []
        gone: list[tuple[str, Membership]] = []
        for room_id, m in memberships.items():
            if m.stream_ordering > now.events:
                continue
            if m.membership == "invite" and await self._sync.invites_blocked(user_id):
                continue  # spec v1.18 invite blocking
            if m.membership in ("join", "invite", "knock") or room_id in sent:
                out.append(room_id)
            elif m.membership in ("leave", "ban"):
                gone.append((room_id, m))
        if gone:
            events = await self._cache.get_many(m.event_id for _, m in gone)
            forgotten = await self._members.forgotten(user_id)
            for room_id, m in gone:
                ev = events.get(m.event_id)
                if ev is not None and ev.sender != user_id and room_id not in forgotten:
                    out.append(room_id)
        return out

    async def _infos(self, room_ids: list[str], memberships: dict[str, Membership],
                     now: SyncToken) -> dict[str, RoomInfo]:
        out: dict[str, RoomInfo] = {}
        missing: list[str] = []
        for room_id in room_ids:
            m = memberships[room_id]
            room = self._rooms.loaded(room_id)
            if room is None:
                missing.append(room_id)
                continue
            bump = _bump_in_memory(room, now.events)
            if bump is None:
                missing.append(room_id)
                continue
            create = room.state.get(("m.room.create", ""))
            rtype = create.pdu.get("content", {}).get("type") if create is not None else None
            last = min(room.last_stream, now.events) if m.membership == "join" \
                else m.stream_ordering
            out[room_id] = RoomInfo(last, bump if m.membership == "join" else m.stream_ordering,
                                    rtype if isinstance(rtype, str) else None,
                                    ("m.room.encryption", "") in room.state)
        if missing:
            async with self._db.connection() as conn:
                rows = await self._store.room_infos(conn, missing, now.events, list(BUMP_TYPES))
            for r in rows:
                m = memberships[r["room_id"]]
                joined = m.membership == "join"
                last = r["last"] or 0
                out[r["room_id"]] = RoomInfo(
                    last if joined else m.stream_ordering,
                    (r["bump"] or last) if joined else m.stream_ordering,
                    r["room_type"], bool(r["encrypted"]))
        return out

    # ------------------------------------------------------------ one room

    async def _room(self, requester: Requester, room_id: str, m: Membership, info: RoomInfo,
                    config: RoomConfig, old: SentRoom | None, since: SyncToken | None,
                    now: SyncToken, stable: bool) -> JsonDict | None:
        user_id = requester.user_id
        body: JsonDict = {"membership": m.membership, "bump_stamp": info.bump}
        if m.membership in ("invite", "knock"):
            state = await self._sync.stripped_state(room_id, m.membership, m.event_id)
            body["stripped_state" if stable else "invite_state"] = state
            return body
        room = await self._rooms.get(room_id)
        if room is None:
            return None
        joined = m.membership == "join"
        upto = now.events if joined else min(m.stream_ordering, now.events)
        start = old.events_pos if old is not None else 0
        events, limited = await self._sync.timeline(room, start, upto, config.timeline_limit)
        events = await self._visibility.filter(user_id, events, currently_joined=joined)
        did, dev = user_id, requester.device_id
        body["timeline"] = await self._sync.served_timeline(requester, room, events, upto,
                                                           joined)
        body["limited"] = limited
        first = events[0] if events else None
        body["prev_batch"] = (PaginationToken(first.depth, first.stream_ordering).serialize()
                              if first is not None else SyncToken(upto).serialize())
        live_from = since.events if since is not None else upto
        body["num_live"] = sum(1 for e in events if e.stream_ordering > live_from)

        # State: all wanted current state at first, the wanted changes afterwards.
        current = await self._state_now(room, upto)
        if old is None:
            changed = set(current)
        else:
            changed = await self._changed_keys(room, old.events_pos, upto, current)
        # Lazy members: the timeline's senders and targets, and (MSC) every membership
        # change when the incremental timeline is not limited.
        lazy_ok = old is not None and not limited
        wanted = {k for k in changed if config.wants(k, user_id, lazy_ok)}
        if config.lazy_members:
            for e in events:
                wanted.add(("m.room.member", e.sender))
                if e.type == "m.room.member" and e.state_key is not None:
                    wanted.add(("m.room.member", e.state_key))
        got = await self._cache.get_many(current[k] for k in wanted if k in current)
        body["required_state"] = (
            [got[current[k]].to_client(did, dev, with_room_id=False)
             for k in sorted(wanted) if k in current and current[k] in got]
            + [{"type": k[0], "state_key": k[1]} for k in sorted(wanted)
               if k not in current and stable])  # a stub for deleted state (accepted MSC)

        name_changed = old is None or ("m.room.name", "") in changed
        members_changed = old is None or any(k[0] == "m.room.member" for k in changed)
        if name_changed:
            name = await self._content(current.get(("m.room.name", "")), "name")
            if name is not None or old is not None:
                body["name"] = name
        if old is None or ("m.room.avatar", "") in changed:
            avatar = await self._content(current.get(("m.room.avatar", "")), "url")
            if avatar is not None or old is not None:
                body["avatar"] = avatar
        if members_changed and joined:
            summary = self._sync.summary(room, user_id)
            body["joined_count"] = summary["m.joined_member_count"]
            body["invited_count"] = summary["m.invited_member_count"]
            if ("m.room.name", "") not in current:
                body["heroes"] = await self._heroes(room, summary["m.heroes"])
        return body

    async def _state_now(self, room: RoomData, upto: int) -> dict[tuple[str, str], str]:
        if room.last_stream <= upto:
            return {k: e.event_id for k, e in room.state.items()}
        return await self._sync.state_at_stream(room, upto)

    async def _changed_keys(self, room: RoomData, since: int, upto: int,
                            current: dict[tuple[str, str], str]) -> set[tuple[str, str]]:
        window = room.events_after(since, upto)
        if window is not None:
            return {(e.type, e.state_key) for e in window if e.state_key is not None}
        before = await self._sync.state_at_stream(room, since)
        return {k for k in set(before) | set(current) if before.get(k) != current.get(k)}

    async def _content(self, event_id: str | None, key: str) -> str | None:
        if event_id is None:
            return None
        ev = (await self._cache.get_many([event_id])).get(event_id)
        v = ev.pdu.get("content", {}).get(key) if ev is not None else None
        return v if isinstance(v, str) and v else None

    async def _heroes(self, room: RoomData, user_ids: list[str]) -> list[JsonDict]:
        out: list[JsonDict] = []
        for uid in user_ids:
            hero: JsonDict = {"user_id": uid}
            ev = room.state.get(("m.room.member", uid))
            content = ev.pdu.get("content", {}) if ev is not None else {}
            for src, dst in (("displayname", "displayname"), ("avatar_url", "avatar_url")):
                if isinstance(content.get(src), str):
                    hero[dst] = content[src]
            out.append(hero)
        return out

    async def _counts(self, user_id: str, rooms_out: JsonDict,
                      memberships: dict[str, Membership]) -> None:
        source = self._sync.sources.notifications
        joined = [r for r in rooms_out if memberships[r].membership == "join"]
        if source is None or not joined:
            return
        for room_id, extra in (await source.counts(user_id, joined, False)).items():
            unread = extra.get("unread_notifications", {})
            rooms_out[room_id]["notification_count"] = unread.get("notification_count", 0)
            rooms_out[room_id]["highlight_count"] = unread.get("highlight_count", 0)


def _bump_in_memory(room: RoomData, upto: int) -> int | None:
    for e in reversed(room.recent):
        if e.stream_ordering <= upto and e.type in BUMP_TYPES:
            return e.stream_ordering
    return None if room.floor > 0 else (room.recent[0].stream_ordering if room.recent else 0)
