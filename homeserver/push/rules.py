"""Pure push-rule data: the spec's predefined rules, validation of rule bodies, and the merge of a
user's changes into the ruleset clients see (GET /pushrules/ and the `m.push_rules` account data).

A user's *changes* are one JSON object, kept apart from the merged ruleset so that a later change
to the server-default rules reaches every user whose own edits don't touch them:

    {"defaults": {kind: {rule_id: {"enabled": bool, "actions": [...]}}},   # overrides, sparse
     "user": {kind: [rule, ...]}}                                         # most important first

User rules are stored with their rule_id, enabled, actions and conditions (override/underride) or
pattern (content). The predefined rules are those of the spec versions /versions advertises
(up to v1.11): besides the `m.mentions` rules they include the legacy body-matching ones,
`.m.rule.contains_display_name`, `.m.rule.roomnotif` and `.m.rule.contains_user_name`,
deprecated since v1.7 and "only enabled if the event does not have an `m.mentions` property"
(`LEGACY_MENTION_RULES`, applied by the evaluator). A client or bot that does not send
`m.mentions` relies on them for its mentions to notify; v1.17 removed them from the spec, when
clients had moved on, and a server advertising v1.17 would drop them.

Priority order served per kind: for `override`, `.m.rule.master` first, then the user's rules,
then the other predefined rules; for every other kind, the user's rules before the predefined ones
("server-default rules ... operate at a lower priority than user-defined rules").
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from homeserver.errors import Codes, MatrixError
from homeserver.types import JsonDict

KINDS = ("override", "content", "room", "sender", "underride")
CONDITION_KINDS = frozenset({
    "event_match", "event_property_is", "event_property_contains", "contains_display_name",
    "room_member_count", "sender_notification_permission",
})
LEGACY_ACTIONS = frozenset({"dont_notify", "coalesce"})  # accepted, then stripped (spec)
MAX_SAFE_INT = 2**53 - 1
_MEMBER_COUNT = re.compile(r"^(==|<|>|>=|<=)?[0-9]+$")

# Rules that match only events without `content["m.mentions"]` (spec v1.7-v1.16).
LEGACY_MENTION_RULES = frozenset({
    ".m.rule.contains_display_name", ".m.rule.roomnotif", ".m.rule.contains_user_name"})


class Placeholder(str):
    """The type of `USER` and `USER_LOCALPART`: told apart from any user-supplied string by
    identity."""

    __slots__ = ()


# Stand for "the user whose rules these are" (and that user's localpart) in a ruleset merged
# once for many users; see homeserver/push/evaluator.py.
USER: str = Placeholder("@\x00user:\x00")
USER_LOCALPART: str = Placeholder("\x00user")


def _localpart(user_id: str) -> str:
    if user_id is USER:
        return USER_LOCALPART
    return user_id[1:].split(":", 1)[0]


_SOUND_DEFAULT: JsonDict = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT: JsonDict = {"set_tweak": "highlight"}


def _match(key: str, pattern: str) -> JsonDict:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _rule(rule_id: str, conditions: list[JsonDict], actions: list[Any],
          enabled: bool = True) -> JsonDict:
    return {"rule_id": rule_id, "default": True, "enabled": enabled,
            "conditions": conditions, "actions": actions}


def default_rules(user_id: str) -> dict[str, list[JsonDict]]:
    """The spec's predefined rules for `user_id`, per kind, in spec order (fresh copies)."""
    override = [
        _rule(".m.rule.master", [], [], enabled=False),
        _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
        _rule(".m.rule.invite_for_me", [
            _match("type", "m.room.member"),
            _match("content.membership", "invite"),
            _match("state_key", user_id),
        ], ["notify", dict(_SOUND_DEFAULT)]),
        _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
        _rule(".m.rule.is_user_mention", [
            {"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids",
             "value": user_id},
        ], ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)]),
        _rule(".m.rule.contains_display_name", [{"kind": "contains_display_name"}],
              ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)]),
        _rule(".m.rule.is_room_mention", [
            {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
            {"kind": "sender_notification_permission", "key": "room"},
        ], ["notify", dict(_HIGHLIGHT)]),
        _rule(".m.rule.roomnotif", [
            _match("content.body", "@room"),
            {"kind": "sender_notification_permission", "key": "room"},
        ], ["notify", dict(_HIGHLIGHT)]),
        _rule(".m.rule.tombstone", [
            _match("type", "m.room.tombstone"), _match("state_key", ""),
        ], ["notify", dict(_HIGHLIGHT)]),
        _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
        _rule(".m.rule.room.server_acl", [
            _match("type", "m.room.server_acl"), _match("state_key", ""),
        ], []),
        _rule(".m.rule.suppress_edits", [
            {"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type",
             "value": "m.replace"},
        ], []),
    ]
    underride = [
        _rule(".m.rule.call", [_match("type", "m.call.invite")],
              ["notify", {"set_tweak": "sound", "value": "ring"}]),
        _rule(".m.rule.encrypted_room_one_to_one", [
            {"kind": "room_member_count", "is": "2"}, _match("type", "m.room.encrypted"),
        ], ["notify", dict(_SOUND_DEFAULT)]),
        _rule(".m.rule.room_one_to_one", [
            {"kind": "room_member_count", "is": "2"}, _match("type", "m.room.message"),
        ], ["notify", dict(_SOUND_DEFAULT)]),
        _rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
        _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
    ]
    content = [{"rule_id": ".m.rule.contains_user_name", "default": True, "enabled": True,
                "pattern": _localpart(user_id),
                "actions": ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)]}]
    return {"override": override, "content": content, "room": [], "sender": [],
            "underride": underride}


