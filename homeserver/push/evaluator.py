"""Pure push-rule evaluation (spec "Push Rules"): a user's merged ruleset is compiled once into
matchers, then run against each event in priority order; the first enabled rule whose conditions
all hold decides the actions.

Compiling matters because every event is evaluated for every member of its room inside the
event's transaction: glob patterns become regexes once (shared between users through an LRU
cache), property paths are split once, and the per-event work is a few dict lookups per rule.

A ruleset can also be compiled once for many users: `rules.merge(USER, changes)` puts the
`USER` placeholder where the defaults name the user (`.m.rule.invite_for_me`,
`.m.rule.is_user_mention`; `USER_LOCALPART` in `.m.rule.contains_user_name`), and its matchers
read the user from `EvalContext.user_id`. Every
user with the same changes (most have none) then shares one `CompiledRules`, and
`evaluate_many` decides a rule's user-independent conditions once per event for all of them,
so a 100-member room costs one pass over the rules plus a per-user check where a rule names
the user.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from homeserver.push.rules import (
    KINDS,
    LEGACY_MENTION_RULES,
    MAX_SAFE_INT,
    USER,
    USER_LOCALPART,
)
from homeserver.types import JsonDict

__all__ = ["USER", "CompiledRules", "EvalContext", "Outcome"]

_WORD = "A-Za-z0-9_"
_MISSING = object()


@dataclass(slots=True)
class EvalContext:
    """What the conditions need beyond the event itself, for one room at one event."""

    member_count: int
    # The user's display name in the room (contains_display_name), or None.
    display_name: str | None = None
    # m.room.power_levels content of the room (sender_notification_permission).
    power_levels: Mapping[str, Any] = field(default_factory=dict)
    # Whose rules run, for a ruleset compiled with the `USER` placeholder.
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The actions of the matching rule, reduced to what the server does with them."""

    rule_id: str
    actions: tuple[Any, ...]
    notify: bool
    highlight: bool
    actions_json: str  # as stored with each notification


    def tweaks(self) -> JsonDict:
        out: JsonDict = {}
        for a in self.actions:
            if isinstance(a, dict) and isinstance(a.get("set_tweak"), str):
                out[a["set_tweak"]] = a.get("value", True) if a["set_tweak"] == "highlight" \
                    else a.get("value")
        return out


def split_path(key: str) -> tuple[str, ...]:
    """A dot-separated property path into its names (`\\.` is a dot, `\\\\` a backslash; other
    escapes are literal, per the appendix)."""
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key) and key[i + 1] in ".\\":
            cur.append(key[i + 1])
            i += 2
            continue
        if c == ".":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return tuple(parts)


