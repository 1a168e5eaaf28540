"""/sync: one SyncService behind both the long-poll and the WebSocket transports.

The user's waiter is registered before the first computation (no lost wake-ups); the response is
computed from in-memory room data whenever it reaches back to `since`, and from the database
otherwise. Only positions at or below the streams' `current` mark are ever shown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from homeserver.events.filter import EventFilter, SyncFilter
from homeserver.events.model import EventEntry, remote_stripped_state, stripped_state
from homeserver.events.store import EventStore
from homeserver.rooms.members import Membership, MembershipIndex
from homeserver.rooms.state import EventCache, RoomData, RoomRegistry, StateGroups
from homeserver.rooms.visibility import Visibility
from homeserver.storage.database import Database
from homeserver.storage.streams import Stream
from homeserver.streams.notifier import Notifier
from homeserver.streams.tokens import PaginationToken, SyncToken
from homeserver.sync.streams import SyncSources
from homeserver.types import JsonDict, Requester
from homeserver.users.account_data import AccountDataService
from homeserver.users.ignored import IgnoredUsers

DEFAULT_TIMELINE_LIMIT = 10
OUT_OF_BAND_LOOKAHEAD = 10  # timeline events looked at for the state after an out-of-band one
MEMBERS_SENT_ROOMS = 100_000  # (user, device, room) entries kept for lazy-loading members
NO_PEEKS: dict[str, int] = {}  # "this device peeks into nothing"; shared, never written to
INVITE_STATE_TYPES = (
    "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
    "m.room.canonical_alias", "m.room.encryption", "m.room.topic",
)


@dataclass(slots=True)
class SyncResult:
    body: JsonDict
    empty: bool
    next_batch: SyncToken


class SyncService:
    def __init__(
        self, db: Database, events: EventStore, rooms: RoomRegistry, members: MembershipIndex,
        cache: EventCache, groups: StateGroups, visibility: Visibility,
        event_stream: Stream, account_data: AccountDataService, notifier: Notifier,
        sources: SyncSources | None = None,
    ) -> None:
        self.sources = sources or SyncSources()
        self._db = db
        self._events = events
        self._rooms = rooms
        self._members = members
        self._cache = cache
        self._groups = groups
        self._visibility = visibility
        self._event_stream = event_stream
        self._account_data = account_data
        self._ignored = IgnoredUsers(account_data)
        # (user, device, room) -> member user -> the member event id that device was sent.
        self._members_sent: dict[tuple[str, str, str], dict[str, str]] = {}
        self._notifier = notifier
        # Told how long after the last wake-up a woken long-poll had its answer (metrics).
        self.on_woken: Callable[[float], None] | None = None

    def current_token(self) -> SyncToken:
        src = self.sources
        return SyncToken(
            events=self._event_stream.current,
            account_data=self._account_data.stream.current,
            receipts=src.receipts.current() if src.receipts else 0,
            to_device=src.to_device.current() if src.to_device else 0,
            presence=src.presence.current() if src.presence else 0,
            typing=src.typing.current() if src.typing else 0,
            device_lists=src.device_lists.current() if src.device_lists else 0,
        )

    async def sync(self, requester: Requester, since: SyncToken | None, flt: SyncFilter,
                   timeout_ms: int, full_state: bool = False) -> SyncResult:
        """Compute at once; if nothing is new, wait up to timeout for a wake-up and recompute.

        While it waits (a parked long-poll, perhaps thousands at once) it holds no more than
        its arguments and the notifier's future: the empty result is dropped, and the deadline
        is the notifier's, not a timer of its own."""
        user_id = requester.user_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0, timeout_ms) / 1000
        # Only an incremental sync can wait; the others need no place in the notifier's timer.
        waits = since is not None and not full_state and timeout_ms > 0
        woken = False
        while True:
            peeked = await self._peeked(requester)
            # A peeker also listens for the peeked rooms' members, whom every change in the
            # room wakes (as GET /events?room_id= does, homeserver/sync/peek.py).
            if peeked:
                keys: tuple[str, ...] = (user_id, *await self._peek_keys(peeked))
            else:
                peeked, keys = NO_PEEKS, (user_id,)  # shared, not a new dict per parked poll
            fut = self._notifier.subscribe_many(keys, deadline if waits else None)
            try:
                result = await self.compute(requester, since, flt, full_state, peeked)
                if not result.empty or not waits or loop.time() >= deadline:
                    if woken and self.on_woken is not None:
                        self.on_woken(time.monotonic() - self._notifier.last_wake)
                    return result
                del result
                woken = True
                if not await fut or self._notifier.closed:
                    # timed out, or shutting down: answer with what there is
                    return await self.compute(requester, since, flt, full_state)
            finally:
                self._notifier.unsubscribe_many(keys, fut, deadline if waits else None)

    async def _peeked(self, requester: Requester) -> dict[str, int]:
        """MSC2753: the rooms this device peeks into (homeserver/sync/peeks.py)."""
        peeks = self.sources.peeks
        if peeks is None or not requester.device_id:
            return {}
        return await peeks.of_device(requester.user_id, requester.device_id)

    async def _peek_keys(self, peeked: dict[str, int]) -> list[str]:
        keys: list[str] = []
        for room_id in peeked:
            room = await self._rooms.get(room_id)
            if room is not None:
                keys += room.joined_members()
        return keys

    async def invites_blocked(self, user_id: str) -> bool:
        """Invites to this user are not served (spec v1.18 invite blocking)."""
        blocked = self.sources.invite_blocked
        return blocked is not None and await blocked(user_id)

    async def compute(self, requester: Requester, since: SyncToken | None, flt: SyncFilter,
                      full_state: bool, peeked: dict[str, int] | None = None) -> SyncResult:
        user_id = requester.user_id
        now = self.current_token()
        if since is not None:
            since = since.capped(now)  # a token from the future (e.g. after a restore) is now
        join: JsonDict = {}
        invite: JsonDict = {}
        knock: JsonDict = {}
        leave: JsonDict = {}
        memberships = await self._members.rooms_of(user_id)
        ignored = await self._ignored.of(user_id)
        newly_shared: set[str] = set()  # users who came to share a room with this user
        forgotten: set[str] | None = None
        room_account_data: dict[str, list[JsonDict]] = {}
        global_ad: list[JsonDict] = []
        ad_since = since.account_data if since is not None else 0
        if since is None or now.account_data > since.account_data:
            ad_rows = await self._account_data.account_data_since(user_id, ad_since)
            for room_id, etype, content in ad_rows:
                if room_id:
                    if flt.room_account_data.allows_type(etype):
                        room_account_data.setdefault(room_id, []).append(
                            {"type": etype, "content": content})
                elif flt.account_data.allows_type(etype):
                    global_ad.append({"type": etype, "content": content})

        for room_id, m in list(memberships.items()):
            if not flt.allows_room(room_id) or m.stream_ordering > now.events:
                continue
            changed = since is None or m.stream_ordering > since.events
            if m.membership == "join":
                room = await self._rooms.get(room_id)
                if room is None:
                    continue
                if changed and since is not None and \
                        await self._joined_at(room, user_id, since.events):
                    changed = False  # a profile change, not a new join: stay incremental
                body = await self._joined_room(requester, room, since if not changed else None,
                                               now, flt, full_state,
                                               newly_joined=changed and since is not None,
                                               ignored=ignored)
                if since is not None:
                    _note_new_peers(room, user_id, changed, since.events, now.events,
                                    newly_shared)
                ad = room_account_data.get(room_id)
                if ad:
                    body = body or await self._joined_room(requester, room, since, now, flt,
                                                           full_state, force=True,
                                                           ignored=ignored)
                    body["account_data"] = {"events": ad}
                if body:
                    join[room_id] = body
            elif m.membership == "invite" and changed:
                if ignored and await self._invited_by(m.event_id, ignored):
                    continue  # spec: "Servers must not send room invites from ignored users"
                if not await self.invites_blocked(user_id):
                    invite[room_id] = await self._invited_room(room_id, m.event_id)
            elif m.membership == "knock" and changed:
                knock[room_id] = await self._knocked_room(room_id, m.event_id)
            elif m.membership in ("leave", "ban") and (
                    (since is not None and changed) or (since is None and flt.include_leave)):
                if forgotten is None:
                    forgotten = await self._members.forgotten(user_id)
                if room_id in forgotten:
                    continue  # a forgotten room is not shown again, not even with include_leave
                room = await self._rooms.get(room_id)
                if room is None:
                    continue
                body = await self._left_room(requester, room, since, m.stream_ordering, flt)
                leave[room_id] = body

        peek = await self._peeked_rooms(requester, since, now, flt, full_state, memberships,
                                        ignored, peeked)
        ephemeral = await self._ephemeral(user_id, memberships, since, now, flt)
        for room_id, events in ephemeral.items():
            room_body: JsonDict | None = join.get(room_id)
            if room_body is None:
                eroom = await self._rooms.get(room_id)
                if eroom is None:
                    continue
                room_body = await self._joined_room(requester, eroom, since, now, flt,
                                                    full_state, force=True, ignored=ignored)
                join[room_id] = room_body
            room_body["ephemeral"] = {"events": events}
        if self.sources.notifications is not None and join:
            unread = await self.sources.notifications.counts(
                user_id, list(join), flt.timeline.unread_thread_notifications)
            for room_id, extra in unread.items():
                join[room_id].update(extra)

        rooms: JsonDict = {}
        if join:
            rooms["join"] = join
        if invite:
            rooms["invite"] = invite
        if knock:
            rooms["knock"] = knock
        if leave:
            rooms["leave"] = leave
        if peek:
            rooms["peek"] = peek
        body_out: JsonDict = {"next_batch": now.serialize()}
        if rooms:
            body_out["rooms"] = rooms
        if global_ad:
            body_out["account_data"] = {"events": global_ad}
        empty = not rooms and not global_ad
        src = self.sources
        if src.to_device is not None:
            msgs, pos = await src.to_device.for_device(
                user_id, requester.device_id, since.to_device if since else None, now.to_device)
            if pos != now.to_device:
                now = replace(now, to_device=pos)
                body_out["next_batch"] = now.serialize()
            body_out["to_device"] = {"events": msgs}
            empty = empty and not msgs
        if src.presence is not None:
            presence = await src.presence.for_user(user_id, since.presence if since else None,
                                                   now.presence, newly_shared)
            presence = [p for p in presence if flt.presence.allows_type(p.get("type", ""))]
            if presence:
                body_out["presence"] = {"events": presence}
                empty = False
        if src.device_lists is not None and since is not None and (
                since.device_lists < now.device_lists or since.events < now.events):
            dl_changed, dl_left = await src.device_lists.for_sync(
                user_id, memberships, since.device_lists, now.device_lists, since.events,
                now.events)
            if dl_changed or dl_left:
                # An empty list is left out (both are optional), as the reference server does:
                # SyTest reads a present `changed` as "the device lists are up to date".
                lists = {"changed": sorted(dl_changed), "left": sorted(dl_left)}
                body_out["device_lists"] = {k: v for k, v in lists.items() if v}
                empty = False
        if src.key_counts is not None:
            counts, fallback = await src.key_counts.counts(user_id, requester.device_id)
            body_out["device_one_time_keys_count"] = counts
            body_out["device_unused_fallback_key_types"] = fallback
        if flt.event_format == "federation" and rooms:
            await self._federation_format(rooms)
        return SyncResult(body_out, empty, now)

    async def _federation_format(self, rooms: JsonDict) -> None:
        """The filter's event_format "federation" (spec: "`federation` will return the raw
        event as received over federation"): each room event of the join and leave sections
        as its PDU with its event_id; invite and knock state stay stripped."""
        lists = [r[part]["events"] for section in ("join", "leave", "peek")
                 for r in rooms.get(section, {}).values()
                 for part in ("timeline", "state") if part in r]
        ids = [e["event_id"] for events in lists for e in events if "event_id" in e]
        got = await self._cache.get_many(ids)
        for events in lists:
            for i, e in enumerate(events):
                entry = got.get(e.get("event_id", ""))
                if entry is not None:
                    events[i] = {**entry.pdu, "event_id": entry.event_id,
                                 **({"unsigned": e["unsigned"]} if "unsigned" in e else {})}

    async def _peeked_rooms(self, requester: Requester, since: SyncToken | None,
                            now: SyncToken, flt: SyncFilter, full_state: bool,
                            memberships: dict[str, Membership], ignored: frozenset[str],
                            peeked: dict[str, int] | None) -> JsonDict:
        """MSC2753 `rooms.peek`: each peeked room as a joined room is built, read as a
        non-member; a peek started after `since` is sent as a newly joined room is (from the
        room's start within the limit), an older one only with what is new. A room the user
        has joined since is in `join` instead (joining ends the peek)."""
        if peeked is None:
            peeked = await self._peeked(requester)
        out: JsonDict = {}
        for room_id, pos in peeked.items():
            m = memberships.get(room_id)
            if not flt.allows_room(room_id) or pos > now.events or (
                    m is not None and m.membership == "join"):
                continue
            room = await self._rooms.get(room_id)
            if room is None or not _world_readable(room):
                continue  # a room no longer world-readable is no longer shown to a peeker
            fresh = since is None or pos > since.events
            body = await self._joined_room(requester, room, None if fresh else since, now, flt,
                                           full_state, newly_joined=fresh and since is not None,
                                           ignored=ignored, peeking=True)
            if body:
                out[room_id] = body
        return out

    async def _peek_visible(self, room: RoomData, user_id: str,
                            events: list[EventEntry]) -> list[EventEntry]:
        """A peeker's view of `events`: what history visibility shows a non-member, and the
        room's current state events besides (anyone may read a world-readable room's current
        state, GET /state; without them a peek could not start from the room's creation, as
        SyTest's "Local users can peek into world_readable rooms by room ID" expects)."""
        allowed = {e.event_id: e for e in
                   await self._visibility.filter(user_id, events, currently_joined=False)}
        out: list[EventEntry] = []
        for e in events:
            shown = allowed.get(e.event_id)
            if shown is None and e.state_key is not None:
                current = room.state.get((e.type, e.state_key))
                if current is not None and current.event_id == e.event_id:
                    shown = e
            if shown is not None:
                out.append(shown)
        return out

    async def _ephemeral(self, user_id: str, memberships: dict[str, Membership],
                         since: SyncToken | None, now: SyncToken,
                         flt: SyncFilter) -> dict[str, list[JsonDict]]:
        """Typing and receipts for the joined rooms, merged per room."""
        out: dict[str, list[JsonDict]] = {}
        joined = [r for r, m in memberships.items()
                  if m.membership == "join" and flt.allows_room(r)
                  and flt.ephemeral.allows_room(r)]
        if not joined:
            return out
        for source, field in ((self.sources.typing, "typing"),
                              (self.sources.receipts, "receipts")):
            if source is None:
                continue
            upto = getattr(now, field)
            start = getattr(since, field) if since is not None else None
            if start is not None and start >= upto:
                continue
            for room_id, events in (await source.for_rooms(user_id, joined, start,
                                                           upto)).items():
                events = [e for e in events if flt.ephemeral.allows_type(e.get("type", ""))]
                if events:
                    out.setdefault(room_id, []).extend(events)
        return out

    # -------------------------------------------- shared with sliding sync (sliding.py)

    async def timeline(self, room: RoomData, since: int, upto: int,
                       limit: int) -> tuple[list[EventEntry], bool]:
        return await self._timeline_events(room, since, upto, limit)

    async def state_at_stream(self, room: RoomData, pos: int) -> dict[tuple[str, str], str]:
        return await self._state_at_stream(room, pos)

    async def stripped_state(self, room_id: str, membership: str,
                             event_id: str) -> list[JsonDict]:
        """What an invited or knocking user may see of a room (invite_state / knock_state)."""
        if membership == "invite":
            return list((await self._invited_room(room_id, event_id))["invite_state"]["events"])
        return list((await self._knocked_room(room_id, event_id))["knock_state"]["events"])

    def summary(self, room: RoomData, user_id: str) -> JsonDict:
        return self._summary(room, user_id)

    async def served_timeline(self, requester: Requester, room: RoomData,
                               timeline: list[EventEntry], upto: int,
                               joined: bool) -> list[JsonDict]:
        """The timeline in client form, with bundled aggregations (m.thread) when wired."""
        served = [e.to_client(requester.user_id, requester.device_id, with_room_id=False)
                  for e in timeline]
        if self.sources.aggregations is not None and timeline:
            await self.sources.aggregations.bundle_in_room(requester, room, timeline, served,
                                                           upto, joined)
        return served

    # ------------------------------------------------------------------ rooms

    async def _timeline_events(self, room: RoomData, since: int, upto: int, limit: int,
                               flt: EventFilter | None = None
                               ) -> tuple[list[EventEntry], bool]:
        """The newest `limit` events in (since, upto] that `flt` lets through, oldest first,
        and whether some were left out (the limit counts filtered events, as the spec says)."""
        if flt is not None and flt.is_default:
            flt = None
        events = room.events_after(since, upto)
        if events is not None and flt is not None:
            events = [e for e in events if flt.allows(e)]
        if events is not None and (len(events) > limit or since >= room.floor
                                   or room.floor == 0):
            return events[-limit:] if limit else [], len(events) > limit
        entries: list[EventEntry] = []
        batch = limit + 1 if flt is None else max(limit + 1, 100)
        while True:
            async with self._db.connection() as conn:
                rows = await self._events.room_events_between(conn, room.room_id, since, upto,
                                                              batch)
            page = await self._cache.entries_from_rows(list(rows))
            entries = [e for e in page if flt is None or flt.allows(e)] + entries
            if flt is None or len(entries) > limit or len(rows) < batch or not page:
                break
            upto = page[0].stream_ordering - 1
        limited = len(entries) > limit
        return (entries[-limit:] if limit else []), limited

    async def _state_ids_before(self, room: RoomData, first: EventEntry | None,
                                now: int, events: list[EventEntry] | None = None
                                ) -> dict[tuple[str, str], str]:
        if first is None:
            if room.last_stream <= now:
                return {k: e.event_id for k, e in room.state.items()}
            return dict(await self._groups.state_ids(room.state_group))
        state = dict(await self._groups.state_ids(first.state_group_before)) \
            if first.state_group_before else {}
        if ("m.room.create", "") in state or first.type == "m.room.create":
            return state
        # An out-of-band membership (an invite or knock received over federation, kept
        # without the room's state) cannot say what the state was; a later event can.
        for e in (events or [])[1:OUT_OF_BAND_LOOKAHEAD]:
            if e.state_group_before:
                later = dict(await self._groups.state_ids(e.state_group_before))
                if ("m.room.create", "") in later:
                    return later
        return state

    async def _joined_room(self, requester: Requester, room: RoomData, since: SyncToken | None,
                           now: SyncToken, flt: SyncFilter, full_state: bool,
                           force: bool = False, newly_joined: bool = False,
                           ignored: frozenset[str] = frozenset(),
                           peeking: bool = False) -> JsonDict:
        user_id = requester.user_id
        tl_filter = flt.timeline
        limit = tl_filter.limit if tl_filter.limit is not None else DEFAULT_TIMELINE_LIMIT
        since_pos = since.events if since is not None else 0
        if since is not None and not full_state and not force and \
                room.last_stream <= since_pos and room.floor <= since_pos:
            return {}
        events, limited = await self._timeline_events(room, since_pos, now.events, limit,
                                                      tl_filter)
        if newly_joined and (not events or events[0].type != "m.room.create"):
            # A room joined since the last sync: the client has none of its history, and the
            # timeline does not reach back to the room's start, so it is a gap (SyTest "Newly
            # joined room has correct timeline in incremental sync"; Synapse does the same).
            limited = True
        incremental = since is not None and not full_state
        if incremental and not events and not force and not tl_filter.drops_events:
            return {}
        unfiltered = len(events)
        events = (await self._peek_visible(room, user_id, events) if peeking else
                  await self._visibility.filter(user_id, events, currently_joined=True))
        # State events the user may not see in the timeline still make the current state.
        hides_state = len(events) < unfiltered
        if ignored:  # their messages are left out; their state events still make the state
            events = [e for e in events if e.state_key is not None or e.sender not in ignored]
        first = events[0] if events else None
        timeline = [e for e in events if tl_filter.allows(e)]

        state_events: list[EventEntry] = []
        base: dict[tuple[str, str], str] | None = None  # the client's state at timeline start
        if since is None or full_state:
            base = await self._state_ids_before(room, first, now.events, events)
            wanted = list(base.items())
        elif limited and first is not None:
            base = await self._state_ids_before(room, first, now.events, events)
            at_since = await self._state_at_stream(room, since_pos)
            wanted = [(k, v) for k, v in base.items() if at_since.get(k) != v]
        else:
            wanted = []
        if tl_filter.drops_events or hides_state:
            hidden = await self._filtered_out_state(room, since_pos, now.events, first, base,
                                                    timeline)
            if hidden:
                wanted = [(k, v) for k, v in wanted if k not in hidden] + list(hidden.items())
            elif incremental and not events and not force:
                return {}
        if wanted and flt.lazy_load_members and not incremental:
            # In an incremental sync `wanted` is what changed in a gap: membership changes
            # there are state changes the client must learn (SyTest "Gapped incremental syncs
            # include all state changes"), not members to load lazily.
            senders = {e.sender for e in timeline} | {user_id}
            wanted = [(k, v) for k, v in wanted
                      if k[0] != "m.room.member" or k[1] in senders]
        if flt.lazy_load_members and incremental:
            wanted += self._lazy_members(requester, room, timeline, wanted,
                                         flt.state.include_redundant_members)
        if wanted:
            wanted = [(k, v) for k, v in wanted if flt.state.allows_type(k[0])]
            got = await self._cache.get_many(v for _, v in wanted)
            state_events = [got[v] for _, v in wanted if v in got]
        if flt.lazy_load_members:
            self._note_members_sent(requester, room.room_id, [
                e for e in [*state_events, *timeline] if e.type == "m.room.member"])
        if incremental and not force and not timeline and not state_events:
            # Everything new was filtered out (e.g. one's own displayname change under a
            # filter without m.room.member): nothing to tell, so the room is left out rather
            # than sent with an empty timeline (SyTest "A change to displayname should not
            # result in a full state sync"; Synapse leaves it out too).
            return {}

        did, dev = requester.user_id, requester.device_id
        served = await self.served_timeline(requester, room, timeline, now.events, True)
        body: JsonDict = {
            "timeline": {
                "events": served,
                "limited": limited,
                "prev_batch": (PaginationToken(first.depth, first.stream_ordering).serialize()
                               if first is not None else now.serialize()),
            },
            "state": {"events": [e.to_client(did, dev, with_room_id=False)
                                 for e in state_events]},
            "ephemeral": {"events": []},
            "account_data": {"events": []},
            # unread_notifications: added by compute() for every joined room (push counts).
        }
        if since is None or full_state or any(e.type == "m.room.member" for e in events):
            body["summary"] = self._summary(room, user_id)
            if _named(room):
                # m.heroes is for naming a room that has no name (spec: "Required if the
                # room's m.room.name or m.room.canonical_alias state events are unset or
                # empty"); a named room's summary is just the counts, as Synapse sends it.
                del body["summary"]["m.heroes"]
        return body

    async def _filtered_out_state(
        self, room: RoomData, since: int, now: int, first: EventEntry | None,
        base: dict[tuple[str, str], str] | None, timeline: list[EventEntry],
    ) -> dict[tuple[str, str], str]:
        """State changes the timeline filter kept out of the timeline, as the latest value of
        each such key at `now` (Synapse sends these in `state` too, so the client's state is not
        left behind). `base` is the state the client gets for the timeline start (None: the
        state at `since`); only changes after it and not in the timeline count."""
        start = first.stream_ordering if base is not None and first is not None else since
        if base is not None and first is None:
            return {}  # base is already the state at `now`
        in_timeline = {e.event_id for e in timeline}
        window = room.events_after(start, now)
        if window is not None and not any(e.state_key is not None
                                          and e.event_id not in in_timeline for e in window):
            return {}  # the common case, answered from memory
        if base is None:
            base = await self._state_at_stream(room, since)
        if room.last_stream <= now:
            end = {k: e.event_id for k, e in room.state.items()}
        else:
            end = await self._state_at_stream(room, now)
        return {k: v for k, v in end.items() if base.get(k) != v and v not in in_timeline}

    def _lazy_members(self, requester: Requester, room: RoomData, timeline: list[EventEntry],
                      wanted: list[tuple[tuple[str, str], str]],
                      redundant: bool) -> list[tuple[tuple[str, str], str]]:
        """For a lazy-loading incremental sync: the member events of the timeline's senders
        that this device has not been sent yet (all of them with include_redundant_members),
        besides those already `wanted` or in the timeline itself (spec "Lazy-loading room
        members": "the server should send the membership events for the senders")."""
        have = {k for k, _ in wanted} | {(e.type, e.state_key) for e in timeline}
        sent = self._members_sent.get((requester.user_id, requester.device_id, room.room_id),
                                      {})
        out: list[tuple[tuple[str, str], str]] = []
        for sender in dict.fromkeys(e.sender for e in timeline):
            key = ("m.room.member", sender)
            member = room.state.get(key)
            if key in have or member is None:
                continue
            if redundant or sent.get(sender) != member.event_id:
                out.append((key, member.event_id))
        return out

    def _note_members_sent(self, requester: Requester, room_id: str,
                           members: list[EventEntry]) -> None:
        """Remember which member events this device was sent (what lazy loading need not
        send it again); bounded, least recently used first out (a forgotten entry only
        means one member event sent again)."""
        key = (requester.user_id, requester.device_id, room_id)
        sent = self._members_sent.pop(key, {})
        for e in members:
            if e.state_key is not None:
                sent[e.state_key] = e.event_id
        self._members_sent[key] = sent
        while len(self._members_sent) > MEMBERS_SENT_ROOMS:
            self._members_sent.pop(next(iter(self._members_sent)))

    async def _joined_at(self, room: RoomData, user_id: str, pos: int) -> bool:
        event_id = (await self._state_at_stream(room, pos)).get(("m.room.member", user_id))
        if event_id is None:
            return False
        ev = (await self._cache.get_many([event_id])).get(event_id)
        return ev is not None and ev.membership == "join"

    async def _state_at_stream(self, room: RoomData, pos: int) -> dict[tuple[str, str], str]:
        async with self._db.connection() as conn:
            group = await self._events.state_group_at_stream(conn, room.room_id, pos)
        return dict(await self._groups.state_ids(group)) if group else {}

    def _summary(self, room: RoomData, user_id: str) -> JsonDict:
        joined: list[str] = []
        invited: list[str] = []
        for (t, k), e in room.state.items():
            if t != "m.room.member":
                continue
            if e.membership == "join":
                joined.append(k)
            elif e.membership == "invite":
                invited.append(k)
        heroes = sorted(u for u in joined + invited if u != user_id)[:5]
        return {"m.heroes": heroes, "m.joined_member_count": len(joined),
                "m.invited_member_count": len(invited)}

    async def _stripped_room_state(self, room_id: str) -> tuple[RoomData | None, list[JsonDict]]:
        """The room and its stripped state for invite_state / knock_state."""
        room = await self._rooms.get(room_id)
        events: list[JsonDict] = []
        if room is not None:
            for t in INVITE_STATE_TYPES:
                ev = room.state.get((t, ""))
                if ev is not None:
                    events.append(stripped_state(ev.pdu))
        return room, events

    async def _invited_by(self, invite_event_id: str, users: frozenset[str]) -> bool:
        inv = (await self._cache.get_many([invite_event_id])).get(invite_event_id)
        return inv is not None and inv.sender in users

    async def _invited_room(self, room_id: str, invite_event_id: str) -> JsonDict:
        room, events = await self._stripped_room_state(room_id)
        inv = (await self._cache.get_many([invite_event_id])).get(invite_event_id)
        if inv is not None and not events:  # a room on another server: what it sent
            events = _sent_state(inv, "invite_room_state")
        if inv is not None:
            events.append(inv.to_client(with_room_id=False))
            sender = room.state.get(("m.room.member", inv.sender)) if room else None
            if sender is not None:
                events.append(stripped_state(sender.pdu))
        return {"invite_state": {"events": events}}

    async def _knocked_room(self, room_id: str, knock_event_id: str) -> JsonDict:
        _, events = await self._stripped_room_state(room_id)
        ev = (await self._cache.get_many([knock_event_id])).get(knock_event_id)
        if ev is not None and not events:  # a room on another server: what it sent
            events = _sent_state(ev, "knock_room_state")
        if ev is not None:
            events.append(stripped_state(ev.pdu))  # the user's own knock
        return {"knock_state": {"events": events}}

    async def _left_room(self, requester: Requester, room: RoomData, since: SyncToken | None,
                         leave_pos: int, flt: SyncFilter) -> JsonDict:
        limit = flt.timeline.limit if flt.timeline.limit is not None else DEFAULT_TIMELINE_LIMIT
        since_pos = since.events if since is not None else 0
        events, limited = await self._timeline_events(room, since_pos, leave_pos, limit,
                                                      flt.timeline)
        events = await self._visibility.filter(requester.user_id, events, currently_joined=False)
        timeline = [e for e in events if flt.timeline.allows(e)]
        first = events[0] if events else None
        state: list[EventEntry] = []
        # The room's state goes with it when the client has none: an initial sync, or a room
        # joined and left within this batch (SyTest "When user joins and leaves a room in the
        # same batch, the full state is still included in the next sync").
        full = since is None or not await self._joined_at(room, requester.user_id, since_pos)
        if full:
            ids = (await self._state_ids_before(room, first, leave_pos) if first is not None
                   else await self._state_at_stream(room, leave_pos))
            wanted = [v for k, v in ids.items() if flt.state.allows_type(k[0])]
            got = await self._cache.get_many(wanted)
            state = [got[v] for v in wanted if v in got]
        uid, dev = requester.user_id, requester.device_id
        served = await self.served_timeline(requester, room, timeline, leave_pos, False)
        return {
            "timeline": {
                "events": served,
                "limited": limited,
                "prev_batch": (PaginationToken(first.depth, first.stream_ordering).serialize()
                               if first is not None else SyncToken(leave_pos).serialize()),
            },
            "state": {"events": [e.to_client(uid, dev, with_room_id=False) for e in state]},
            "account_data": {"events": []},
        }