def default_rule_ids(kind: str) -> list[str]:
    return [r["rule_id"] for r in default_rules("@x:x").get(kind, [])]


def empty_changes() -> JsonDict:
    return {"defaults": {}, "user": {}}


def _user_rules(changes: JsonDict, kind: str) -> list[JsonDict]:
    rules = changes.get("user", {}).get(kind, [])
    return rules if isinstance(rules, list) else []


def _served_user_rule(kind: str, rule: JsonDict) -> JsonDict:
    out: JsonDict = {"rule_id": rule["rule_id"], "default": False,
                     "enabled": bool(rule.get("enabled", True)),
                     "actions": list(rule.get("actions", []))}
    if kind in ("override", "underride"):
        out["conditions"] = list(rule.get("conditions", []))
    elif kind == "content":
        out["pattern"] = rule.get("pattern", "")
    return out


def merge(user_id: str, changes: JsonDict | None) -> JsonDict:
    """The full ruleset `{"global": {kind: [rule, ...]}}` for GET /pushrules/ and `m.push_rules`."""
    changes = changes or empty_changes()
    defaults = default_rules(user_id)
    overrides = changes.get("defaults", {})
    out: dict[str, list[JsonDict]] = {}
    for kind in KINDS:
        kind_overrides = overrides.get(kind, {})
        base = []
        for rule in defaults[kind]:
            o = kind_overrides.get(rule["rule_id"], {})
            if "enabled" in o:
                rule["enabled"] = bool(o["enabled"])
            if "actions" in o:
                rule["actions"] = list(o["actions"])
            base.append(rule)
        mine = [_served_user_rule(kind, r) for r in _user_rules(changes, kind)]
        if kind == "override" and base and base[0]["rule_id"] == ".m.rule.master":
            out[kind] = [base[0], *mine, *base[1:]]
        else:
            out[kind] = [*mine, *base]
    return {"global": out}


def find_rule(ruleset: JsonDict, kind: str, rule_id: str) -> JsonDict | None:
    for rule in ruleset["global"].get(kind, []):
        if rule["rule_id"] == rule_id:
            return dict(rule)
    return None


# ------------------------------------------------------------------ validation


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown push rule kind {kind!r}")
    return kind


def check_user_rule_id(rule_id: str) -> str:
    """A rule id a client may create: not a server-default one, no slashes."""
    if not rule_id:
        raise MatrixError(400, Codes.INVALID_PARAM, "Empty rule id")
    if rule_id.startswith("."):
        raise MatrixError(400, Codes.INVALID_PARAM,
                          "Rule ids starting with '.' are reserved for server-default rules")
    if "/" in rule_id or "\\" in rule_id:
        raise MatrixError(400, Codes.INVALID_PARAM, "Rule ids may not contain slashes")
    return rule_id


def check_actions(actions: Any) -> list[Any]:
    """Validated actions, as given: the historical `dont_notify` and `coalesce` are kept (old
    clients read back what they set, as Synapse serves it) and ignored by evaluation, which
    the spec requires ("Historical Actions")."""
    if not isinstance(actions, list):
        raise MatrixError(400, Codes.BAD_JSON, "actions must be an array")
    out: list[Any] = []
    for action in actions:
        if isinstance(action, str):
            if action in LEGACY_ACTIONS:
                out.append(action)
                continue
            if action != "notify":
                raise MatrixError(400, Codes.INVALID_PARAM, f"Unrecognised action {action!r}")
            out.append(action)
        elif isinstance(action, dict):
            tweak = action.get("set_tweak")
            if not isinstance(tweak, str) or not tweak:
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  "Object actions must be set_tweak with a string tweak name")
            out.append(dict(action))
        else:
            raise MatrixError(400, Codes.BAD_JSON, "Actions must be strings or objects")
    return out


def _scalar(value: Any) -> bool:
    if value is None or isinstance(value, bool | str):
        return True
    return isinstance(value, int) and -MAX_SAFE_INT <= value <= MAX_SAFE_INT


def _string_param(cond: JsonDict, name: str) -> None:
    if not isinstance(cond.get(name), str):
        raise MatrixError(400, Codes.BAD_JSON,
                          f"{cond['kind']} condition needs a string {name!r}")


