"""The original state resolution algorithm, used only by room version 1.

It is known to reset state (the reason v2 exists), but servers in an old room must still agree
with each other, so it is kept as the spec's v1 text describes it: power levels, then join
rules, then memberships are replayed in depth order until one fails auth; every other conflict
takes the deepest event that passes auth.

Where the text is silent this follows Synapse, the implementation those rooms grew up with:
member conflicts are each resolved against the same state (with the resolved power levels and
join rules), and when no candidate for an ordinary key passes auth the shallowest one is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from homeserver.events.room_versions import RoomVersion
from homeserver.events.state_res import (
    _CREATE_KEY,
    _PL_KEY,
    JOIN_RULES,
    MEMBER,
    EventCache,
    EventFetcher,
    JsonDict,
    StateKey,
    passes_auth,
    required_auth_keys,
)


def _depth(pdu: Mapping[str, object]) -> int:
    depth = pdu.get("depth")
    return depth if isinstance(depth, int) and not isinstance(depth, bool) else 0


def _sha1(event_id: str) -> str:
    return hashlib.sha1(event_id.encode("utf-8")).hexdigest()


def separate_v1(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """v1 conflicts are only keys with two or more different event IDs; a key that some sets
    lack is taken from the sets that have it."""
    values: dict[StateKey, set[str]] = {}
    for s in state_sets:
        for key, event_id in s.items():
            values.setdefault(key, set()).add(event_id)
    unconflicted = {k: next(iter(v)) for k, v in values.items() if len(v) == 1}
    conflicted = {k: v for k, v in values.items() if len(v) > 1}
    return unconflicted, conflicted


async def resolve_state_v1(
    rv: RoomVersion, state_sets: Sequence[Mapping[StateKey, str]], fetcher: EventFetcher
) -> dict[StateKey, str]:
    unconflicted, conflicted = separate_v1(state_sets)
    if not conflicted:
        return unconflicted
    events = EventCache(fetcher)
    await events.load(e for ids in conflicted.values() for e in ids)
    candidates: dict[StateKey, list[tuple[str, JsonDict]]] = {}
    for key, ids in conflicted.items():
        known = [(e, pdu) for e in ids if (pdu := events.get(e)) is not None]
        if known:
            candidates[key] = known

    # Only the unconflicted events the auth rules will look at are needed.
    wanted = {_CREATE_KEY, _PL_KEY, (JOIN_RULES, "")}
    for known in candidates.values():
        for _, pdu in known:
            wanted.update(required_auth_keys(rv, pdu))
    await events.load(unconflicted[k] for k in wanted if k in unconflicted)
    state: dict[StateKey, JsonDict] = {}
    for key in wanted:
        pdu = events.get(unconflicted[key]) if key in unconflicted else None
        if pdu is not None:
            state[key] = pdu

    resolved: dict[StateKey, tuple[str, JsonDict]] = {}
    if _PL_KEY in candidates:
        resolved[_PL_KEY] = _replay_until_failure(rv, _PL_KEY, candidates[_PL_KEY], state)
        state[_PL_KEY] = resolved[_PL_KEY][1]
    for event_type in (JOIN_RULES, MEMBER):
        keys = sorted(k for k in candidates if k[0] == event_type)
        step = {k: _replay_until_failure(rv, k, candidates[k], state) for k in keys}
        resolved.update(step)
        state.update({k: pdu for k, (_, pdu) in step.items()})
    for key in sorted(set(candidates) - set(resolved)):
        resolved[key] = _first_allowed(rv, candidates[key], state)

    result = dict(unconflicted)
    result.update({k: event_id for k, (event_id, _) in resolved.items()})
    return result


def _replay_until_failure(
    rv: RoomVersion,
    key: StateKey,
    candidates: list[tuple[str, JsonDict]],
    state: Mapping[StateKey, JsonDict],
) -> tuple[str, JsonDict]:
    """Ascending depth, then descending sha1(event_id); the first is taken as is and each
    later one only while it passes auth against the state so far."""
    ordered = sorted(candidates, key=lambda c: _sha1(c[0]), reverse=True)
    ordered.sort(key=lambda c: _depth(c[1]))
    winner = ordered[0]
    working = dict(state)
    working[key] = winner[1]
    for candidate in ordered[1:]:
        if not passes_auth(rv, candidate[1], working):
            break
        winner = candidate
        working[key] = candidate[1]
    return winner


def _first_allowed(
    rv: RoomVersion,
    candidates: list[tuple[str, JsonDict]],
    state: Mapping[StateKey, JsonDict],
) -> tuple[str, JsonDict]:
    """The deepest (then lowest sha1) candidate that passes auth, else the last one tried."""
    ordered = sorted(candidates, key=lambda c: (-_depth(c[1]), _sha1(c[0])))
    for candidate in ordered:
        if passes_auth(rv, candidate[1], state):
            return candidate
    return ordered[-1]