def _sent_state(membership: EventEntry, key: str) -> list[JsonDict]:
    """The invite_room_state / knock_room_state another server sent with an invite or knock
    (kept in the event's `unsigned`), without the user's own member event, which the caller
    adds."""
    unsigned = membership.pdu.get("unsigned")
    sent = unsigned.get(key) if isinstance(unsigned, dict) else None
    return [e for e in remote_stripped_state(sent)
            if (e["type"], e["state_key"]) != ("m.room.member", membership.state_key)]


def _note_new_peers(room: RoomData, user_id: str, newly_joined: bool, since: int, now: int,
                    into: set[str]) -> None:
    """Add to `into` the users who came to share `room` with `user_id` in (since, now]: all
    its members when the user joined it then, else those whose join is in that window (as far
    as the in-memory recent events reach; a profile change counts too, harmlessly)."""
    if newly_joined:
        into.update(k for (t, k), e in room.state.items()
                    if t == "m.room.member" and e.membership == "join" and k != user_id)
        return
    for e in room.events_after(since, now) or ():
        if e.type == "m.room.member" and e.membership == "join" and e.state_key != user_id \
                and e.state_key is not None:
            into.add(e.state_key)


def _world_readable(room: RoomData) -> bool:
    hv = room.state.get(("m.room.history_visibility", ""))
    return hv is not None and hv.pdu.get("content", {}).get("history_visibility") == \
        "world_readable"


def _named(room: RoomData) -> bool:
    """Whether the room has a non-empty m.room.name or m.room.canonical_alias alias."""
    name = room.state.get(("m.room.name", ""))
    alias = room.state.get(("m.room.canonical_alias", ""))
    return bool((name is not None and name.pdu.get("content", {}).get("name"))
                or (alias is not None and alias.pdu.get("content", {}).get("alias")))
