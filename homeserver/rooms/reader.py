"""Reading rooms: state and members, single events, /messages paging, /context, relations,
aliases, user directory.

Every path runs the events through `Visibility`, so nobody reads what the room's history
visibility hides from them; who may read a room's state is decided here too, so that every
endpoint that shows state (state, members, joined members, aliases) applies one rule.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.errors import Codes, MatrixError, forbidden, not_found
from homeserver.events.filter import EventFilter
from homeserver.events.model import EventEntry
from homeserver.events.store import EventStore
from homeserver.rooms.members import MembershipIndex
from homeserver.rooms.state import EventCache, RoomData, RoomRegistry, StateGroups, StateKey
from homeserver.rooms.store import RoomStore
from homeserver.rooms.visibility import Visibility
from homeserver.storage.database import Database
from homeserver.streams.tokens import PaginationToken, SyncToken
from homeserver.sync.streams import AggregationSource
from homeserver.types import JsonDict, Requester

MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban")

# Search words for the user directory: runs of word characters, safe to put in a regex.
_WORD = re.compile(r"\w+")


class RoomReader:
    def __init__(self, db: Database, events: EventStore, rooms: RoomStore, cache: EventCache,
                 groups: StateGroups, visibility: Visibility, members: MembershipIndex,
                 registry: RoomRegistry) -> None:
        self._db = db
        self._registry = registry
        self._events = events
        self._rooms = rooms
        self._cache = cache
        self._groups = groups
        self._visibility = visibility
        self._members = members
        # Fetches history from other servers (federation: homeserver/federation/backfill.py)
        # when /messages pages past what this server has: (room, below depth, how many) ->
        # whether any was added.
        self.backfill: Callable[[RoomData, int, int], Awaitable[bool]] | None = None
        # Bundled aggregations (m.thread) on what /messages, /context and /event serve.
        self.aggregations: AggregationSource | None = None

    async def events(self, event_ids: list[str]) -> list[EventEntry]:
        got = await self._cache.get_many(event_ids)
        return [got[i] for i in event_ids if i in got]

    async def state_ids_at(self, ev: EventEntry) -> dict[tuple[str, str], str]:
        return dict(await self._groups.state_ids(ev.state_group))

    # ------------------------------------------------------------------ state and members

    async def _room(self, room_id: str) -> RoomData:
        room = await self._registry.get(room_id)
        if room is None:
            raise not_found("Unknown room")
        return room

    @staticmethod
    def _may_see_state(room: RoomData, user_id: str) -> bool:
        """Current state is for members and, in a world-readable room, for everyone."""
        if room.membership(user_id) == "join":
            return True
        hv = room.state.get(("m.room.history_visibility", ""))
        return hv is not None and hv.pdu["content"].get("history_visibility") == "world_readable"

    async def visible_state(self, requester: Requester, room_id: str) -> dict[StateKey, str]:
        """State event ids the requester may read: current state for members, and for former
        members who left (or were kicked) the state when they left. A banned user sees none:
        as in Synapse, a ban ends access to the room's state, on the banned user's own server
        as well (SyTest: "Remote banned user is kicked and may not rejoin").

        Raises:
            MatrixError: 403 M_FORBIDDEN for anyone else, which (spec: GET /state) includes a
                room that does not exist, so that room existence stays private.
        """
        room = await self._registry.get(room_id)
        if room is None:
            raise forbidden("You are not in this room")
        if self._may_see_state(room, requester.user_id):
            return {k: e.event_id for k, e in room.state.items()}
        member = room.state.get(("m.room.member", requester.user_id))
        if member is not None and member.membership == "leave":
            return await self.state_ids_at(member)
        raise forbidden("You are not in this room")

    async def state_events(self, requester: Requester, room_id: str) -> list[EventEntry]:
        """GET /state: every state event of `visible_state`."""
        return await self.events(list((await self.visible_state(requester, room_id)).values()))

    async def state_event(self, requester: Requester, room_id: str, etype: str,
                          state_key: str) -> EventEntry:
        """GET /state/{type}/{key}: one event of `visible_state`, else 404 M_NOT_FOUND."""
        event_id = (await self.visible_state(requester, room_id)).get((etype, state_key))
        if event_id is None:
            raise not_found("Event not found")
        return (await self.events([event_id]))[0]

    async def members(self, requester: Requester, room_id: str, at: str | None = None,
                      membership: str | None = None,
                      not_membership: str | None = None) -> list[EventEntry]:
        """GET /members: the member events of `visible_state`, or of the state at token `at`
        (which the requester must have been in the room at; an unknown room is then 404).
        `membership` keeps only that membership, `not_membership` drops one."""
        if at is not None:
            await self._room(room_id)
            state = await self.state_ids_at_token(requester, room_id, at)
        else:
            state = await self.visible_state(requester, room_id)
        events = await self.events([v for (t, _), v in state.items() if t == "m.room.member"])
        return [e for e in events
                if (membership is None or e.membership == membership)
                and (not_membership is None or e.membership != not_membership)]

    async def joined_members(self, requester: Requester, room_id: str) -> dict[str, JsonDict]:
        """GET /joined_members: user id -> display name and avatar, for those who may see
        current state (404 for an unknown room, 403 for others)."""
        room = await self._room(room_id)
        if not self._may_see_state(room, requester.user_id):
            raise forbidden("You are not in this room")
        joined: dict[str, JsonDict] = {}
        for (t, k), e in room.state.items():
            if t == "m.room.member" and e.membership == "join":
                content = e.pdu.get("content", {})
                joined[k] = {"display_name": content.get("displayname"),
                             "avatar_url": content.get("avatar_url")}
        return joined

    async def room_aliases(self, requester: Requester, room_id: str) -> list[str]:
        """GET /rooms/{roomId}/aliases: the room's local aliases, for those who may see its
        current state (404 for an unknown room, 403 for others)."""
        room = await self._room(room_id)
        if not self._may_see_state(room, requester.user_id):
            raise forbidden("You are not in this room")
        return await self.aliases(room.room_id)

    async def joined_rooms(self, user_id: str) -> list[str]:
        return await self._members.joined_rooms(user_id)

    async def resolve_alias(self, alias: str) -> str:
        async with self._db.connection() as conn:
            row = await self._rooms.get_alias(conn, alias)
        if row is None:
            raise not_found("Room alias not found")
        return str(row["room_id"])

    async def _check_reader(self, requester: Requester, room: RoomData) -> bool:
        """Whether the user is joined now; refuses users who never had any access."""
        m = room.membership(requester.user_id)
        if m == "join":
            return True
        hv = room.state.get(("m.room.history_visibility", ""))
        if hv is not None and hv.pdu["content"].get("history_visibility") == "world_readable":
            return False
        if m in ("leave", "ban") and room.room_id in await self._members.forgotten(
                requester.user_id):
            raise forbidden("You have forgotten this room")
        if m in ("leave", "ban", "invite"):
            return False
        raise forbidden("You are not allowed to view this room")

    async def served(self, requester: Requester, room: RoomData, events: list[EventEntry],
                     joined: bool) -> list[JsonDict]:
        """Events in client form, with their bundled aggregations when wired."""
        out = [e.to_client(requester.user_id, requester.device_id) for e in events]
        if self.aggregations is not None and events:
            await self.aggregations.bundle_in_room(requester, room, events, out, 2**62, joined)
        return out

    async def check_reader(self, requester: Requester, room: RoomData) -> bool:
        """Whether the user is joined now (False: may read as a former member or a
        world-readable room's guest); M_FORBIDDEN for users who never had any access."""
        return await self._check_reader(requester, room)

    async def visible_event(self, requester: Requester, room: RoomData,
                            event_id: str) -> EventEntry:
        try:
            joined = await self._check_reader(requester, room)
        except MatrixError:
            # Spec: 404 both when the event is missing and when the user may not read it.
            raise not_found("Event not found") from None
        ev = (await self._cache.get_many([event_id])).get(event_id)
        if ev is None or ev.room_id != room.room_id or not ev.served:
            raise not_found("Event not found")
        shown = await self._visibility.filter(requester.user_id, [ev], joined)
        if not shown:
            raise not_found("Event not found")
        return shown[0]  # as this reader may see it (an erased sender's: without content)

    async def state_ids_at_token(self, requester: Requester, room_id: str,
                                 token: str) -> dict[tuple[str, str], str]:
        """State at a token, as the tokens define their point: a sync token ("s...") is the
        position after every event at or below its stream position; a pagination token
        ("t<depth>_<stream>", a sync prev_batch or a /messages start/end) is the point just
        before the event at (depth, stream), so the state there is that event's state before."""
        tok = PaginationToken.parse(token)
        boundary: tuple[str | None, str | None] = (None, None)
        async with self._db.connection() as conn:
            if isinstance(tok, SyncToken):
                group = await self._events.state_group_at_stream(conn, room_id, tok.events)
            else:
                found = await self._events.state_group_at_point(conn, room_id, tok.depth,
                                                                tok.stream)
                group = None if found is None else found[0]
                if found is not None:
                    boundary = found[1], found[2]
        if group is None:
            return {}
        state = dict(await self._groups.state_ids(group)) if group else {}
        mine = state.get(("m.room.member", requester.user_id))
        # A point just before the user's own membership change (their first prev_batch after
        # joining) is theirs to see, as their own membership events are.
        if mine is None and boundary != ("m.room.member", requester.user_id):
            raise forbidden("You were not in the room at that point")
        return state

    async def _point(self, room: RoomData, token: str | None, backwards: bool) -> tuple[int, int]:
        if token is None:
            return (2**62, 2**62) if backwards else (0, 0)
        tok = PaginationToken.parse(token)
        if isinstance(tok, PaginationToken):
            return tok.depth, tok.stream
        async with self._db.connection() as conn:
            return await self._events.position_of_stream(conn, room.room_id, tok.events)

    async def messages(self, requester: Requester, room: RoomData, from_token: str | None,
                       to_token: str | None, backwards: bool, limit: int,
                       flt: EventFilter, as_admin: bool = False) -> JsonDict:
        """/messages; `as_admin` (the admin API) reads past history visibility."""
        joined = True if as_admin else await self._check_reader(requester, room)
        if flt.limit is not None:
            limit = min(limit, flt.limit)
        depth, stream = await self._point(room, from_token, backwards)
        own = room.state.get(("m.room.member", requester.user_id))
        hv = room.state.get(("m.room.history_visibility", ""))
        world_readable = (hv is not None and hv.pdu.get("content", {}).get("history_visibility")
                          == "world_readable")
        if (backwards and not joined and not world_readable and own is not None
                and own.membership in ("leave", "ban")
                and (own.depth, own.stream_ordering + 1) < (depth, stream)):
            # A former member pages back from where they left at the latest (as Synapse; SyTest
            # "Can get rooms/{roomId}/messages for a departed room", from a sync token of
            # now): what came after is not theirs to see, and a page of it would be empty.
            depth, stream = own.depth, own.stream_ordering + 1
        to_point = await self._point(room, to_token, not backwards) if to_token else None
        rows = await self._page(room, depth, stream, backwards, limit, flt)
        if backwards and len(rows) < limit and self.backfill is not None and await \
                self.backfill(room, min(depth, room.depth + 1), limit - len(rows)):
            rows = await self._page(room, depth, stream, backwards, limit, flt)
        events = await self._cache.entries_from_rows(list(rows))
        if to_point is not None:
            if backwards:
                events = [e for e in events if (e.depth, e.stream_ordering) >= to_point]
            else:
                events = [e for e in events if (e.depth, e.stream_ordering) < to_point]
        start = from_token or (PaginationToken(depth, stream).serialize())
        end: str | None = None
        if events and len(rows) == limit:
            last = events[-1]
            end = (PaginationToken(last.depth, last.stream_ordering).serialize() if backwards
                   else PaginationToken(last.depth, last.stream_ordering + 1).serialize())
        elif events and not backwards and to_point is None:
            # Forwards up to the live end: more events may come, so a page that has events
            # says where to go on from later (as Synapse; SyTest "A next_batch token can be
            # used in the v1 messages API"). An empty page has no `end` (spec: omitted when
            # "no further events are available"), so a client paging until there is none
            # stops; backwards, the room's start is the end.
            end = PaginationToken(events[-1].depth, events[-1].stream_ordering + 1).serialize()
        visible = (events if as_admin
                   else await self._visibility.filter(requester.user_id, events, joined))
        visible = [e for e in visible if flt.allows(e)]
        body: JsonDict = {
            "chunk": await self.served(requester, room, visible, joined),
            "start": start,
        }
        if end is not None:
            body["end"] = end
        if flt.lazy_load_members and visible:
            body["state"] = await self._member_state(visible)
        return body

    async def _page(self, room: RoomData, depth: int, stream: int, backwards: bool,
                    limit: int, flt: EventFilter) -> list[Any]:
        async with self._db.connection() as conn:
            return list(await self._events.paginate(
                conn, room.room_id, depth, stream, backwards, limit,
                list(flt.types) if flt.types is not None else None,
                list(flt.not_types) or None,
                list(flt.senders) if flt.senders is not None else None))

    async def _member_state(self, events: list[EventEntry]) -> list[JsonDict]:
        senders = {e.sender for e in events}
        state = await self._groups.state_ids(events[0].state_group)
        ids = [state[("m.room.member", s)] for s in senders if ("m.room.member", s) in state]
        return [e.to_client() for e in await self.events(ids)]

    async def context(self, requester: Requester, room: RoomData, event_id: str, limit: int,
                      flt: EventFilter, as_admin: bool = False) -> JsonDict:
        """/context; `as_admin` (the admin API) reads past membership and history
        visibility."""
        # A user with no access to the room at all is 403 here, as Synapse answers (the spec
        # lists no error for /context; GET /event's 404-for-both is for that endpoint).
        joined = True if as_admin else await self._check_reader(requester, room)
        if as_admin:
            found = (await self._cache.get_many([event_id])).get(event_id)
            if found is None or found.room_id != room.room_id or not found.served:
                raise not_found("Event not found")
            ev = found
        else:
            ev = await self.visible_event(requester, room, event_id)
        before_n = limit // 2
        after_n = limit - before_n
        async with self._db.connection() as conn:
            before_rows = await self._events.paginate(conn, room.room_id, ev.depth,
                                                      ev.stream_ordering, True, before_n)
            after_rows = await self._events.paginate(conn, room.room_id, ev.depth,
                                                     ev.stream_ordering + 1, False, after_n)
        before = await self._cache.entries_from_rows(list(before_rows))
        after = await self._cache.entries_from_rows(list(after_rows))
        start = PaginationToken(ev.depth, ev.stream_ordering)
        if before:
            start = PaginationToken(before[-1].depth, before[-1].stream_ordering)
        end = PaginationToken(ev.depth, ev.stream_ordering + 1)
        if after:
            end = PaginationToken(after[-1].depth, after[-1].stream_ordering + 1)
        uid, dev = requester.user_id, requester.device_id
        if not as_admin:
            before = await self._visibility.filter(uid, before, joined)
            after = await self._visibility.filter(uid, after, joined)
        before = [e for e in before if flt.allows(e)]
        after = [e for e in after if flt.allows(e)]
        state_ids = await self._groups.state_ids(ev.state_group)
        if flt.lazy_load_members:
            senders = {e.sender for e in [ev, *before, *after]}
            state_ids = {k: v for k, v in state_ids.items()
                         if k[0] != "m.room.member" or k[1] in senders}
        state = await self.events(list(state_ids.values()))
        return {
            "event": (await self.served(requester, room, [ev], joined))[0],
            "events_before": await self.served(requester, room, before, joined),
            "events_after": await self.served(requester, room, after, joined),
            "start": start.serialize(),
            "end": end.serialize(),
            "state": [e.to_client(uid, dev) for e in state],
        }

    async def relations(self, requester: Requester, room: RoomData, event_id: str,
                        rel_type: str | None, event_type: str | None, from_token: str | None,
                        limit: int, backwards: bool) -> tuple[list[EventEntry], str | None]:
        await self.visible_event(requester, room, event_id)
        joined = await self._check_reader(requester, room)
        before: int | None = None
        if from_token is not None:
            digits = from_token[1:] if from_token.startswith("r") else from_token
            # ASCII digits within BIGINT range: the position reaches SQL
            if (not (digits.isascii() and digits.isdigit()) or len(digits) > 19
                    or int(digits) >= 2**63):
                raise MatrixError(400, Codes.INVALID_PARAM, "Invalid from token")
            before = int(digits)
        async with self._db.connection() as conn:
            rows = await self._events.relations(conn, room.room_id, event_id, rel_type,
                                                event_type, before, limit, backwards)
        events = await self._cache.entries_from_rows(list(rows))
        next_batch = f"r{events[-1].stream_ordering}" if len(rows) == limit and events else None
        return await self._visibility.filter(requester.user_id, events, joined), next_batch

    async def public_rooms(self) -> list[str]:
        async with self._db.connection() as conn:
            return await self._rooms.public_room_ids(conn)

    async def aliases(self, room_id: str) -> list[str]:
        async with self._db.connection() as conn:
            return await self._rooms.aliases_for_room(conn, room_id)

    async def search_user_directory(self, requester: Requester, term: str,
                                    limit: int) -> tuple[list[JsonDict], bool]:
        """Users the requester may find (spec "User directory"): those sharing a joined room
        with them and those joined to public or world-readable rooms, whose user id or display
        name has every word of `term` as a word prefix, case-insensitively.

        Returns (results, limited): at most `limit` results and whether more matched.
        """
        words = _WORD.findall(term.lower())
        if not words:
            return [], False
        async with self._db.connection() as conn:
            rows = await self._rooms.search_user_directory(
                conn, requester.user_id, words, term.strip().lower(), limit + 1)
        results: list[JsonDict] = []
        for r in rows[:limit]:
            user: JsonDict = {"user_id": r["user_id"]}
            if r["displayname"] is not None:
                user["display_name"] = r["displayname"]
            if r["avatar_url"] is not None:
                user["avatar_url"] = r["avatar_url"]
            results.append(user)
        return results, len(rows) > limit