def lookup(event: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path` in the event, or _MISSING."""
    value: Any = event
    for name in path:
        if not isinstance(value, dict) or name not in value:
            return _MISSING
        value = value[name]
    return value


@functools.lru_cache(maxsize=4096)
def glob_regex(pattern: str, words: bool) -> re.Pattern[str]:
    """The glob as a case-insensitive regex: whole value, or (`words`, for content.body) any
    substring starting and ending at a word boundary."""
    body = "".join(".*?" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    if words:
        return re.compile(rf"(?<![{_WORD}]){body}(?![{_WORD}])", re.IGNORECASE | re.DOTALL)
    return re.compile(rf"(?:{body})\Z", re.IGNORECASE | re.DOTALL)


def _is_scalar(value: Any) -> bool:
    if value is None or isinstance(value, bool | str):
        return True
    return isinstance(value, int) and -MAX_SAFE_INT <= value <= MAX_SAFE_INT


def _same(a: Any, b: Any) -> bool:
    # 1 == True in Python; the spec says do not cast types.
    return type(a) is type(b) and a == b


Matcher = Callable[[Mapping[str, Any], EvalContext], bool]


def _never(_e: Mapping[str, Any], _c: EvalContext) -> bool:
    return False


def _event_match(key: str, pattern: str) -> Matcher:
    path = split_path(key)
    if pattern is USER or pattern is USER_LOCALPART:
        words = key == "content.body"
        localpart = pattern is USER_LOCALPART

        def mu(event: Mapping[str, Any], ctx: EvalContext) -> bool:
            value = lookup(event, path)
            if not isinstance(value, str) or ctx.user_id is None:
                return False
            user = ctx.user_id[1:].split(":", 1)[0] if localpart else ctx.user_id
            # The user's id is matched as itself, not as a glob.
            if words:
                return _has_word(value, user)
            return value.casefold() == user.casefold()
        return mu
    rx = glob_regex(pattern, key == "content.body")
    find = rx.search if key == "content.body" else rx.match

    def m(event: Mapping[str, Any], _c: EvalContext) -> bool:
        value = lookup(event, path)
        return isinstance(value, str) and find(value) is not None
    return m


def _property_is(key: str, expected: Any) -> Matcher:
    path = split_path(key)
    if expected is USER:
        def mu(event: Mapping[str, Any], ctx: EvalContext) -> bool:
            value = lookup(event, path)
            return isinstance(value, str) and value == ctx.user_id
        return mu

    def m(event: Mapping[str, Any], _c: EvalContext) -> bool:
        value = lookup(event, path)
        return value is not _MISSING and _is_scalar(value) and _same(value, expected)
    return m


def _property_contains(key: str, expected: Any) -> Matcher:
    path = split_path(key)
    if expected is USER:
        def mu(event: Mapping[str, Any], ctx: EvalContext) -> bool:
            value = lookup(event, path)
            user = ctx.user_id
            return isinstance(value, list) and any(
                type(v) is str and v == user for v in value)
        return mu

    def m(event: Mapping[str, Any], _c: EvalContext) -> bool:
        value = lookup(event, path)
        return isinstance(value, list) and any(
            _is_scalar(v) and _same(v, expected) for v in value)
    return m


@functools.lru_cache(maxsize=4096)
def _word_regex(text: str) -> re.Pattern[str]:
    """`text` literally, as a whole word of a body, case-insensitively."""
    return re.compile(rf"(?<![{_WORD}]){re.escape(text)}(?![{_WORD}])", re.IGNORECASE)


_lowered: list[str] = ["", ""]  # the last body seen, and its lower case


def _has_word(body: str, text: str) -> bool:
    """Whether `text` is a whole word of `body`. These rules run for every member at every
    event, most bodies hold no member's name, and a substring test rules that out faster
    than the regex (for ASCII only, where lower() is exactly the regex's case folding)."""
    if text.isascii() and body.isascii():
        if _lowered[0] is not body:
            _lowered[0], _lowered[1] = body, body.lower()
        if text.lower() not in _lowered[1]:
            return False
    return _word_regex(text).search(body) is not None


def _display_name(event: Mapping[str, Any], ctx: EvalContext) -> bool:
    name = ctx.display_name
    body = lookup(event, ("content", "body"))
    if not name or not isinstance(body, str):
        return False
    return _has_word(body, name)


def _no_mentions(event: Mapping[str, Any], _c: EvalContext) -> bool:
    """The spec's gate on the legacy mention rules (v1.7): "only enabled if the event does not
    have an `m.mentions` property"."""
    content = event.get("content")
    return not (isinstance(content, dict) and "m.mentions" in content)


_MEMBER_COUNT = re.compile(r"^(==|<|>|>=|<=)?([0-9]+)$")
_OPS: dict[str, Callable[[int, int], bool]] = {
    "==": lambda a, b: a == b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b,
}


def _member_count(is_: str) -> Matcher:
    mo = _MEMBER_COUNT.match(is_)
    if mo is None:
        return _never
    op, n = _OPS[mo.group(1) or "=="], int(mo.group(2))
    return lambda _e, ctx: op(ctx.member_count, n)


def _int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):  # old rooms may carry string power levels
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default


def sender_power(power_levels: Mapping[str, Any], sender: str) -> int:
    users = power_levels.get("users")
    if isinstance(users, dict) and sender in users:
        return _int(users[sender], 0)
    return _int(power_levels.get("users_default"), 0)


def _notification_permission(key: str) -> Matcher:
    def m(event: Mapping[str, Any], ctx: EvalContext) -> bool:
        pl = ctx.power_levels
        notifications = pl.get("notifications")
        needed = 50
        if isinstance(notifications, dict) and key in notifications:
            needed = _int(notifications[key], 50)
        sender = event.get("sender")
        return isinstance(sender, str) and sender_power(pl, sender) >= needed
    return m


def per_user(cond: Mapping[str, Any]) -> bool:
    """Whether the condition's outcome can differ between users of one room at one event
    (the rest depend only on the event and the room, so are decided once for everyone)."""
    return cond.get("kind") == "contains_display_name" or any(
        cond.get(k) is USER or cond.get(k) is USER_LOCALPART for k in ("pattern", "value"))


def compile_condition(cond: Mapping[str, Any]) -> Matcher:
    """A matcher for one condition; unknown or malformed conditions never match (spec)."""
    kind = cond.get("kind")
    key = cond.get("key")
    if kind == "event_match":
        pattern = cond.get("pattern")
        if isinstance(key, str) and isinstance(pattern, str):
            return _event_match(key, pattern)
    elif kind == "event_property_is":
        if isinstance(key, str) and "value" in cond and _is_scalar(cond["value"]):
            return _property_is(key, cond["value"])
    elif kind == "event_property_contains":
        if isinstance(key, str) and "value" in cond and _is_scalar(cond["value"]):
            return _property_contains(key, cond["value"])
    elif kind == "contains_display_name":
        return _display_name
    elif kind == "room_member_count":
        if isinstance(cond.get("is"), str):
            return _member_count(cond["is"])
    elif kind == "sender_notification_permission":
        if isinstance(key, str):
            return _notification_permission(key)
    return _never


def _conditions_of(kind: str, rule: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The rule's conditions, with the implicit ones of content, room and sender rules."""
    if kind == "content":
        pattern = rule.get("pattern")
        if not isinstance(pattern, str):
            return [{"kind": "unknown"}]
        return [{"kind": "event_match", "key": "content.body", "pattern": pattern}]
    if kind == "room":
        return [{"kind": "event_match", "key": "room_id", "pattern": rule["rule_id"]}]
    if kind == "sender":
        return [{"kind": "event_match", "key": "sender", "pattern": rule["rule_id"]}]
    conds = rule.get("conditions", [])
    return list(conds) if isinstance(conds, list) else [{"kind": "unknown"}]


@dataclass(frozen=True, slots=True)
class _Compiled:
    matchers: tuple[Matcher, ...]
    outcome: Outcome
    shared: tuple[Matcher, ...]  # the same for every user at one event
    own: tuple[Matcher, ...]  # per user (names the user, or their display name)


def _outcome(rule_id: str, actions: Any) -> Outcome:
    acts = tuple(a for a in actions if a not in ("dont_notify", "coalesce")) \
        if isinstance(actions, list) else ()
    notify = "notify" in acts
    highlight = False
    for a in acts:
        if isinstance(a, dict) and a.get("set_tweak") == "highlight":
            highlight = a.get("value", True) is True
    return Outcome(rule_id, acts, notify, highlight, orjson.dumps(list(acts)).decode())


class CompiledRules:
    """One user's ruleset, ready to evaluate. Disabled rules are dropped at compile time."""

    __slots__ = ("_rules", "needs_display_name")

    def __init__(self, ruleset: Mapping[str, Any]) -> None:
        rules: list[_Compiled] = []
        scope = ruleset.get("global", ruleset)
        for kind in KINDS:
            for rule in scope.get(kind, []) or []:
                if not isinstance(rule, dict) or not rule.get("enabled", True):
                    continue
                conds = _conditions_of(kind, rule)
                compiled = [(compile_condition(c), per_user(c)) for c in conds]
                if rule.get("default") is True and rule.get("rule_id") in LEGACY_MENTION_RULES:
                    compiled.insert(0, (_no_mentions, False))
                rules.append(_Compiled(
                    tuple(m for m, _ in compiled),
                    _outcome(str(rule.get("rule_id")), rule.get("actions", [])),
                    tuple(m for m, own in compiled if not own),
                    tuple(m for m, own in compiled if own)))
        self._rules = tuple(rules)
        self.needs_display_name = any(
            c.get("kind") == "contains_display_name"
            for kind in KINDS for rule in scope.get(kind, []) or []
            if isinstance(rule, dict) and rule.get("enabled", True)
            for c in _conditions_of(kind, rule))

    def evaluate(self, event: Mapping[str, Any], ctx: EvalContext) -> Outcome | None:
        """The outcome of the first matching rule, or None when no rule matches."""
        for rule in self._rules:
            if all(m(event, ctx) for m in rule.matchers):
                return rule.outcome
        return None

    def evaluate_many(self, event: Mapping[str, Any], room: EvalContext,
                      users: Sequence[str],
                      display_name: Callable[[str], str | None] | None = None,
                      ) -> list[Outcome | None]:
        """`evaluate` for each of `users` sharing this ruleset, in one pass over the rules:
        a rule's shared conditions are decided once, its per-user ones for each user still
        undecided. `room` gives the room's member count and power levels; `display_name`
        looks a user's up (needed only when `needs_display_name`)."""
        out: list[Outcome | None] = [None] * len(users)
        pending = list(range(len(users)))
        contexts: dict[int, EvalContext] = {}
        for rule in self._rules:
            if not pending:
                break
            if not all(m(event, room) for m in rule.shared):
                continue
            if not rule.own:
                for i in pending:
                    out[i] = rule.outcome
                break
            rest: list[int] = []
            for i in pending:
                ctx = contexts.get(i)
                if ctx is None:
                    user = users[i]
                    name = display_name(user) if display_name is not None \
                        and self.needs_display_name else None
                    ctx = contexts[i] = EvalContext(room.member_count, name,
                                                    room.power_levels, user)
                if all(m(event, ctx) for m in rule.own):
                    out[i] = rule.outcome
                else:
                    rest.append(i)
            pending = rest
        return out
