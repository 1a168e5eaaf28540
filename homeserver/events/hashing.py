"""Content hashes, redaction (pruning), reference hashes and event IDs for PDUs.

Covers every room version's event IDs: v1/v2 IDs are chosen by the creating server and
carried in the PDU; from v3 the ID is derived from the event, so the same bytes must come out
on every server. All functions take plain JSON dicts and never mutate their argument.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import secrets
import string
from collections.abc import Callable, Mapping
from typing import Any

from unpaddedbase64 import encode_base64

from homeserver.events.format import event_references
from homeserver.events.room_versions import RoomVersion
from homeserver.signing import ServerSigningKey, canonical_json

JsonDict = dict[str, Any]

_ID_ALPHABET = string.ascii_letters
MAX_EVENT_BYTES = 65536
MAX_ID_BYTES = 255

# Top-level keys kept by redaction in v1-v10 (the list is unchanged over those versions).
_V1_KEPT_KEYS = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
# v11 no longer protects origin, membership and prev_state.
_V11_KEPT_KEYS = _V1_KEPT_KEYS - {"prev_state", "origin", "membership"}

_PL_KEPT = frozenset(
    {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
)


@functools.cache
def _kept_content(rv: RoomVersion) -> dict[str, frozenset[str]]:
    """Content keys redaction keeps, per event type: the v1 list plus each version's changes."""
    member = {"membership"}
    join_rules = {"join_rule"}
    power_levels = set(_PL_KEPT)
    if rv.redaction_keeps_join_authorised:  # v9
        member.add("join_authorised_via_users_server")
    if rv.restricted_join_rule:  # v8
        join_rules.add("allow")
    if rv.updated_redaction_rules:  # v11
        power_levels.add("invite")
    table = {
        "m.room.member": frozenset(member),
        "m.room.create": frozenset({"creator"}),
        "m.room.join_rules": frozenset(join_rules),
        "m.room.power_levels": frozenset(power_levels),
        "m.room.history_visibility": frozenset({"history_visibility"}),
    }
    if rv.redaction_keeps_aliases:  # v1-v5
        table["m.room.aliases"] = frozenset({"aliases"})
    if rv.updated_redaction_rules:
        table["m.room.redaction"] = frozenset({"redacts"})
    return table


class EventTooLarge(ValueError):
    """The event breaks one of the spec's "Size limits"."""


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def compute_content_hash(event: JsonDict) -> str:
    """Hash the whole unredacted event so a redacted copy can be told apart from the original."""
    stripped = {k: v for k, v in event.items() if k not in ("unsigned", "signatures", "hashes")}
    return encode_base64(_sha256(canonical_json(stripped)))


def prune_event(event: JsonDict, rv: RoomVersion) -> JsonDict:
    """Apply the room version's redaction algorithm, returning a new dict.

    ``unsigned`` is dropped entirely: it is not on the spec's keep list, and pruned PDUs are
    what signatures and reference hashes are computed over.
    """
    return _prune(event, rv, copy.deepcopy)


def _same(value: Any) -> Any:
    return value


def _prune(event: JsonDict, rv: RoomVersion, dup: Callable[[Any], Any]) -> JsonDict:
    """The redaction algorithm; `dup` copies kept values (identity when the result is only
    encoded, never changed: hashing and signing a new event)."""
    kept_keys = _V11_KEPT_KEYS if rv.updated_redaction_rules else _V1_KEPT_KEYS
    pruned = {k: dup(v) for k, v in event.items() if k in kept_keys}

    content = event.get("content")
    if not isinstance(content, dict):
        if "content" in pruned:
            pruned["content"] = {}
        return pruned

    event_type = event.get("type")
    new_content: JsonDict
    if rv.updated_redaction_rules and event_type == "m.room.create":
        new_content = dup(content)
    else:
        table = _kept_content(rv)
        allowed = table.get(event_type, frozenset()) if isinstance(event_type, str) else frozenset()
        new_content = {k: dup(v) for k, v in content.items() if k in allowed}
        if rv.updated_redaction_rules and event_type == "m.room.member":
            tpi = content.get("third_party_invite")
            if isinstance(tpi, dict) and "signed" in tpi:
                new_content["third_party_invite"] = {"signed": dup(tpi["signed"])}
    pruned["content"] = new_content
    return pruned