def check_conditions(conditions: Any) -> list[JsonDict]:
    """Validated conditions. Unknown condition kinds are kept: the spec says they never match."""
    if not isinstance(conditions, list):
        raise MatrixError(400, Codes.BAD_JSON, "conditions must be an array")
    out: list[JsonDict] = []
    for cond in conditions:
        if not isinstance(cond, dict) or not isinstance(cond.get("kind"), str):
            raise MatrixError(400, Codes.BAD_JSON, "Each condition must be an object with a kind")
        kind = cond["kind"]
        if kind == "event_match":
            _string_param(cond, "key")
            _string_param(cond, "pattern")
        elif kind in ("event_property_is", "event_property_contains"):
            _string_param(cond, "key")
            if "value" not in cond:
                raise MatrixError(400, Codes.BAD_JSON, f"{kind} condition needs a value")
            if not _scalar(cond["value"]):
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  f"{kind} value must be a string, integer, boolean or null")
        elif kind == "room_member_count":
            _string_param(cond, "is")
            if not _MEMBER_COUNT.match(cond["is"]):
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  "room_member_count 'is' must look like '2', '<=10' or '>1'")
        elif kind == "sender_notification_permission":
            _string_param(cond, "key")
        out.append(dict(cond))
    return out


def check_enabled(body: JsonDict) -> bool:
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise MatrixError(400, Codes.BAD_JSON, "enabled must be a boolean")
    return enabled


def build_user_rule(kind: str, rule_id: str, body: JsonDict) -> JsonDict:
    """The stored form of a user rule from a PUT body (without `enabled`)."""
    if "actions" not in body:
        raise MatrixError(400, Codes.BAD_JSON, "Missing actions")
    rule: JsonDict = {"rule_id": rule_id, "actions": check_actions(body["actions"])}
    if kind in ("override", "underride"):
        rule["conditions"] = check_conditions(body.get("conditions", []))
    elif kind == "content":
        pattern = body.get("pattern")
        if not isinstance(pattern, str):
            raise MatrixError(400, Codes.BAD_JSON, "Content rules need a string pattern")
        rule["pattern"] = pattern
    return rule


# ------------------------------------------------------------------ changes (pure, copy-on-write)

def _not_found(rule_id: str) -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, f"Unknown push rule {rule_id!r}")


def _position(rules: list[JsonDict], before: str | None, after: str | None) -> int:
    anchor = before if before is not None else after
    if anchor is None:
        return 0  # a new rule without before/after is the most important user rule
    if anchor.startswith("."):
        raise MatrixError(400, Codes.INVALID_PARAM,
                          "Rules cannot be placed relative to a server-default rule")
    for i, r in enumerate(rules):
        if r["rule_id"] == anchor:
            return i if before is not None else i + 1
    raise MatrixError(404, Codes.NOT_FOUND, f"No user rule {anchor!r} to place this rule next to")


def put_user_rule(changes: JsonDict, kind: str, rule: JsonDict, before: str | None = None,
                  after: str | None = None) -> JsonDict:
    """Add `rule` (or replace the one with its id, keeping its enabled state). With `before` /
    `after` (another user rule of the same kind; `before` wins if both are given) it is placed
    next to that rule; a new rule otherwise goes first, an updated one keeps its place."""
    new = copy.deepcopy(changes)
    rules = list(_user_rules(new, kind))
    rule = dict(rule)
    index = next((i for i, r in enumerate(rules) if r["rule_id"] == rule["rule_id"]), None)
    if index is not None:
        rule["enabled"] = rules[index].get("enabled", True)
        del rules[index]
    else:
        rule["enabled"] = True  # "When creating push rules, they MUST be enabled by default."
    if index is not None and before is None and after is None:
        pos = index
    else:
        pos = _position(rules, before, after)
    rules.insert(pos, rule)
    new.setdefault("user", {})[kind] = rules
    return new


def delete_user_rule(changes: JsonDict, kind: str, rule_id: str) -> JsonDict:
    if rule_id.startswith("."):
        if rule_id in default_rule_ids(kind):
            raise MatrixError(400, Codes.INVALID_PARAM, "Server-default rules cannot be deleted")
        raise _not_found(rule_id)
    new = copy.deepcopy(changes)
    rules = _user_rules(new, kind)
    kept = [r for r in rules if r["rule_id"] != rule_id]
    if len(kept) == len(rules):
        raise _not_found(rule_id)
    new.setdefault("user", {})[kind] = kept
    return new


def _set_attr(changes: JsonDict, kind: str, rule_id: str, name: str, value: Any) -> JsonDict:
    new = copy.deepcopy(changes)
    if rule_id in default_rule_ids(kind):
        new.setdefault("defaults", {}).setdefault(kind, {}).setdefault(rule_id, {})[name] = value
        return new
    for r in _user_rules(new, kind):
        if r["rule_id"] == rule_id:
            r[name] = value
            return new
    raise _not_found(rule_id)


def set_enabled(changes: JsonDict, kind: str, rule_id: str, enabled: bool) -> JsonDict:
    return _set_attr(changes, kind, rule_id, "enabled", enabled)


def set_actions(changes: JsonDict, kind: str, rule_id: str, actions: list[Any]) -> JsonDict:
    return _set_attr(changes, kind, rule_id, "actions", check_actions(actions))


Change = Callable[[JsonDict], JsonDict]
