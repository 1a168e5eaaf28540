"""Authorisation rules for room versions 1 to 12, as pure functions over PDU dicts.

``check_auth`` is run against a state map (``(type, state_key) -> event``): the state before
the event, the event's auth events, or the current state, depending on which of the
spec's receipt checks the caller is doing. Rules that need the auth event *list* (its
duplicates, selection and room IDs) are in :func:`check_auth_events_list`, because a
state map cannot express them. Rule numbers in comments refer to the v12 text; where the
older versions differ, a :class:`RoomVersion` flag says so (v1-v5 m.room.aliases, v1/v2
redactions, v1-v9 string and v1-v5 float power levels, v7 knocking, v8 restricted joins).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from signedjson.key import NACL_ED25519

from homeserver.events.format import prev_event_ids
from homeserver.events.hashing import (
    compute_event_id,
    create_event_id_for_room,
    room_id_for_create_event,
)
from homeserver.events.room_versions import ROOM_V1, ROOM_VERSIONS, RoomVersion
from homeserver.signing import SignatureError, verify_signed_json

JsonDict = dict[str, Any]
StateMap = Mapping[tuple[str, str], JsonDict]
PowerLevel = int | float

CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
REDACTION = "m.room.redaction"
ALIASES = "m.room.aliases"

_PL_SCALAR_KEYS = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)
# Defaults from the m.room.power_levels schema, used whether or not the event exists.
_PL_DEFAULTS: dict[str, int] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
}
_CREATOR_LEVEL_WITHOUT_POWER_LEVELS = 100
_LENIENT = ROOM_V1


class AuthError(Exception):
    """The event is not allowed by the authorisation rules; the message says which rule."""


# --------------------------------------------------------------------------- helpers


def _domain(identifier: str) -> str:
    """The server part of a user or room ID (everything after the first colon)."""
    return identifier.partition(":")[2]


def _is_int(value: object) -> bool:
    # bool is a subclass of int in Python, but JSON true is not an integer.
    return isinstance(value, int) and not isinstance(value, bool)


def is_valid_user_id(value: object) -> bool:
    """The lenient (historical) user ID grammar that federation must still accept."""
    if not isinstance(value, str) or not value.startswith("@") or "\x00" in value:
        return False
    if len(value.encode("utf-8")) > 255:
        return False
    _, sep, server = value[1:].partition(":")
    return bool(sep) and bool(server)


def _content(event: Mapping[str, Any] | None) -> JsonDict:
    if event is None:
        return {}
    content = event.get("content")
    return content if isinstance(content, dict) else {}


def _membership(state: StateMap, user_id: str) -> str | None:
    member = state.get((MEMBER, user_id))
    if member is None:
        return None
    membership = _content(member).get("membership")
    return membership if isinstance(membership, str) else None


def _join_rule(state: StateMap) -> str:
    # Without a join rules event nobody can join uninvited (Synapse treats it as "invite").
    rule = _content(state.get((JOIN_RULES, ""))).get("join_rule", "invite")
    return rule if isinstance(rule, str) else "invite"


# v1-v9 "stringy power levels": optional whitespace, one optional sign, decimal digits.
_STRING_LEVEL = re.compile(r"\s*[+-]?[0-9]+\s*")


def parse_power_level(rv: RoomVersion, value: object) -> int | None:
    """A power level value as the room version reads it, or None if it is not a valid one.

    v10+ take only JSON integers; v1-v9 also integer strings ("+100", " 050 "); v1-v5 also
    finite floats, truncated toward zero (50.57 -> 50). JSON booleans are never levels.
    """
    if _is_int(value):
        return value  # type: ignore[return-value]
    if rv.integer_power_levels:
        return None
    if isinstance(value, str):
        return int(value) if _STRING_LEVEL.fullmatch(value) else None
    if isinstance(value, float) and rv.float_power_levels and math.isfinite(value):
        return math.trunc(value)
    return None


# Reading levels out of room state uses the most lenient version (v1): what an older version
# does not accept cannot be in its state, because the power levels event holding it was
# rejected (v10 integer checks) or the event never received (v6 Canonical JSON).
def _read_level(value: object) -> int | None:
    return parse_power_level(_LENIENT, value)


def _pl_level(state: StateMap, name: str) -> int:
    value = _read_level(_content(state.get((POWER_LEVELS, ""))).get(name, _PL_DEFAULTS[name]))
    return value if value is not None else _PL_DEFAULTS[name]


def creators(rv: RoomVersion, state: StateMap) -> set[str]:
    """The room's creators: v10 ``content.creator``; v11 the create ``sender``; v12 adds
    ``content.additional_creators``."""
    create = state.get((CREATE, ""))
    if create is None:
        return set()
    content = _content(create)
    if not rv.implicit_room_creator:
        creator = content.get("creator")
        return {creator} if isinstance(creator, str) else set()
    result: set[str] = set()
    sender = create.get("sender")
    if isinstance(sender, str):
        result.add(sender)
    if rv.creators_have_infinite_power:
        extra = content.get("additional_creators")
        if isinstance(extra, list):
            result.update(u for u in extra if isinstance(u, str))
    return result


def user_power_level(rv: RoomVersion, user_id: str, state: StateMap) -> PowerLevel:
    """A user's power level; ``math.inf`` for v12 creators, who cannot be demoted."""
    room_creators = creators(rv, state)
    if rv.creators_have_infinite_power and user_id in room_creators:
        return math.inf
    pl_event = state.get((POWER_LEVELS, ""))
    if pl_event is None:
        if user_id in room_creators:
            return _CREATOR_LEVEL_WITHOUT_POWER_LEVELS
        return 0
    content = _content(pl_event)
    users = content.get("users")
    if isinstance(users, dict):
        level = _read_level(users.get(user_id))
        if level is not None:
            return level
    return _pl_level(state, "users_default")


