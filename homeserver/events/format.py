"""The shape of a PDU, which depends on the room version ("Event format" in each rooms/vN).

Rooms v1 and v2 cite earlier events as ``[event_id, {"sha256": content_hash}]`` pairs in
``prev_events``/``auth_events``; from v3 on they are plain ID lists. Every reader of those
fields goes through :func:`prev_event_ids`/:func:`auth_event_ids`, so no other code needs to
know which format a room uses. Canonical JSON (enforced from v6) is checked here too: it is a
property of the event's bytes, not of the auth rules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from homeserver.events.room_versions import RoomVersion

CANONICAL_INT_MIN = -(2**53) + 1
CANONICAL_INT_MAX = 2**53 - 1


class BadEventFormat(ValueError):
    """The PDU does not have the structure its room version requires."""


class NotCanonicalJson(BadEventFormat):
    """A value Canonical JSON cannot represent: a float or an integer outside
    [-(2**53)+1, 2**53-1] (rooms v6+ reject such events; the client API answers M_BAD_JSON)."""


def _ref_id(ref: object) -> str | None:
    if isinstance(ref, str):
        return ref
    if isinstance(ref, list | tuple) and len(ref) == 2 and isinstance(ref[0], str):
        return ref[0]
    return None


def event_ids_of(refs: object) -> list[str]:
    """The event IDs in a ``prev_events``/``auth_events`` value of either format.

    Entries that are neither an ID nor an ``[id, hashes]`` pair are skipped; whether a PDU may
    carry them is :func:`check_event_format`'s question.
    """
    if not isinstance(refs, list | tuple):
        return []
    return [i for i in (_ref_id(r) for r in refs) if i is not None]


def prev_event_ids(pdu: Mapping[str, Any]) -> list[str]:
    """IDs of the events this PDU follows in the DAG, for every room version."""
    return event_ids_of(pdu.get("prev_events"))


def auth_event_ids(pdu: Mapping[str, Any]) -> list[str]:
    """IDs of the events that authorise this PDU, for every room version."""
    return event_ids_of(pdu.get("auth_events"))


def event_references(
    rv: RoomVersion, ids: Iterable[Any], event_hashes: Mapping[str, str] | None = None
) -> list[Any]:
    """A ``prev_events``/``auth_events`` value in ``rv``'s format.

    v1/v2 need each event's content hash (``hashes.sha256``, unpadded base64) from
    ``event_hashes``; entries that already are ``[id, hashes]`` pairs are kept as they are.

    Raises:
        ValueError: a v1/v2 reference whose hash is not in ``event_hashes``.
    """
    refs: list[Any] = []
    for ref in ids:
        if rv.reference_hash_event_ids:
            event_id = _ref_id(ref)
            if event_id is None:
                raise ValueError(f"not an event reference: {ref!r}")
            refs.append(event_id)
        elif isinstance(ref, list | tuple):
            refs.append([ref[0], dict(ref[1])])
        else:
            sha256 = (event_hashes or {}).get(ref)
            if not isinstance(sha256, str):
                raise ValueError(f"no content hash for {ref!r}: v1/v2 events cite hashes")
            refs.append([ref, {"sha256": sha256}])
    return refs


def check_canonical_json(value: object) -> None:
    """Raise :class:`NotCanonicalJson` if ``value`` holds a float or an out-of-range integer."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        if isinstance(v, int):
            if not CANONICAL_INT_MIN <= v <= CANONICAL_INT_MAX:
                raise NotCanonicalJson(f"integer {v} is outside the Canonical JSON range")
        elif isinstance(v, float):
            shown = v if math.isfinite(v) else str(v)
            raise NotCanonicalJson(f"{shown} is not an integer: Canonical JSON has no floats")
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)


def check_event_values(rv: RoomVersion, pdu: Mapping[str, Any]) -> None:
    """The Canonical JSON rule for events, which only v6+ enforce (v1-v5 allow floats)."""
    if rv.strict_canonical_json:
        check_canonical_json(pdu)


def _is_hashes(value: object) -> bool:
    """The second half of a v1/v2 reference: an object of hashes. Its contents are not
    checked: the hashes are never used (the event is fetched by id and checked itself), and
    servers send `{}` for events they cite without holding them (as Synapse accepts, and
    SyTest's fake servers do)."""
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def check_event_format(rv: RoomVersion, pdu: Mapping[str, Any]) -> None:
    """Check a received PDU's version-specific structure before it is hashed or authorised.

    v1/v2: ``event_id`` present; references are ``[id, {"sha256": ...}]`` pairs (the hashes
    object may be empty). v3+: plain
    ID strings. v6+: Canonical JSON values.

    Raises:
        BadEventFormat: naming the first problem found.
    """
    if not rv.reference_hash_event_ids:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str) or not event_id.startswith("$") or ":" not in event_id:
            raise BadEventFormat("a v1/v2 event needs an event_id of the form $opaque:server")
    for name in ("prev_events", "auth_events"):
        refs = pdu.get(name)
        if not isinstance(refs, list):
            raise BadEventFormat(f"{name} must be a list")
        for ref in refs:
            if rv.reference_hash_event_ids:
                ok = isinstance(ref, str)
            else:
                ok = (isinstance(ref, list) and len(ref) == 2 and isinstance(ref[0], str)
                      and _is_hashes(ref[1]))
            if not ok:
                shape = "event IDs" if rv.reference_hash_event_ids else "[event_id, hashes] pairs"
                raise BadEventFormat(f"{name} entries must be {shape}")
    check_event_values(rv, pdu)
