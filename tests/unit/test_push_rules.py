"""Pure push-rule code: the predefined rules and the merge of a user's changes."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.errors import MatrixError
from homeserver.push import rules

ALICE = "@alice:example.org"

SPEC_ORDER = {
    "override": [".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
                 ".m.rule.member_event", ".m.rule.is_user_mention",
                 ".m.rule.contains_display_name", ".m.rule.is_room_mention", ".m.rule.roomnotif",
                 ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
                 ".m.rule.suppress_edits"],
    "content": [".m.rule.contains_user_name"],
    "room": [],
    "sender": [],
    "underride": [".m.rule.call", ".m.rule.encrypted_room_one_to_one",
                  ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"],
}


def ids(ruleset: dict[str, Any], kind: str) -> list[str]:
    return [r["rule_id"] for r in ruleset["global"][kind]]


def test_default_ruleset_shape_and_order() -> None:
    rs = rules.merge(ALICE, None)
    assert set(rs["global"]) == set(rules.KINDS)
    for kind, expected in SPEC_ORDER.items():
        assert ids(rs, kind) == expected
        for rule in rs["global"][kind]:
            assert rule["default"] is True
            assert isinstance(rule["enabled"], bool)
            assert isinstance(rule["actions"], list)
            assert ("pattern" if kind == "content" else "conditions") in rule
    master = rs["global"]["override"][0]
    assert master == {"rule_id": ".m.rule.master", "default": True, "enabled": False,
                      "conditions": [], "actions": []}
    assert all(r["enabled"] for r in rs["global"]["override"][1:] + rs["global"]["underride"])


@pytest.mark.parametrize(("kind", "rule_id", "condition"), [
    ("override", ".m.rule.invite_for_me", {"key": "state_key", "kind": "event_match",
                                           "pattern": ALICE}),
    ("override", ".m.rule.is_user_mention", {"kind": "event_property_contains",
                                             "key": "content.m\\.mentions.user_ids",
                                             "value": ALICE}),
    ("underride", ".m.rule.room_one_to_one", {"kind": "room_member_count", "is": "2"}),
])
def test_user_specific_conditions(kind: str, rule_id: str, condition: dict[str, Any]) -> None:
    rule = rules.find_rule(rules.merge(ALICE, None), kind, rule_id)
    assert rule is not None
    assert condition in rule["conditions"]


def test_legacy_content_rule_names_the_localpart() -> None:
    rule = rules.find_rule(rules.merge(ALICE, None), "content", ".m.rule.contains_user_name")
    assert rule is not None
    assert rule["pattern"] == "alice"
    assert rule["actions"] == ["notify", {"set_tweak": "sound", "value": "default"},
                               {"set_tweak": "highlight"}]


def test_defaults_are_fresh_copies() -> None:
    a = rules.default_rules(ALICE)
    a["override"][1]["actions"].append("notify")
    assert rules.default_rules(ALICE)["override"][1]["actions"] == []


def rule(rule_id: str, pattern: str = "x") -> dict[str, Any]:
    return rules.build_user_rule("content", rule_id, {"pattern": pattern, "actions": ["notify"]})


@pytest.mark.parametrize(("steps", "expected"), [
    ([("a", None, None)], ["a"]),
    ([("a", None, None), ("b", None, None)], ["b", "a"]),            # new rules go first
    ([("a", None, None), ("b", "a", None)], ["b", "a"]),
    ([("a", None, None), ("b", None, "a")], ["a", "b"]),
    ([("a", None, None), ("b", None, "a"), ("c", "b", None)], ["a", "c", "b"]),
    ([("a", None, None), ("b", None, "a"), ("c", None, "a")], ["a", "c", "b"]),
    ([("a", None, None), ("b", None, "a"), ("c", "b", "a")], ["a", "c", "b"]),  # before wins
    ([("a", None, None), ("b", None, "a"), ("a", None, None)], ["a", "b"]),    # update stays
    ([("a", None, None), ("b", None, "a"), ("a", None, "b")], ["b", "a"]),     # update moves
])
def test_user_rule_positions(steps: list[tuple[str, str | None, str | None]],
                             expected: list[str]) -> None:
    changes = rules.empty_changes()
    for rule_id, before, after in steps:
        changes = rules.put_user_rule(changes, "content", rule(rule_id), before, after)
    assert ids(rules.merge(ALICE, changes), "content") == [*expected,
                                                           ".m.rule.contains_user_name"]


def test_user_rules_precede_defaults_but_follow_master() -> None:
    changes = rules.put_user_rule(rules.empty_changes(), "override",
                                  rules.build_user_rule("override", "mine", {
                                      "conditions": [{"kind": "event_match", "key": "type",
                                                      "pattern": "m.room.topic"}],
                                      "actions": ["notify"]}))
    changes = rules.put_user_rule(changes, "underride", rules.build_user_rule(
        "underride", "low", {"actions": []}))
    rs = rules.merge(ALICE, changes)
    assert ids(rs, "override")[:3] == [".m.rule.master", "mine", ".m.rule.suppress_notices"]
    assert ids(rs, "underride")[0] == "low"
    mine = rules.find_rule(rs, "override", "mine")
    assert mine == {"rule_id": "mine", "default": False, "enabled": True, "actions": ["notify"],
                    "conditions": [{"kind": "event_match", "key": "type",
                                    "pattern": "m.room.topic"}]}


def test_room_and_sender_rules_have_no_conditions() -> None:
    changes = rules.put_user_rule(rules.empty_changes(), "room", rules.build_user_rule(
        "room", "!r:example.org", {"actions": [], "conditions": [{"kind": "x"}]}))
    assert rules.merge(ALICE, changes)["global"]["room"] == [
        {"rule_id": "!r:example.org", "default": False, "enabled": True, "actions": []}]


@pytest.mark.parametrize(("kind", "rule_id", "attr", "value"), [
    ("underride", ".m.rule.message", "enabled", False),
    ("override", ".m.rule.master", "enabled", True),
    ("underride", ".m.rule.message", "actions", ["notify", {"set_tweak": "sound",
                                                             "value": "default"}]),
    ("override", ".m.rule.suppress_notices", "actions", ["notify"]),
    ("content", "mine", "enabled", False),
    ("content", "mine", "actions", []),
])
def test_overrides(kind: str, rule_id: str, attr: str, value: Any) -> None:
    changes = rules.put_user_rule(rules.empty_changes(), "content", rule("mine"))
    if attr == "enabled":
        changes = rules.set_enabled(changes, kind, rule_id, value)
    else:
        changes = rules.set_actions(changes, kind, rule_id, value)
    rs = rules.merge(ALICE, changes)
    got = rules.find_rule(rs, kind, rule_id)
    assert got is not None and got[attr] == value
    # Order is untouched by overrides.
    for k, expected in SPEC_ORDER.items():
        assert [i for i in ids(rs, k) if i.startswith(".")] == expected


def test_update_keeps_enabled_state() -> None:
    changes = rules.put_user_rule(rules.empty_changes(), "content", rule("a"))
    changes = rules.set_enabled(changes, "content", "a", False)
    changes = rules.put_user_rule(changes, "content", rule("a", "other"))
    got = rules.find_rule(rules.merge(ALICE, changes), "content", "a")
    assert got == {"rule_id": "a", "default": False, "enabled": False, "actions": ["notify"],
                   "pattern": "other"}


def test_delete() -> None:
    changes = rules.put_user_rule(rules.empty_changes(), "content", rule("a"))
    changes = rules.delete_user_rule(changes, "content", "a")
    assert ids(rules.merge(ALICE, changes), "content") == [".m.rule.contains_user_name"]


@pytest.mark.parametrize(("call", "status", "errcode"), [
    (lambda: rules.delete_user_rule(rules.empty_changes(), "content", "nope"), 404,
     "M_NOT_FOUND"),
    (lambda: rules.delete_user_rule(rules.empty_changes(), "underride", ".m.rule.message"),
     400, "M_INVALID_PARAM"),
    (lambda: rules.delete_user_rule(rules.empty_changes(), "content", ".m.rule.nope"), 404,
     "M_NOT_FOUND"),
    (lambda: rules.set_enabled(rules.empty_changes(), "override", ".m.rule.message", True),
     404, "M_NOT_FOUND"),  # wrong kind
    (lambda: rules.set_actions(rules.empty_changes(), "room", "!x:y", []), 404, "M_NOT_FOUND"),
    (lambda: rules.put_user_rule(rules.empty_changes(), "content", rule("a"), "zz"), 404,
     "M_NOT_FOUND"),
    (lambda: rules.put_user_rule(rules.empty_changes(), "content", rule("a"), None,
                                 ".m.rule.x"), 400, "M_INVALID_PARAM"),
    (lambda: rules.check_kind("global"), 400, "M_INVALID_PARAM"),
    (lambda: rules.check_user_rule_id(".m.rule.mine"), 400, "M_INVALID_PARAM"),
    (lambda: rules.check_user_rule_id("a/b"), 400, "M_INVALID_PARAM"),
    (lambda: rules.check_actions("notify"), 400, "M_BAD_JSON"),
    (lambda: rules.check_actions(["explode"]), 400, "M_INVALID_PARAM"),
    (lambda: rules.check_actions([{"value": 1}]), 400, "M_INVALID_PARAM"),
    (lambda: rules.check_actions([3]), 400, "M_BAD_JSON"),
    (lambda: rules.check_conditions({}), 400, "M_BAD_JSON"),
    (lambda: rules.check_conditions([{"key": "type"}]), 400, "M_BAD_JSON"),
    (lambda: rules.check_conditions([{"kind": "event_match", "key": "type"}]), 400,
     "M_BAD_JSON"),
    (lambda: rules.check_conditions([{"kind": "event_property_is", "key": "k",
                                      "value": {"a": 1}}]), 400, "M_INVALID_PARAM"),
    (lambda: rules.check_conditions([{"kind": "event_property_contains", "key": "k",
                                      "value": 2**53}]), 400, "M_INVALID_PARAM"),
    (lambda: rules.check_conditions([{"kind": "room_member_count", "is": "two"}]), 400,
     "M_INVALID_PARAM"),
    (lambda: rules.check_conditions([{"kind": "sender_notification_permission"}]), 400,
     "M_BAD_JSON"),
    (lambda: rules.build_user_rule("content", "a", {"actions": []}), 400, "M_BAD_JSON"),
    (lambda: rules.build_user_rule("override", "a", {"conditions": []}), 400, "M_BAD_JSON"),
    (lambda: rules.check_enabled({"enabled": "yes"}), 400, "M_BAD_JSON"),
])
def test_errors(call: Any, status: int, errcode: str) -> None:
    with pytest.raises(MatrixError) as info:
        call()
    assert (info.value.status, info.value.errcode) == (status, errcode)


@pytest.mark.parametrize(("actions", "expected"), [
    (["notify"], ["notify"]),
    (["dont_notify"], ["dont_notify"]),  # kept as set; evaluation ignores it
    (["notify", "coalesce", {"set_tweak": "highlight", "value": False}],
     ["notify", "coalesce", {"set_tweak": "highlight", "value": False}]),
    ([{"set_tweak": "custom.tweak", "value": {"any": ["thing"]}}],
     [{"set_tweak": "custom.tweak", "value": {"any": ["thing"]}}]),
])
def test_actions_accepted(actions: list[Any], expected: list[Any]) -> None:
    assert rules.check_actions(actions) == expected


def test_conditions_accepted() -> None:
    conds = [
        {"kind": "event_match", "key": "content.body", "pattern": "cake*"},
        {"kind": "event_property_is", "key": "content.m\\.federate", "value": None},
        {"kind": "event_property_contains", "key": "content.alt_aliases", "value": "#a:b"},
        {"kind": "contains_display_name"},
        {"kind": "room_member_count", "is": "<=10"},
        {"kind": "sender_notification_permission", "key": "room"},
        {"kind": "org.example.future", "anything": 1},  # unknown kinds never match, but store
    ]
    assert rules.check_conditions(conds) == conds