def required_power_level_for_event(
    event_type: str, state_key_is_not_none: bool, state: StateMap
) -> int:
    """The level needed to send an event of this type (``events``, else the default)."""
    content = _content(state.get((POWER_LEVELS, "")))
    events = content.get("events")
    if isinstance(events, dict):
        level = _read_level(events.get(event_type))
        if level is not None:
            return level
    return _pl_level(state, "state_default" if state_key_is_not_none else "events_default")


def invite_level(state: StateMap) -> int:
    return _pl_level(state, "invite")


def kick_level(state: StateMap) -> int:
    return _pl_level(state, "kick")


def ban_level(state: StateMap) -> int:
    return _pl_level(state, "ban")


def redact_level(state: StateMap) -> int:
    return _pl_level(state, "redact")


def redacts_event_id(rv: RoomVersion, redaction: Mapping[str, Any]) -> str | None:
    """Where the redacted event's ID lives moved into ``content`` in v11."""
    if rv.redacts_in_content:
        redacts = _content(redaction).get("redacts")
    else:
        redacts = redaction.get("redacts")
    return redacts if isinstance(redacts, str) else None


def redaction_applies(
    rv: RoomVersion, redaction: Mapping[str, Any], original: Mapping[str, Any], state: StateMap
) -> bool:
    """Per "Handling redactions", auth always lets a redaction through, but it only takes effect
    when the sender may redact others' events or is on the original sender's server.

    In v1/v2 auth rule 11 already decided, on the domains of the two event IDs; this repeats
    that rule, so the answer is the same whichever the caller asks.
    """
    sender = str(redaction.get("sender", ""))
    if user_power_level(rv, sender, state) >= redact_level(state):
        return True
    if rv.redaction_auth_rule:
        return _domain(str(redaction.get("event_id", ""))) == _domain(
            str(original.get("event_id", "")))
    return _domain(sender) == _domain(str(original.get("sender", "")))


# ------------------------------------------------------------------ auth events selection