def compute_reference_hash(event: JsonDict, rv: RoomVersion) -> bytes:
    """SHA-256 over the redacted event, so redaction never changes an event's ID."""
    pruned = _prune(event, rv, _same)
    pruned.pop("signatures", None)
    pruned.pop("unsigned", None)
    return _sha256(canonical_json(pruned))


def compute_event_id(event: JsonDict, rv: RoomVersion) -> str:
    """The event's ID: from v3 derived from its reference hash (v3 standard base64, v4+
    URL-safe); in v1/v2 chosen by its creator and carried in the PDU's ``event_id``.

    Raises:
        ValueError: a v1/v2 event without an ``event_id``.
    """
    if not rv.reference_hash_event_ids:
        event_id = event.get("event_id")
        if not isinstance(event_id, str):
            raise ValueError("a v1/v2 event carries its event_id, and this one has none")
        return event_id
    return "$" + encode_base64(compute_reference_hash(event, rv), urlsafe=rv.url_safe_event_ids)


def new_event_id(server_name: str) -> str:
    """A fresh v1/v2 event ID, ``$opaque:server``; 18 random letters as for room IDs."""
    opaque = "".join(secrets.choice(_ID_ALPHABET) for _ in range(18))
    return f"${opaque}:{server_name}"


def room_id_for_create_event(create_event_id: str) -> str:
    """v12 room IDs are the create event's ID with the ``!`` sigil instead of ``$``."""
    if not create_event_id.startswith("$"):
        raise ValueError(f"not an event ID: {create_event_id!r}")
    return "!" + create_event_id[1:]


def create_event_id_for_room(room_id: str) -> str:
    """Inverse of :func:`room_id_for_create_event`, valid for v12 rooms only."""
    if not room_id.startswith("!"):
        raise ValueError(f"not a room ID: {room_id!r}")
    return "$" + room_id[1:]


def finalize_event(
    event: JsonDict,
    rv: RoomVersion,
    key: ServerSigningKey,
    *,
    event_hashes: Mapping[str, str] | None = None,
    server_name: str | None = None,
) -> tuple[str, JsonDict]:
    """Hash and sign a newly built PDU in ``rv``'s format, returning ``(event_id, signed_event)``.

    ``prev_events``/``auth_events`` may be given as plain ID lists for every version. For
    v1/v2 they become ``[id, {"sha256": hash}]`` pairs using ``event_hashes`` (event ID ->
    that event's content hash), and the PDU gets an ``event_id`` ``$random:server_name``
    (default: the key's server) unless it has one. The signature covers only the pruned
    event (plus the content hash), so it stays valid after a redaction; it is copied back
    onto the full event. ``event`` is not modified.

    Raises:
        ValueError: a v1/v2 reference whose content hash is not in ``event_hashes``.
    """
    # A shallow copy: only top-level keys are replaced below, and the pruned form is encoded,
    # never changed (deep copies were most of the cost of building a message).
    full = dict(event)
    full.pop("signatures", None)
    full.pop("hashes", None)
    for name in ("prev_events", "auth_events"):
        if isinstance(full.get(name), list):
            full[name] = event_references(rv, full[name], event_hashes)
    if not rv.reference_hash_event_ids and not isinstance(full.get("event_id"), str):
        full["event_id"] = new_event_id(server_name or key.server_name)
    full["hashes"] = {"sha256": compute_content_hash(full)}
    pruned = _prune(full, rv, _same)
    pruned.pop("signatures", None)
    # The signature and the reference hash cover the same bytes: encode them once.
    signed_bytes = canonical_json(pruned)
    full["signatures"] = {key.server_name: {key.key_id: key.sign_bytes(signed_bytes)}}
    if rv.reference_hash_event_ids:
        event_id = "$" + encode_base64(_sha256(signed_bytes), urlsafe=rv.url_safe_event_ids)
    else:
        event_id = full["event_id"]
    return event_id, full


def check_event_size(event: JsonDict) -> None:
    """Enforce the spec's "Size limits" on a complete (signed) PDU.

    Raises:
        EventTooLarge: naming the first limit that is exceeded.
    """
    for field in ("sender", "room_id", "type", "state_key"):
        value = event.get(field)
        if isinstance(value, str) and len(value.encode("utf-8")) > MAX_ID_BYTES:
            raise EventTooLarge(f"'{field}' is longer than {MAX_ID_BYTES} bytes")
    size = len(canonical_json(event))
    if size > MAX_EVENT_BYTES:
        raise EventTooLarge(f"event is {size} bytes, over the {MAX_EVENT_BYTES} byte limit")
