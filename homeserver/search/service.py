"""POST /search (room_events): full-text search over the events of the user's joined rooms, with
history visibility applied to every result and to its context.

The match and the ranking are PostgreSQL's (migrations/0028_search.sql, search/store.py); this
module pages through the matches in rank or recent order, drops what the user may not see
(`Visibility`, as /messages does), and adds the context, profiles, state and groupings the
request asks for. `count` is the number of matches before visibility (the spec's "approximate").
Encrypted rooms' messages are ciphertext and never match.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import Codes, MatrixError
from homeserver.events.filter import EventFilter
from homeserver.events.model import EventEntry
from homeserver.events.store import EventStore
from homeserver.rooms.members import MembershipIndex
from homeserver.rooms.state import EventCache, RoomRegistry, StateGroups
from homeserver.rooms.threads import ThreadService
from homeserver.rooms.visibility import Visibility
from homeserver.search.store import SearchStore
from homeserver.storage.database import Database
from homeserver.streams.tokens import PaginationToken
from homeserver.types import JsonDict, Requester

KEY_TYPES = {"content.body": "m.room.message", "content.name": "m.room.name",
             "content.topic": "m.room.topic"}
DEFAULT_LIMIT = 10
MAX_LIMIT = 50
MAX_CONTEXT = 20


class SearchService:
    def __init__(self, db: Database, store: SearchStore, events: EventStore, cache: EventCache,
                 groups: StateGroups, visibility: Visibility, members: MembershipIndex,
                 rooms: RoomRegistry, threads: ThreadService | None = None) -> None:
        self._db = db
        self._store = store
        self._events = events
        self._cache = cache
        self._groups = groups
        self._visibility = visibility
        self._members = members
        self._rooms = rooms
        self._threads = threads

    async def search(self, requester: Requester, body: JsonDict,
                     next_batch: str | None) -> JsonDict:
        """`body` has passed client_api/schemas/search.json."""
        spec = body["search_categories"].get("room_events")
        if spec is None:
            return {"search_categories": {}}
        return {"search_categories": {
            "room_events": await self._room_events(requester, spec, next_batch)}}

    async def _room_events(self, requester: Requester, spec: JsonDict,
                           next_batch: str | None) -> JsonDict:
        uid, dev = requester.user_id, requester.device_id
        term: str = spec["search_term"]
        flt = EventFilter.parse(spec.get("filter") or {})
        by_rank = spec.get("order_by", "rank") == "rank"
        keys = spec.get("keys") or list(KEY_TYPES)
        types = [KEY_TYPES[k] for k in keys if flt.allows_type(KEY_TYPES[k])]
        limit = min(flt.limit if flt.limit else DEFAULT_LIMIT, MAX_LIMIT)
        offset, before = _parse_batch(next_batch, by_rank)
        memberships = await self._members.rooms_of(uid)
        rooms = [r for r, m in memberships.items()
                 if m.membership == "join" and flt.allows_room(r)]
        senders = list(flt.senders) if flt.senders is not None else None
        not_senders = list(flt.not_senders) or None

        results: list[tuple[float, EventEntry]] = []
        next_token: str | None = None
        async with self._db.connection() as conn:
            count = await self._store.count(conn, term, rooms, types, senders, not_senders) \
                if rooms and types else 0
            highlights = await self._store.lexemes(conn, term)
        batch = limit * 2
        while rooms and types and len(results) < limit:
            async with self._db.connection() as conn:
                rows = await self._store.search(conn, term, rooms, types, senders, not_senders,
                                                by_rank, offset, before, batch)
            entries = await self._cache.entries_from_rows(list(rows))
            ranks = {r["event_id"]: float(r["rank"]) for r in rows}
            visible = {e.event_id for e in await self._visibility.filter(
                uid, entries, currently_joined=True)}
            for i, e in enumerate(entries):
                if e.event_id in visible and flt.allows(e):
                    results.append((ranks[e.event_id], e))
                    if len(results) == limit:
                        if i + 1 < len(entries) or len(rows) == batch:
                            next_token = (f"r{offset + i + 1}" if by_rank
                                          else f"s{e.stream_ordering}")
                        break
            if len(results) == limit or len(rows) < batch:
                break
            if by_rank:
                offset += len(rows)
            else:
                before = rows[-1]["stream_ordering"]

        ctx_spec = spec.get("event_context")
        served = [e.to_client(uid, dev) for _, e in results]
        if self._threads is not None and results:
            await self._threads.bundle(requester, [e for _, e in results], served)
        out_results: list[JsonDict] = []
        for (rank, e), event in zip(results, served, strict=True):
            item: JsonDict = {"rank": rank, "result": event}
            if ctx_spec is not None:
                item["context"] = await self._context(requester, e, ctx_spec)
            out_results.append(item)
        out: JsonDict = {"count": count, "highlights": highlights, "results": out_results}
        if next_token is not None:
            out["next_batch"] = next_token
        if spec.get("include_state"):
            state: JsonDict = {}
            for room_id in {e.room_id for _, e in results}:
                room = await self._rooms.get(room_id)
                if room is not None:
                    state[room_id] = [ev.to_client(uid, dev) for ev in room.state.values()]
            out["state"] = state
        group_by = (spec.get("groupings") or {}).get("group_by") or []
        if group_by:
            out["groups"] = _groups(results, [g["key"] for g in group_by])
        return out

    async def _context(self, requester: Requester, ev: EventEntry,
                       spec: dict[str, Any]) -> JsonDict:
        uid, dev = requester.user_id, requester.device_id
        n_before = min(spec.get("before_limit", 5), MAX_CONTEXT)
        n_after = min(spec.get("after_limit", 5), MAX_CONTEXT)
        async with self._db.connection() as conn:
            before_rows = await self._events.paginate(conn, ev.room_id, ev.depth,
                                                      ev.stream_ordering, True, n_before)
            after_rows = await self._events.paginate(conn, ev.room_id, ev.depth,
                                                     ev.stream_ordering + 1, False, n_after)
        before = await self._cache.entries_from_rows(list(before_rows))
        after = await self._cache.entries_from_rows(list(after_rows))
        start = before[-1] if before else ev
        end = after[-1] if after else ev
        before = await self._visibility.filter(uid, before, currently_joined=True)
        after = await self._visibility.filter(uid, after, currently_joined=True)
        body: JsonDict = {
            "start": PaginationToken(start.depth, start.stream_ordering).serialize(),
            "end": PaginationToken(end.depth, end.stream_ordering + 1).serialize(),
            "events_before": [e.to_client(uid, dev) for e in before],
            "events_after": [e.to_client(uid, dev) for e in after],
        }
        if spec.get("include_profile"):
            state = await self._groups.state_ids(ev.state_group)
            senders = {e.sender for e in [ev, *before, *after]}
            ids = {s: state[("m.room.member", s)] for s in senders
                   if ("m.room.member", s) in state}
            got = await self._cache.get_many(ids.values())
            profiles: JsonDict = {}
            for sender, event_id in ids.items():
                member = got.get(event_id)
                content = member.pdu.get("content", {}) if member is not None else {}
                profiles[sender] = {k: content[k] for k in ("displayname", "avatar_url")
                                    if isinstance(content.get(k), str)}
            body["profile_info"] = profiles
        return body


def _parse_batch(token: str | None, by_rank: bool) -> tuple[int, int | None]:
    """(offset, before_stream) from a next_batch this module made."""
    if token is None:
        return 0, None
    kind, digits = token[:1], token[1:]
    if kind != ("r" if by_rank else "s") or not digits.isascii() or not digits.isdigit() \
            or len(digits) > 18:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid next_batch")
    n = int(digits)
    return (n, None) if by_rank else (0, n)


def _groups(results: list[tuple[float, EventEntry]], keys: list[str]) -> JsonDict:
    out: JsonDict = {}
    for key in keys:
        groups: dict[str, JsonDict] = {}
        for _, e in results:
            value = e.room_id if key == "room_id" else e.sender
            g = groups.setdefault(value, {"results": [], "order": len(groups) + 1})
            g["results"].append(e.event_id)
        out[key] = groups
    return out
