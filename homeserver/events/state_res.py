"""State resolution: the room state at a point where branches of the room DAG meet.

Every server must reach the same answer from the same events, whatever order it learnt them
in, so this module is pure (no I/O beyond the injected :class:`EventFetcher`), sorts every tie
down to the event ID, and never depends on the order of the state sets or of the fetcher's
answer. Room version 1 uses the original algorithm (:mod:`state_res_v1`); versions 2-11 use
state resolution v2; version 12 uses v2.1 (MSC4297), which starts the power-event replay from an
empty map and also replays the conflicted state subgraph, fixing two kinds of "state reset".

Two choices follow the other implementations (Synapse, Ruma) where the spec's prose is loose:

* the auth chain of a state set *includes* the set's own events, so events every set holds are
  never in the auth difference;
* step 1 grows the power events by walking ``auth_events`` links only through events of the full
  conflicted set, and Kahn's algorithm uses exactly those links.

Resolution can run whenever branches of a busy room merge, so the work is kept to what the
conflict needs: agreeing sets return at once, only the conflicted events' auth chains are
fetched in full, and of the unconflicted state only the events the auth checks read (plus a
search of its auth chains that stops once the few events it must classify are found).
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from homeserver.events.auth import AuthError, auth_event_types, check_auth, user_power_level
from homeserver.events.format import event_ids_of as referenced_ids  # either PDU format
from homeserver.events.hashing import create_event_id_for_room
from homeserver.events.room_versions import RoomVersion

JsonDict = dict[str, Any]
StateKey = tuple[str, str]

CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
_PL_KEY: StateKey = (POWER_LEVELS, "")
_CREATE_KEY: StateKey = (CREATE, "")


class EventFetcher(Protocol):
    async def get_events(self, event_ids: Iterable[str]) -> Mapping[str, JsonDict]:
        """PDU dicts by event id; ids it does not know (or that were rejected) are left out."""
        ...


# ----------------------------------------------------------------------------- PDU helpers


def state_key_of(pdu: Mapping[str, Any]) -> StateKey | None:
    """``(type, state_key)`` of a state event; ``None`` for a message event."""
    event_type, state_key = pdu.get("type"), pdu.get("state_key")
    if isinstance(event_type, str) and isinstance(state_key, str):
        return (event_type, state_key)
    return None


def origin_ts(pdu: Mapping[str, Any]) -> int:
    ts = pdu.get("origin_server_ts")
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else 0


def content_of(pdu: Mapping[str, Any]) -> JsonDict:
    content = pdu.get("content")
    return content if isinstance(content, dict) else {}


def is_power_event(pdu: Mapping[str, Any]) -> bool:
    """Power levels, join rules, and kicks/bans: the events that can take abilities away."""
    key = state_key_of(pdu)
    if key is None:
        return False
    if key == _PL_KEY or key == (JOIN_RULES, ""):
        return True
    return (
        key[0] == MEMBER
        and content_of(pdu).get("membership") in ("leave", "ban")
        and pdu.get("sender") != key[1]
    )


def required_auth_keys(rv: RoomVersion, pdu: Mapping[str, Any]) -> list[StateKey]:
    state_key = pdu.get("state_key")
    return auth_event_types(
        rv,
        str(pdu.get("type")),
        str(pdu.get("sender")),
        state_key if isinstance(state_key, str) else None,
        content_of(pdu),
    )


def passes_auth(
    rv: RoomVersion, pdu: Mapping[str, Any], state: Mapping[StateKey, JsonDict]
) -> bool:
    try:
        check_auth(rv, pdu, state)
    except (AuthError, ValueError):
        return False
    return True


class EventCache:
    """The events one resolution looks at, fetched in batches and each asked for only once."""

    def __init__(self, fetcher: EventFetcher) -> None:
        self._fetcher = fetcher
        self._pdus: dict[str, JsonDict] = {}
        self._asked: set[str] = set()
        self._auth: dict[str, tuple[str, ...]] = {}

    async def load(self, event_ids: Iterable[str]) -> None:
        wanted = sorted(set(event_ids) - self._asked)
        if not wanted:
            return
        self._asked.update(wanted)
        found = await self._fetcher.get_events(wanted)
        for event_id in wanted:
            pdu = found.get(event_id)
            if isinstance(pdu, dict):
                self._pdus[event_id] = pdu

    async def load_auth_closure(self, event_ids: Iterable[str]) -> None:
        """Fetch the events and their whole auth chains, one round trip per DAG level."""
        frontier = set(event_ids) - self._asked
        while frontier:
            await self.load(frontier)
            frontier = {a for e in frontier for a in self.auth_ids(e)} - self._asked

    async def find_in_closure(self, starts: Iterable[str], targets: set[str]) -> set[str]:
        """Which ``targets`` are among ``starts`` or their auth chains; the walk stops as
        soon as all are found."""
        found: set[str] = set()
        seen: set[str] = set()
        frontier = set(starts)
        while frontier and found != targets:
            await self.load(frontier)
            seen |= frontier
            found |= frontier & targets
            frontier = {a for e in frontier for a in self.auth_ids(e)} - seen
        return found

    def get(self, event_id: str) -> JsonDict | None:
        return self._pdus.get(event_id)

    def known(self) -> list[JsonDict]:
        return list(self._pdus.values())

    def auth_ids(self, event_id: str) -> tuple[str, ...]:
        cached = self._auth.get(event_id)
        if cached is None:
            pdu = self._pdus.get(event_id)
            refs = referenced_ids(pdu.get("auth_events")) if pdu is not None else []
            cached = self._auth[event_id] = tuple(dict.fromkeys(refs))
        return cached

    def closure(self, starts: Iterable[str]) -> set[str]:
        """The known events among ``starts`` and everything they reach through auth_events."""
        seen: set[str] = set()
        stack = [e for e in starts if e in self._pdus]
        while stack:
            event_id = stack.pop()
            if event_id in seen:
                continue
            seen.add(event_id)
            stack.extend(a for a in self.auth_ids(event_id) if a in self._pdus and a not in seen)
        return seen


# --------------------------------------------------------------------------- entry point


async def resolve_state(
    rv: RoomVersion, state_sets: Sequence[Mapping[StateKey, str]], fetcher: EventFetcher
) -> dict[StateKey, str]:
    """Resolve state maps of event IDs (e.g. the states after each prev_event) into one.

    When every set agrees the answer is returned without fetching anything.
    """
    if not state_sets:
        return {}
    first = state_sets[0]
    if all(s == first for s in state_sets[1:]):
        return dict(first)
    if getattr(rv, "state_res_v1", False):
        from homeserver.events.state_res_v1 import resolve_state_v1

        return await resolve_state_v1(rv, state_sets, fetcher)
    return await _V2Resolver(rv, EventCache(fetcher)).resolve(state_sets)


def separate(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], set[StateKey]]:
    """The v2 unconflicted state map and the keys whose values are conflicted.

    A key missing from some set is conflicted even if every set that has it agrees.
    """
    all_keys: set[StateKey] = set()
    for s in state_sets:
        all_keys.update(s)
    unconflicted: dict[StateKey, str] = {}
    conflicted: set[StateKey] = set()
    for key in all_keys:
        values = {s.get(key) for s in state_sets}
        if len(values) == 1 and None not in values:
            unconflicted[key] = state_sets[0][key]
        else:
            conflicted.add(key)
    return unconflicted, conflicted


# ------------------------------------------------------------------------- v2 and v2.1


class _V2Resolver:
    def __init__(self, rv: RoomVersion, events: EventCache) -> None:
        self.rv = rv
        self.events = events
        self._create_ids: dict[str, str | None] = {}
        self._pl_parent: dict[str, str | None] = {}

    async def resolve(self, state_sets: Sequence[Mapping[StateKey, str]]) -> dict[StateKey, str]:
        ev = self.events
        unconflicted, conflicted_keys = separate(state_sets)
        # Only the conflicted events' auth chains are walked in full; of the (possibly huge)
        # unconflicted state, only what the checks below read is fetched.
        conflicted_ids = {s[k] for s in state_sets for k in conflicted_keys if k in s}
        await ev.load_auth_closure(conflicted_ids)
        await self._load_create_events()
        conflicted = {e for e in conflicted_ids if ev.get(e)}

        full = set(conflicted)
        if self.rv.state_res_v2_1:
            full |= self._conflicted_subgraph(conflicted)
        full |= await self._auth_difference(state_sets, unconflicted, conflicted_keys, full)
        full = {e for e in full if (pdu := ev.get(e)) is not None and state_key_of(pdu)}

        read_keys = {_PL_KEY}
        for event_id in full:
            read_keys.update(required_auth_keys(self.rv, ev.get(event_id) or {}))
        await ev.load(unconflicted[k] for k in read_keys if k in unconflicted)

        # Step 1: power events, and the conflicted events they depend on.
        power = self._power_events_and_auth(full)
        ordered_power = self._reverse_topological_power_order(power)
        # Step 2.
        base = {} if self.rv.state_res_v2_1 else dict(unconflicted)
        partial = self._iterative_auth_checks(base, ordered_power)
        # Step 3: everything else, against the resolved power levels' mainline.
        await self._load_mainline(partial.get(_PL_KEY))
        others = self._mainline_order(full - power, partial.get(_PL_KEY))
        # Step 4.
        resolved = self._iterative_auth_checks(partial, others)
        # Step 5.
        resolved.update(unconflicted)
        return resolved

    # --- event access

    async def _load_create_events(self) -> None:
        """v12 events do not cite the create event; it is named by the room ID instead."""
        if not self.rv.room_id_is_create_event_hash:
            return
        # Every state set holds the create event, so this is normally already loaded.
        wanted = set()
        for room_id in self._room_ids():
            create_id = self._create_id(room_id)
            if create_id is not None:
                wanted.add(create_id)
        await self.events.load(wanted)

    def _room_ids(self) -> set[str]:
        room_ids = {pdu.get("room_id") for pdu in self.events.known()}
        return {r for r in room_ids if isinstance(r, str)}

    def _create_id(self, room_id: str) -> str | None:
        if room_id not in self._create_ids:
            try:
                self._create_ids[room_id] = create_event_id_for_room(room_id)
            except ValueError:
                self._create_ids[room_id] = None
        return self._create_ids[room_id]

    def _auth_state(self, pdu: Mapping[str, Any], event_id: str) -> dict[StateKey, JsonDict]:
        """The event's auth events as a state map (unknown/rejected ones left out)."""
        state: dict[StateKey, JsonDict] = {}
        for auth_id in self.events.auth_ids(event_id):
            auth_pdu = self.events.get(auth_id)
            key = state_key_of(auth_pdu) if auth_pdu is not None else None
            if auth_pdu is not None and key is not None:
                state[key] = auth_pdu
        self._add_create(pdu, state)
        return state

    def _add_create(self, pdu: Mapping[str, Any], state: dict[StateKey, JsonDict]) -> None:
        room_id = pdu.get("room_id")
        if self.rv.room_id_is_create_event_hash and isinstance(room_id, str):
            create_id = self._create_id(room_id)
            create = self.events.get(create_id) if create_id else None
            if create is not None:
                state.setdefault(_CREATE_KEY, create)

    # --- the full conflicted set

    async def _auth_difference(
        self,
        state_sets: Sequence[Mapping[StateKey, str]],
        unconflicted: Mapping[StateKey, str],
        conflicted_keys: set[StateKey],
        already_full: set[str],
    ) -> set[str]:
        """Events in some state sets' full auth chains but not all of them.

        With U the unconflicted events and D_i the chain of set i's other events, the chain of
        set i is closure(U) | D_i, so the difference is (union D - intersection D) - closure(U).
        closure(U) is most of the room, so it is only searched for the candidates that are
        not in the full conflicted set anyway, and only until they have all been found.
        """
        per_set = [self.events.closure(s[k] for k in conflicted_keys if k in s) for s in state_sets]
        union: set[str] = set().union(*per_set)
        unconflicted_ids = set(unconflicted.values())
        candidates = union - per_set[0].intersection(*per_set[1:]) - unconflicted_ids
        pending = candidates - already_full
        if pending:
            candidates -= await self.events.find_in_closure(unconflicted_ids, pending)
        return candidates

    def _conflicted_subgraph(self, conflicted: set[str]) -> set[str]:
        """Events on an auth_events path from one conflicted event to another (MSC4297)."""
        ev = self.events
        reaches: dict[str, bool] = {}
        for start in conflicted:
            if start in reaches:
                continue
            # Iterative post-order DFS: a node reaches a conflicted event if one of its auth
            # events is conflicted or reaches one.
            stack: list[tuple[str, bool]] = [(start, False)]
            while stack:
                node, expanded = stack.pop()
                if expanded:
                    reaches[node] = any(
                        a in conflicted or reaches.get(a, False) for a in ev.auth_ids(node)
                    )
                    continue
                if node in reaches:
                    continue
                reaches[node] = False  # visiting; the DAG has no cycles to revisit it through
                stack.append((node, True))
                stack.extend(
                    (a, False) for a in ev.auth_ids(node) if a not in reaches and ev.get(a)
                )
        return conflicted | {e for e, ok in reaches.items() if ok}

    def _power_events_and_auth(self, full: set[str]) -> set[str]:
        selected: set[str] = set()
        stack = [e for e in full if is_power_event(self.events.get(e) or {})]
        while stack:
            event_id = stack.pop()
            if event_id in selected:
                continue
            selected.add(event_id)
            stack.extend(a for a in self.events.auth_ids(event_id) if a in full)
        return selected

    # --- orderings

    def _sender_power(self, event_id: str) -> float:
        pdu = self.events.get(event_id) or {}
        level = user_power_level(self.rv, str(pdu.get("sender")), self._auth_state(pdu, event_id))
        return float(level)

    def _reverse_topological_power_order(self, event_ids: set[str]) -> list[str]:
        """Kahn's algorithm over the auth links inside ``event_ids``, oldest first; among the
        ready events the sender with more power goes first, then the earlier timestamp, then
        the smaller event ID."""
        waiting_on: dict[str, int] = {}
        cited_by: dict[str, list[str]] = defaultdict(list)
        for event_id in event_ids:
            inside = [a for a in self.events.auth_ids(event_id) if a in event_ids]
            waiting_on[event_id] = len(inside)
            for auth_id in inside:
                cited_by[auth_id].append(event_id)

        def sort_key(event_id: str) -> tuple[float, int, str]:
            pdu = self.events.get(event_id) or {}
            return (-self._sender_power(event_id), origin_ts(pdu), event_id)

        ready = [sort_key(e) for e, n in waiting_on.items() if n == 0]
        heapq.heapify(ready)
        ordered: list[str] = []
        while ready:
            event_id = heapq.heappop(ready)[2]
            ordered.append(event_id)
            for parent in cited_by[event_id]:
                waiting_on[parent] -= 1
                if waiting_on[parent] == 0:
                    heapq.heappush(ready, sort_key(parent))
        return ordered

    async def _load_mainline(self, power_levels_id: str | None) -> None:
        """Fetch the chain of power levels behind the resolved one (it may be unconflicted,
        and so not fetched with the conflicted events' auth chains)."""
        seen: set[str] = set()
        current = power_levels_id
        while current is not None and current not in seen:
            seen.add(current)
            await self.events.load([current])
            await self.events.load(self.events.auth_ids(current))
            current = self._pl_auth_event(current)

    def _pl_auth_event(self, event_id: str) -> str | None:
        """The m.room.power_levels event among this event's auth events, if any."""
        if event_id not in self._pl_parent:
            found = None
            for auth_id in self.events.auth_ids(event_id):
                pdu = self.events.get(auth_id)
                if pdu is not None and state_key_of(pdu) == _PL_KEY:
                    found = auth_id
                    break
            self._pl_parent[event_id] = found
        return self._pl_parent[event_id]

    def _mainline_order(self, event_ids: set[str], power_levels_id: str | None) -> list[str]:
        mainline: dict[str, float] = {}
        current = power_levels_id
        while current is not None and current not in mainline:
            mainline[current] = len(mainline)
            current = self._pl_auth_event(current)

        # Position of the first mainline event on the chain starting at a power levels event.
        memo: dict[str, float] = dict(mainline)

        def chain_position(pl_id: str | None) -> float:
            path: list[str] = []
            while pl_id is not None and pl_id not in memo and pl_id not in path:
                path.append(pl_id)
                pl_id = self._pl_auth_event(pl_id)
            found = memo.get(pl_id, math.inf) if pl_id is not None else math.inf
            for visited in path:
                memo[visited] = found
            return found

        def sort_key(event_id: str) -> tuple[float, int, str]:
            position = chain_position(self._pl_auth_event(event_id))
            return (-position, origin_ts(self.events.get(event_id) or {}), event_id)

        return sorted(event_ids, key=sort_key)

    # --- iterative auth checks

    def _iterative_auth_checks(
        self, base: Mapping[StateKey, str], ordered: Iterable[str]
    ) -> dict[StateKey, str]:
        state = dict(base)
        for event_id in ordered:
            pdu = self.events.get(event_id)
            key = state_key_of(pdu) if pdu is not None else None
            if pdu is None or key is None:
                continue
            auth_state = self._auth_state(pdu, event_id)
            for needed in required_auth_keys(self.rv, pdu):
                resolved_id = state.get(needed)
                resolved = self.events.get(resolved_id) if resolved_id else None
                if resolved is not None:
                    auth_state[needed] = resolved
            if passes_auth(self.rv, pdu, auth_state):
                state[key] = event_id
        return state