def auth_event_types(
    rv: RoomVersion,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> list[tuple[str, str]]:
    """The ``(type, state_key)`` pairs to cite in ``auth_events`` ("Auth events selection").

    Callers cite the current event for each pair that exists in the room state.
    """
    if event_type == CREATE:
        return []
    wanted: list[tuple[str, str]] = []
    if rv.create_event_in_auth_events:
        wanted.append((CREATE, ""))
    wanted += [(POWER_LEVELS, ""), (MEMBER, sender)]
    if event_type == MEMBER and state_key is not None:
        wanted.append((MEMBER, state_key))
        membership = content.get("membership")
        if membership in ("join", "invite", "knock"):
            wanted.append((JOIN_RULES, ""))
        tpi = content.get("third_party_invite")
        if membership == "invite" and isinstance(tpi, dict):
            signed = tpi.get("signed")
            token = signed.get("token") if isinstance(signed, dict) else None
            if isinstance(token, str):
                wanted.append((THIRD_PARTY_INVITE, token))
        authoriser = content.get("join_authorised_via_users_server")
        if membership == "join" and rv.restricted_join_rule and isinstance(authoriser, str):
            wanted.append((MEMBER, authoriser))
    return list(dict.fromkeys(wanted))


def check_auth_events_list(
    rv: RoomVersion, event: Mapping[str, Any], auth_events: Iterable[Mapping[str, Any]]
) -> None:
    """Rules 3.1, 3.2, 3.4 (v10/v11 rule 2): the shape of the cited ``auth_events``.

    ``auth_events`` are the events the PDU's ``auth_events`` IDs resolve to. Whether any
    of them was rejected (rule 3.3) is for the caller to know.
    """
    if event.get("type") == CREATE:
        return
    state_key = event.get("state_key")
    allowed = set(
        auth_event_types(
            rv,
            str(event.get("type")),
            str(event.get("sender")),
            state_key if isinstance(state_key, str) else None,
            _content(event),
        )
    )
    seen: set[tuple[str, str]] = set()
    for auth_event in auth_events:
        key = (str(auth_event.get("type")), str(auth_event.get("state_key")))
        if key in seen:
            raise AuthError(f"duplicate auth event for {key}")
        seen.add(key)
        if key not in allowed:
            raise AuthError(f"auth event {key} is not selected by the auth events algorithm")
        if auth_event.get("room_id") != event.get("room_id"):
            raise AuthError(f"auth event {key} belongs to a different room")
    if rv.create_event_in_auth_events and (CREATE, "") not in seen:
        raise AuthError("no m.room.create event in auth_events")


# ------------------------------------------------------------------------ check_auth


_CREATE_IDS: dict[int, tuple[Mapping[str, Any], str]] = {}


def _create_event_id(create: Mapping[str, Any], rv: RoomVersion) -> str:
    """The create event's id, remembered per create event object: every check in a v12 room
    compares the room id with it, and hashing the create event each time was a good part of
    the cost of authorising a message. The entry holds the object, so its id is not reused."""
    got = _CREATE_IDS.get(id(create))
    if got is not None and got[0] is create:
        return got[1]
    event_id = compute_event_id(dict(create), rv)
    if len(_CREATE_IDS) >= 4096:
        _CREATE_IDS.clear()
    _CREATE_IDS[id(create)] = (create, event_id)
    return event_id


def check_auth(rv: RoomVersion, event: Mapping[str, Any], state: StateMap) -> None:
    """Authorise ``event`` against ``state``; raise :class:`AuthError` if it is not allowed.

    ``event`` must already be signed: the restricted-join rule looks for the authorising
    server's signature (its cryptographic validity is checked on receipt, with the keys).
    In v12 ``state`` must still contain the m.room.create event.
    """
    event_type = event.get("type")
    sender = event.get("sender")
    if not isinstance(event_type, str) or not isinstance(sender, str):
        raise AuthError("event has no type or sender")

    if event_type == CREATE:
        _check_create(rv, event, sender)
        return

    create = state.get((CREATE, ""))
    if create is None:
        raise AuthError("no m.room.create event in room state")
    room_id = event.get("room_id")
    if rv.room_id_is_create_event_hash:
        # Rule 2: the room ID names the create event.
        if (
            not isinstance(room_id, str)
            or room_id_for_create_event(_create_event_id(create, rv)) != room_id
        ):
            raise AuthError("room_id is not the ID of the room's m.room.create event")
    elif create.get("room_id") != room_id:
        raise AuthError("m.room.create event belongs to a different room")

    # Rule 4: m.federate.
    if _content(create).get("m.federate", True) is False and _domain(sender) != _domain(
        str(create.get("sender", ""))
    ):
        raise AuthError("room does not federate with the sender's server")

    # v1-v5 rule 4: m.room.aliases is the named server's own business.
    if event_type == ALIASES and rv.special_case_aliases_auth:
        state_key = event.get("state_key")
        if not isinstance(state_key, str):
            raise AuthError("m.room.aliases has no state_key")
        if _domain(sender) != state_key:
            raise AuthError("m.room.aliases state_key is not the sender's server")
        return

    if event_type == MEMBER:
        _check_member(rv, event, sender, create, state)
        return

    # Rule 6.
    if _membership(state, sender) != "join":
        raise AuthError(f"{sender} is not joined to the room")

    sender_level = user_power_level(rv, sender, state)

    # Rule 7.
    if event_type == THIRD_PARTY_INVITE:
        if sender_level >= invite_level(state):
            return
        raise AuthError(f"{sender} may not send third-party invites")

    # Rule 8.
    state_key = event.get("state_key")
    required = required_power_level_for_event(event_type, state_key is not None, state)
    if required > sender_level:
        raise AuthError(
            f"{event_type} requires power level {required}, {sender} has {sender_level}"
        )

    # Rule 9.
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != sender:
        raise AuthError("state_key beginning with '@' must be the sender's user ID")

    # Rule 10.
    if event_type == POWER_LEVELS:
        _check_power_levels(rv, event, sender_level, state)

    # v1/v2 rule 11: redactions are checked here, not when they are applied.
    if event_type == REDACTION and rv.redaction_auth_rule:
        if sender_level >= redact_level(state):
            return
        redacted = event.get("redacts")
        event_id = event.get("event_id")
        if (isinstance(redacted, str) and isinstance(event_id, str)
                and _domain(redacted) == _domain(event_id)):
            return
        raise AuthError(f"{sender} may not redact that event")


def _check_create(rv: RoomVersion, event: Mapping[str, Any], sender: str) -> None:
    if event.get("prev_events"):
        raise AuthError("m.room.create must not have prev_events")
    if rv.room_id_is_create_event_hash:
        if "room_id" in event:
            raise AuthError("m.room.create must not have a room_id in this room version")
    else:
        room_id = event.get("room_id")
        if not isinstance(room_id, str) or _domain(room_id) != _domain(sender):
            raise AuthError("m.room.create room_id domain does not match the sender's")
    content = _content(event)
    if "room_version" in content and content["room_version"] not in ROOM_VERSIONS:
        raise AuthError(f"unknown room version {content['room_version']!r}")
    if not rv.implicit_room_creator and "creator" not in content:
        raise AuthError("m.room.create has no creator")
    if rv.creators_have_infinite_power and "additional_creators" in content:
        extra = content["additional_creators"]
        if not isinstance(extra, list) or not all(is_valid_user_id(u) for u in extra):
            raise AuthError("additional_creators must be a list of valid user IDs")


def _check_member(
    rv: RoomVersion,
    event: Mapping[str, Any],
    sender: str,
    create: Mapping[str, Any],
    state: StateMap,
) -> None:
    content = _content(event)
    target = event.get("state_key")
    membership = content.get("membership")
    # 5.1
    if not isinstance(target, str) or not isinstance(membership, str):
        raise AuthError("m.room.member needs a state_key and content.membership")

    # 5.2 (v8+; before, the key is ordinary content)
    authoriser = content.get("join_authorised_via_users_server")
    if not rv.restricted_join_rule:
        authoriser = None
    if authoriser is not None:
        if not isinstance(authoriser, str):
            raise AuthError("join_authorised_via_users_server must be a user ID")
        signatures = event.get("signatures")
        server_sigs = signatures.get(_domain(authoriser)) if isinstance(signatures, dict) else None
        if not server_sigs:
            raise AuthError("event is not signed by the join_authorised_via_users_server's server")

    sender_membership = _membership(state, sender)
    target_membership = _membership(state, target)

    if membership == "join":
        _check_join(rv, event, sender, target, create, state, target_membership, authoriser)
    elif membership == "invite":
        _check_invite(rv, event, sender, target, state, sender_membership, target_membership)
    elif membership == "leave":
        if sender == target:
            leavable = ("invite", "join", "knock") if rv.knock_join_rule else ("invite", "join")
            if target_membership in leavable:
                return
            raise AuthError(f"{sender} cannot leave: membership is {target_membership}")
        if sender_membership != "join":
            raise AuthError(f"{sender} is not joined to the room")
        sender_level = user_power_level(rv, sender, state)
        if target_membership == "ban" and sender_level < ban_level(state):
            raise AuthError(f"{sender} may not unban {target}")
        if sender_level >= kick_level(state) and user_power_level(rv, target, state) < sender_level:
            return
        raise AuthError(f"{sender} may not kick {target}")
    elif membership == "ban":
        if sender_membership != "join":
            raise AuthError(f"{sender} is not joined to the room")
        sender_level = user_power_level(rv, sender, state)
        if sender_level >= ban_level(state) and user_power_level(rv, target, state) < sender_level:
            return
        raise AuthError(f"{sender} may not ban {target}")
    elif membership == "knock" and rv.knock_join_rule:
        join_rule = _join_rule(state)
        allowed_rules = (
            ("knock", "knock_restricted") if rv.knock_restricted_join_rule else ("knock",)
        )
        if join_rule not in allowed_rules:
            raise AuthError(f"cannot knock on a room with join rule {join_rule!r}")
        if sender != target:
            raise AuthError("cannot knock on behalf of another user")
        if sender_membership not in ("ban", "invite", "join"):
            return
        raise AuthError(f"cannot knock with membership {sender_membership}")
    else:
        raise AuthError(f"unknown membership {membership!r}")


def _check_join(
    rv: RoomVersion,
    event: Mapping[str, Any],
    sender: str,
    target: str,
    create: Mapping[str, Any],
    state: StateMap,
    target_membership: str | None,
    authoriser: str | None,
) -> None:
    # 5.3.1: the creator's own first join, straight after the create event.
    prev_events = prev_event_ids(event)
    if len(prev_events) == 1:
        create_id: str | None
        if rv.room_id_is_create_event_hash:
            create_id = create_event_id_for_room(str(event.get("room_id", "!")))
        else:
            try:
                create_id = compute_event_id(dict(create), rv)
            except ValueError:  # a v1/v2 create event without its event_id
                create_id = None
        if rv.implicit_room_creator:
            creator = create.get("sender")
        else:
            creator = _content(create).get("creator")
        if prev_events[0] == create_id and target == creator:
            return
    if sender != target:
        raise AuthError("cannot join on behalf of another user")
    if target_membership == "ban":
        raise AuthError(f"{sender} is banned from the room")
    join_rule = _join_rule(state)
    if join_rule == "invite" or (join_rule == "knock" and rv.knock_join_rule):
        if target_membership in ("invite", "join"):
            return
        raise AuthError(f"{sender} needs an invite to join")
    if (join_rule == "restricted" and rv.restricted_join_rule) or (
        join_rule == "knock_restricted" and rv.knock_restricted_join_rule
    ):
        if target_membership in ("invite", "join"):
            return
        if authoriser is None:
            raise AuthError("restricted join without join_authorised_via_users_server")
        if _membership(state, authoriser) != "join":
            raise AuthError(f"authorising user {authoriser} is not joined")
        if user_power_level(rv, authoriser, state) < invite_level(state):
            raise AuthError(f"authorising user {authoriser} may not invite")
        return
    if join_rule == "public":
        return
    raise AuthError(f"cannot join a room with join rule {join_rule!r}")


def _check_invite(
    rv: RoomVersion,
    event: Mapping[str, Any],
    sender: str,
    target: str,
    state: StateMap,
    sender_membership: str | None,
    target_membership: str | None,
) -> None:
    content = _content(event)
    if "third_party_invite" in content:
        _check_third_party_invite(
            content["third_party_invite"], sender, target, state, target_membership
        )
        return
    if sender_membership != "join":
        raise AuthError(f"{sender} is not joined to the room")
    if target_membership in ("join", "ban"):
        raise AuthError(f"{target} is already {target_membership}")
    if user_power_level(rv, sender, state) >= invite_level(state):
        return
    raise AuthError(f"{sender} may not invite")


def _check_third_party_invite(
    tpi: object,
    sender: str,
    target: str,
    state: StateMap,
    target_membership: str | None,
) -> None:
    if target_membership == "ban":
        raise AuthError(f"{target} is banned")
    signed = tpi.get("signed") if isinstance(tpi, dict) else None
    if not isinstance(signed, dict):
        raise AuthError("third_party_invite has no signed property")
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError("third_party_invite.signed needs mxid and token")
    if mxid != target:
        raise AuthError("third_party_invite mxid does not match the state_key")
    invite_event = state.get((THIRD_PARTY_INVITE, token))
    if invite_event is None:
        raise AuthError("no m.room.third_party_invite event for this token")
    if invite_event.get("sender") != sender:
        raise AuthError("sender does not match the m.room.third_party_invite sender")
    invite_content = _content(invite_event)
    public_keys: list[str] = []
    if isinstance(invite_content.get("public_key"), str):
        public_keys.append(invite_content["public_key"])
    listed = invite_content.get("public_keys")
    for entry in listed if isinstance(listed, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
            public_keys.append(entry["public_key"])
    signatures = signed.get("signatures")
    if isinstance(signatures, dict):
        for server_name, server_sigs in signatures.items():
            if not isinstance(server_sigs, dict):
                continue
            for key_id in server_sigs:
                if not str(key_id).startswith(NACL_ED25519 + ":"):
                    continue
                for public_key in public_keys:
                    try:
                        verify_signed_json(dict(signed), server_name, key_id, public_key)
                    except SignatureError:
                        continue
                    return
    raise AuthError("no valid signature on the third-party invite")


def _old_levels(rv: RoomVersion, value: object) -> dict[str, int]:
    """The valid entries of a map in the current power levels event; junk there is ignored."""
    if not isinstance(value, dict):
        return {}
    levels = {str(k): parse_power_level(rv, v) for k, v in value.items()}
    return {k: v for k, v in levels.items() if v is not None}


def _new_levels(rv: RoomVersion, value: object, what: str) -> dict[str, int]:
    """The entries of a map in the new power levels event, which must all be levels: a value
    that cannot be compared with the old one cannot pass rules 10.6-10.10."""
    if not isinstance(value, dict):
        raise AuthError(f"{what} must be an object")
    levels: dict[str, int] = {}
    for k, v in value.items():
        level = parse_power_level(rv, v)
        if level is None:
            raise AuthError(f"{what}.{k} is not a valid power level: {v!r}")
        levels[str(k)] = level
    return levels


def _check_power_levels(
    rv: RoomVersion, event: Mapping[str, Any], sender_level: PowerLevel, state: StateMap
) -> None:
    content = _content(event)
    # 10.1 - 10.2 (v10+): every level is an integer.
    if rv.integer_power_levels:
        for name in _PL_SCALAR_KEYS:
            if name in content and not _is_int(content[name]):
                raise AuthError(f"power level {name!r} must be an integer")
        for name in ("events", "notifications"):
            if name in content:
                value = content[name]
                if not isinstance(value, dict) or not all(_is_int(v) for v in value.values()):
                    raise AuthError(f"{name!r} must map to integers")
    # 10.3: users maps user IDs to levels (before v10 "or a string that is an integer", and
    # before v6 floats too).
    if "users" in content:
        users = content["users"]
        if not isinstance(users, dict) or not all(
            is_valid_user_id(k) and parse_power_level(rv, v) is not None
            for k, v in users.items()
        ):
            raise AuthError("'users' must map valid user IDs to power levels")
    new_users: Mapping[str, Any] = content.get("users", {})
    # 10.4 (v12): creators are not listed.
    if rv.creators_have_infinite_power:
        listed = creators(rv, state) & set(new_users)
        if listed:
            raise AuthError(f"room creators may not appear in users: {sorted(listed)}")

    # 10.5
    old_event = state.get((POWER_LEVELS, ""))
    if old_event is None:
        return
    old = _content(old_event)

    # 10.6
    old_scalars = _old_levels(rv, {k: old[k] for k in _PL_SCALAR_KEYS if k in old})
    new_scalars = _new_levels(
        rv, {k: content[k] for k in _PL_SCALAR_KEYS if k in content}, "power levels")
    for name in _PL_SCALAR_KEYS:
        old_value, new_value = old_scalars.get(name), new_scalars.get(name)
        if old_value == new_value:
            continue
        if old_value is not None and old_value > sender_level:
            raise AuthError(f"cannot change {name!r} from a level above your own")
        if new_value is not None and new_value > sender_level:
            raise AuthError(f"cannot set {name!r} above your own level")

    # 10.7 / 10.8 (``notifications`` from v6 on)
    maps = ("events", "notifications") if rv.notifications_power_levels else ("events",)
    for name in maps:
        old_map = _old_levels(rv, old.get(name))
        new_map = _new_levels(rv, content.get(name, {}), name)
        for key in set(old_map) | set(new_map):
            old_value, new_value = old_map.get(key), new_map.get(key)
            if old_value == new_value:
                continue
            if old_value is not None and old_value > sender_level:
                raise AuthError(f"cannot change {name}.{key} from a level above your own")
            if new_value is not None and new_value > sender_level:
                raise AuthError(f"cannot set {name}.{key} above your own level")

    # 10.9 / 10.10
    old_users, new_user_levels = _old_levels(rv, old.get("users")), _new_levels(
        rv, new_users, "users")
    sender = event.get("sender")
    for user in set(old_users) | set(new_user_levels):
        old_value, new_value = old_users.get(user), new_user_levels.get(user)
        if old_value == new_value:
            continue
        if old_value is not None and user != sender and old_value >= sender_level:
            raise AuthError(f"cannot change the level of {user}, who is not below you")
        if new_value is not None and new_value > sender_level:
            raise AuthError(f"cannot give {user} a level above your own")
