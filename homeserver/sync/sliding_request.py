"""The request of Simplified Sliding Sync (MSC4186), parsed into frozen values; pure, no I/O.

Two dialects reach the same endpoint: the accepted MSC's (`range`, `required_state` as
{include, exclude, lazy_members}, `is_invited`, `pos`/`timeout` in the body) and the one
matrix-rust-sdk and Synapse still speak on the unstable path (`ranges`, `required_state` as
[type, state_key] pairs with the "*", "$LAZY" and "$ME" forms, `is_invite`, `pos`/`timeout`
as query parameters). Both parse to the same `SlidingRequest`; anything malformed is
M_INVALID_PARAM (or M_BAD_JSON for a wrong JSON type), raised before anything is computed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from homeserver.errors import Codes, MatrixError

MAX_LISTS = 100
MAX_SUBSCRIPTIONS = 100
MAX_TIMELINE_LIMIT = 100  # "the server may cap this number"
MAX_STATE_ELEMENTS = 100
WILDCARD = "*"
LAZY = "$LAZY"
ME = "$ME"
_OPAQUE_ID = re.compile(r"[0-9A-Za-z._~-]{1,255}")  # the spec's opaque identifier grammar

# (type, state_key); None matches anything.
StateMatch = tuple[str | None, str | None]


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, Codes.INVALID_PARAM, msg)


@dataclass(frozen=True, slots=True)
class RequiredState:
    include: tuple[StateMatch, ...] = ()
    exclude: tuple[StateMatch, ...] = ()
    lazy_members: bool = False

    def wants(self, key: tuple[str, str], user_id: str, lazy_ok: bool = False) -> bool:
        """Whether the state at `key` is wanted. With lazy_members, a member event only when
        an element names its user (e.g. $ME), or when `lazy_ok` (the caller's own reasons)."""
        hits = [m for m in self.include if _matches(m, key, user_id)]
        if not hits or any(_matches(m, key, user_id) for m in self.exclude):
            return False
        if self.lazy_members and key[0] == "m.room.member" and not lazy_ok:
            return any(m[1] is not None for m in hits)
        return True


def _matches(m: StateMatch, key: tuple[str, str], user_id: str) -> bool:
    t, sk = m
    if t is not None and t != key[0]:
        return False
    if sk is None:
        return True
    return key[1] == (user_id if sk == ME else sk)


@dataclass(frozen=True, slots=True)
class RoomConfig:
    """timeline_limit and required_state of one rule, or of several combined (a superset:
    the largest limit, and every required_state kept so that any of them can match)."""
    timeline_limit: int
    required_state: tuple[RequiredState, ...]

    def merge(self, other: RoomConfig) -> RoomConfig:
        rs = self.required_state + tuple(r for r in other.required_state
                                         if r not in self.required_state)
        return RoomConfig(max(self.timeline_limit, other.timeline_limit), rs)

    def wants(self, key: tuple[str, str], user_id: str, lazy_ok: bool = False) -> bool:
        return any(r.wants(key, user_id, lazy_ok) for r in self.required_state)

    @property
    def lazy_members(self) -> bool:
        return any(r.lazy_members for r in self.required_state)

    def expands(self, old: RoomConfig) -> bool:
        """Whether this config asks for more than `old` did (then the room is sent again)."""
        return self.timeline_limit > old.timeline_limit or any(
            r not in old.required_state for r in self.required_state)


@dataclass(frozen=True, slots=True)
class ListFilters:
    is_dm: bool | None = None
    is_invite: bool | None = None
    is_encrypted: bool | None = None
    room_types: tuple[str | None, ...] | None = None
    not_room_types: tuple[str | None, ...] = ()
    spaces: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    not_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SlidingList:
    name: str
    ranges: tuple[tuple[int, int], ...] | None  # None: every room that passes the filters
    config: RoomConfig
    filters: ListFilters


@dataclass(frozen=True, slots=True)
class SlidingRequest:
    conn_id: str = ""
    pos: str | None = None
    timeout_ms: int = 0
    set_presence: str = "online"
    lists: tuple[SlidingList, ...] = ()
    subscriptions: tuple[tuple[str, RoomConfig], ...] = ()
    unsubscribe: tuple[str, ...] = ()  # unstable dialect: subscriptions are sticky until this
    txn_id: str | None = None  # echoed in the response (older matrix-rust-sdk matched on it)
    extensions: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse_request(body: dict[str, Any], query_pos: str | None = None,
                  query_timeout: int | None = None,
                  query_presence: str | None = None) -> SlidingRequest:
    conn_id = _opt(body, "conn_id", str, "")
    if len(conn_id) > 255:
        raise _bad("conn_id too long")
    pos = _opt(body, "pos", str, None)
    if pos is None:
        pos = query_pos
    timeout = body.get("timeout")
    if timeout is None:
        timeout = query_timeout or 0
    if type(timeout) is not int or timeout < 0:
        raise _bad("timeout must be a non-negative integer")
    presence = _opt(body, "set_presence", str, None) or query_presence or "online"
    if presence not in ("online", "offline", "unavailable"):
        raise _bad("invalid set_presence")
    lists_raw = _opt(body, "lists", dict, {})
    if len(lists_raw) > MAX_LISTS:
        raise _bad(f"at most {MAX_LISTS} lists")
    lists = tuple(_parse_list(name, v) for name, v in lists_raw.items())
    subs_raw = _opt(body, "room_subscriptions", dict, {})
    if len(subs_raw) > MAX_SUBSCRIPTIONS:
        raise _bad(f"at most {MAX_SUBSCRIPTIONS} room subscriptions")
    subs = []
    for room_id, v in subs_raw.items():
        if not room_id.startswith("!") or len(room_id) > 255:
            raise _bad(f"not a room ID: {room_id!r}")
        subs.append((room_id, _parse_config(_obj(v, "room subscription"))))
    unsub = _opt(body, "unsubscribe_rooms", list, [])
    if len(unsub) > MAX_SUBSCRIPTIONS or not all(isinstance(r, str) for r in unsub):
        raise _bad("unsubscribe_rooms must be a list of room IDs")
    ext_raw = _opt(body, "extensions", dict, {})
    extensions = {k: _obj(v, f"extension {k}") for k, v in ext_raw.items()}
    txn_id = _opt(body, "txn_id", str, None)
    if txn_id is not None and len(txn_id) > 255:
        raise _bad("txn_id too long")
    return SlidingRequest(conn_id, pos, min(timeout, 600_000), presence, lists, tuple(subs),
                          tuple(unsub), txn_id, extensions)


def _opt(body: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    v = body.get(key)
    if v is None:
        return default
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise MatrixError(400, Codes.BAD_JSON, f"{key} must be of type {kind.__name__}")
    return v


def _obj(v: Any, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise MatrixError(400, Codes.BAD_JSON, f"{what} must be an object")
    return v


def _parse_list(name: str, raw: Any) -> SlidingList:
    raw = _obj(raw, f"list {name}")
    if not _OPAQUE_ID.fullmatch(name):
        raise _bad("list names are opaque identifiers: 1 to 255 of [0-9A-Za-z._~-]")
    ranges: list[tuple[int, int]] | None = None
    if "range" in raw or "ranges" in raw:
        given = [raw["range"]] if "range" in raw else raw["ranges"]
        if not isinstance(given, list) or len(given) > 100:
            raise _bad("ranges must be a list of [start, end] pairs")
        ranges = []
        for r in given:
            if (not isinstance(r, list) or len(r) != 2
                    or any(type(x) is not int or x < 0 for x in r) or r[0] > r[1]):
                raise _bad("a range is [start, end] with 0 <= start <= end")
            ranges.append((r[0], r[1]))
    return SlidingList(name, tuple(ranges) if ranges is not None else None, _parse_config(raw),
                       _parse_filters(_obj(raw.get("filters") or {}, "filters")))


def _parse_config(raw: dict[str, Any]) -> RoomConfig:
    limit = raw.get("timeline_limit", 0)
    if type(limit) is not int or limit < 0:
        raise _bad("timeline_limit must be a non-negative integer")
    return RoomConfig(min(limit, MAX_TIMELINE_LIMIT),
                      (parse_required_state(raw.get("required_state")),))


def parse_required_state(raw: Any) -> RequiredState:
    if raw is None:
        return RequiredState()
    if isinstance(raw, list):  # [[type, state_key], ...] as matrix-rust-sdk sends it
        if len(raw) > MAX_STATE_ELEMENTS:
            raise _bad("too many required_state entries")
        include: list[StateMatch] = []
        lazy = False
        for pair in raw:
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(isinstance(x, str) for x in pair)):
                raise _bad("required_state entries are [type, state_key] pairs")
            t, sk = pair
            if t == "m.room.member" and sk == LAZY:
                lazy = True
                continue
            include.append((None if t == WILDCARD else t, None if sk == WILDCARD else sk))
        return RequiredState(tuple(include), (), lazy)
    raw = _obj(raw, "required_state")
    lazy_members = raw.get("lazy_members", False)
    if not isinstance(lazy_members, bool):
        raise MatrixError(400, Codes.BAD_JSON, "lazy_members must be a boolean")
    return RequiredState(_elements(raw.get("include")), _elements(raw.get("exclude")),
                         lazy_members)


def _elements(raw: Any) -> tuple[StateMatch, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_STATE_ELEMENTS:
        raise _bad("include/exclude must be lists of at most 100 elements")
    out: list[StateMatch] = []
    for el in raw:
        el = _obj(el, "required_state element")
        t, sk = el.get("type"), el.get("state_key")
        if not (t is None or isinstance(t, str)) or not (sk is None or isinstance(sk, str)):
            raise MatrixError(400, Codes.BAD_JSON, "type and state_key must be strings")
        out.append((t, sk))
    return tuple(out)


def _parse_filters(raw: dict[str, Any]) -> ListFilters:
    def flag(*keys: str) -> bool | None:
        for k in keys:
            v = raw.get(k)
            if v is not None:
                if not isinstance(v, bool):
                    raise MatrixError(400, Codes.BAD_JSON, f"{k} must be a boolean")
                return v
        return None

    def strings(key: str, nullable: bool = False) -> tuple[Any, ...] | None:
        v = raw.get(key)
        if v is None:
            return None
        if not isinstance(v, list) or len(v) > 1000 or not all(
                isinstance(x, str) or (nullable and x is None) for x in v):
            raise MatrixError(400, Codes.BAD_JSON, f"{key} must be a list of strings")
        return tuple(v)

    return ListFilters(
        is_dm=flag("is_dm"), is_invite=flag("is_invited", "is_invite"),
        is_encrypted=flag("is_encrypted"), room_types=strings("room_types", True),
        not_room_types=strings("not_room_types", True) or (), spaces=strings("spaces"),
        tags=strings("tags"), not_tags=strings("not_tags") or ())
