"""The push-rule evaluator against the spec's condition examples and the default ruleset."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.push import rules
from homeserver.push.evaluator import (
    USER,
    CompiledRules,
    EvalContext,
    compile_condition,
    split_path,
)

ME = "@me:example.org"
CTX = EvalContext(member_count=5)

TOPIC: dict[str, Any] = {"content": {"topic": "Lunch plans"}, "sender": "@example:example.org",
                         "state_key": "", "type": "m.room.topic",
                         "room_id": "!636q39766251:example.com"}
CREATE: dict[str, Any] = {"content": {"creator": "@example:example.org", "m.federate": True,
                                      "room_version": "1"},
                          "type": "m.room.create", "state_key": ""}
ALIAS: dict[str, Any] = {"content": {"alias": "#somewhere:localhost",
                                     "alt_aliases": ["#somewhere:example.org",
                                                     "#myroom:example.com"]},
                         "type": "m.room.canonical_alias", "state_key": ""}


def _with(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    import copy
    ev = copy.deepcopy(base)
    d = ev
    for p in path[:-1]:
        d = d.setdefault(p, {})
    d[path[-1]] = value
    return ev


def _body(body: Any) -> dict[str, Any]:
    return {"type": "m.room.message", "content": {"msgtype": "m.text", "body": body},
            "sender": "@other:example.org"}


@pytest.mark.parametrize(("cond", "event", "expected"), [
    # event_match, spec example: content.topic / lunc?*
    ({"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}, TOPIC, True),
    ({"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"},
     _with(TOPIC, ("content", "topic"), "LUNCH"), True),
    ({"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"},
     _with(TOPIC, ("content", "topic"), " lunch"), False),
    ({"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"},
     _with(TOPIC, ("content", "topic"), "lunc"), False),
    ({"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"},
     _with(TOPIC, ("content", "topic"), None), False),
    ({"kind": "event_match", "key": "content.missing", "pattern": "*"}, TOPIC, False),
    ({"kind": "event_match", "key": "state_key", "pattern": "*"}, TOPIC, True),
    # event_match on content.body: word boundaries (spec example ex*ple)
    ({"kind": "event_match", "key": "content.body", "pattern": "ex*ple"},
     _body("An example event."), True),
    ({"kind": "event_match", "key": "content.body", "pattern": "ex*ple"}, _body("exple"), True),
    ({"kind": "event_match", "key": "content.body", "pattern": "ex*ple"},
     _body("An exciting triple-whammy"), True),
    ({"kind": "event_match", "key": "content.body", "pattern": "ex*ple"},
     _body("examples"), False),
    ({"kind": "event_match", "key": "content.body", "pattern": "tea"},
     _body("It's time for tea"), True),
    ({"kind": "event_match", "key": "content.body", "pattern": "tea"}, _body("steam"), False),
    ({"kind": "event_match", "key": "content.body", "pattern": "a.b"}, _body("xa.b"), False),
    ({"kind": "event_match", "key": "content.body", "pattern": "a.b"}, _body("x a.b!"), True),
    # event_property_is, spec example: content.m\.federate == true
    ({"kind": "event_property_is", "key": "content.m\\.federate", "value": True}, CREATE, True),
    ({"kind": "event_property_is", "key": "content.m\\.federate", "value": True},
     _with(CREATE, ("content", "m.federate"), "true"), False),
    ({"kind": "event_property_is", "key": "content.m\\.federate", "value": True},
     _with(CREATE, ("content", "m.federate"), 1), False),
    ({"kind": "event_property_is", "key": "content.x", "value": None},
     _with(CREATE, ("content", "x"), None), True),
    ({"kind": "event_property_is", "key": "content.x", "value": None}, CREATE, False),
    ({"kind": "event_property_is", "key": "content.x", "value": 3},
     _with(CREATE, ("content", "x"), [3]), False),
    # event_property_contains, spec example: alt_aliases
    ({"kind": "event_property_contains", "key": "content.alt_aliases",
      "value": "#myroom:example.com"}, ALIAS, True),
    ({"kind": "event_property_contains", "key": "content.alt_aliases",
      "value": ":example.com"}, ALIAS, False),
    ({"kind": "event_property_contains", "key": "content.alias",
      "value": "#somewhere:localhost"}, ALIAS, False),
    ({"kind": "event_property_contains", "key": "content.l", "value": 1},
     _with(ALIAS, ("content", "l"), [True, {"a": 1}, 1]), True),
    ({"kind": "event_property_contains", "key": "content.l", "value": 1},
     _with(ALIAS, ("content", "l"), [True]), False),
    # room_member_count (CTX has 5 members)
    ({"kind": "room_member_count", "is": "5"}, TOPIC, True),
    ({"kind": "room_member_count", "is": "==5"}, TOPIC, True),
    ({"kind": "room_member_count", "is": "2"}, TOPIC, False),
    ({"kind": "room_member_count", "is": "<5"}, TOPIC, False),
    ({"kind": "room_member_count", "is": "<=5"}, TOPIC, True),
    ({"kind": "room_member_count", "is": ">4"}, TOPIC, True),
    ({"kind": "room_member_count", "is": ">=6"}, TOPIC, False),
    ({"kind": "room_member_count", "is": "!5"}, TOPIC, False),
    # unknown conditions never match
    ({"kind": "org.example.future"}, TOPIC, False),
    ({"kind": "event_match", "key": "type"}, TOPIC, False),
])
def test_condition(cond: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert compile_condition(cond)(event, CTX) is expected


@pytest.mark.parametrize(("key", "parts"), [
    ("content.body", ("content", "body")),
    ("content.m\\.relates_to", ("content", "m.relates_to")),
    ("content.m\\\\foo", ("content", "m\\foo")),
    ("content.m\\xfoo", ("content", "m\\xfoo")),
])
def test_split_path(key: str, parts: tuple[str, ...]) -> None:
    assert split_path(key) == parts


@pytest.mark.parametrize(("name", "body", "expected"), [
    ("Alice", "hey alice, lunch?", True),
    ("Alice", "Alicee", False),
    ("A.B", "ping A.B now", True),
    (None, "anything", False),
])
def test_contains_display_name(name: str | None, body: str, expected: bool) -> None:
    m = compile_condition({"kind": "contains_display_name"})
    assert m(_body(body), EvalContext(member_count=3, display_name=name)) is expected


@pytest.mark.parametrize(("pl", "sender", "expected"), [
    ({}, "@a:x", False),  # users_default 0, room notification needs 50
    ({"users": {"@a:x": 50}}, "@a:x", True),
    ({"users": {"@a:x": 49}}, "@a:x", False),
    ({"users_default": 10, "notifications": {"room": 10}}, "@a:x", True),
    ({"users": {"@a:x": 100}, "notifications": {"room": "101"}}, "@a:x", False),
])
def test_sender_notification_permission(pl: dict[str, Any], sender: str,
                                        expected: bool) -> None:
    m = compile_condition({"kind": "sender_notification_permission", "key": "room"})
    assert m({"sender": sender, "type": "m.room.message"},
             EvalContext(member_count=3, power_levels=pl)) is expected


def _defaults(changes: dict[str, Any] | None = None) -> CompiledRules:
    return CompiledRules(rules.merge(ME, changes))


def _msg(body: str = "hi", **content: Any) -> dict[str, Any]:
    return {"type": "m.room.message", "sender": "@other:example.org", "room_id": "!r:x",
            "content": {"msgtype": "m.text", "body": body, **content}}


ADMIN_PL = {"users": {"@other:example.org": 100}}


@pytest.mark.parametrize(("event", "ctx", "rule_id", "notify", "highlight"), [
    (_msg(), EvalContext(member_count=2), ".m.rule.room_one_to_one", True, False),
    (_msg(), EvalContext(member_count=5), ".m.rule.message", True, False),
    (_msg(msgtype="m.notice"), EvalContext(member_count=2), ".m.rule.suppress_notices",
     False, False),
    ({"type": "m.room.encrypted", "content": {}, "sender": "@o:x"}, EvalContext(member_count=2),
     ".m.rule.encrypted_room_one_to_one", True, False),
    ({"type": "m.room.encrypted", "content": {}, "sender": "@o:x"}, EvalContext(member_count=3),
     ".m.rule.encrypted", True, False),
    ({"type": "m.room.member", "state_key": ME, "content": {"membership": "invite"},
      "sender": "@o:x"}, EvalContext(member_count=5), ".m.rule.invite_for_me", True, False),
    ({"type": "m.room.member", "state_key": "@x:x", "content": {"membership": "join"},
      "sender": "@x:x"}, EvalContext(member_count=5), ".m.rule.member_event", False, False),
    (_msg("hey", **{"m.mentions": {"user_ids": [ME]}}), EvalContext(member_count=5),
     ".m.rule.is_user_mention", True, True),
    (_msg("hey", **{"m.mentions": {"user_ids": ["@else:x"]}}), EvalContext(member_count=5),
     ".m.rule.message", True, False),
    (_msg("@room", **{"m.mentions": {"room": True}}),
     EvalContext(member_count=5, power_levels=ADMIN_PL), ".m.rule.is_room_mention", True, True),
    (_msg("@room", **{"m.mentions": {"room": True}}), EvalContext(member_count=5),
     ".m.rule.message", True, False),
    # The legacy body rules (spec v1.7-v1.16), only for events without m.mentions:
    (_msg("ask ME@example.org"), EvalContext(member_count=5), ".m.rule.contains_user_name",
     True, True),
    (_msg("for me, please"), EvalContext(member_count=5), ".m.rule.contains_user_name",
     True, True),
    (_msg("theme park"), EvalContext(member_count=5), ".m.rule.message", True, False),
    (_msg("me", **{"m.mentions": {}}), EvalContext(member_count=5), ".m.rule.message",
     True, False),
    (_msg("hello Mister Me2"), EvalContext(member_count=5, display_name="mister me2"),
     ".m.rule.contains_display_name", True, True),
    (_msg("ça va, ZOË ?"), EvalContext(member_count=5, display_name="Zoë"),
     ".m.rule.contains_display_name", True, True),
    (_msg("zoëlle"), EvalContext(member_count=5, display_name="Zoë"), ".m.rule.message",
     True, False),
    (_msg("hello Mister Me2", **{"m.mentions": {}}),
     EvalContext(member_count=5, display_name="mister me2"), ".m.rule.message", True, False),
    (_msg("@room look"), EvalContext(member_count=5, power_levels=ADMIN_PL),
     ".m.rule.roomnotif", True, True),
    (_msg("@room look"), EvalContext(member_count=5), ".m.rule.message", True, False),
    (_msg("@room look", **{"m.mentions": {"room": False}}),
     EvalContext(member_count=5, power_levels=ADMIN_PL), ".m.rule.message", True, False),
    ({"type": "m.room.tombstone", "state_key": "", "content": {}, "sender": "@o:x"},
     EvalContext(member_count=5), ".m.rule.tombstone", True, True),
    ({"type": "m.reaction", "content": {}, "sender": "@o:x"}, EvalContext(member_count=2),
     ".m.rule.reaction", False, False),
    ({"type": "m.room.server_acl", "state_key": "", "content": {}, "sender": "@o:x"},
     EvalContext(member_count=2), ".m.rule.room.server_acl", False, False),
    (_msg("* fix", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}}),
     EvalContext(member_count=2), ".m.rule.suppress_edits", False, False),
    ({"type": "m.call.invite", "content": {}, "sender": "@o:x"}, EvalContext(member_count=5),
     ".m.rule.call", True, False),
])
def test_default_rules(event: dict[str, Any], ctx: EvalContext, rule_id: str, notify: bool,
                       highlight: bool) -> None:
    out = _defaults().evaluate(event, ctx)
    assert out is not None
    assert (out.rule_id, out.notify, out.highlight) == (rule_id, notify, highlight)


def test_no_rule_matches_no_notification() -> None:
    assert _defaults().evaluate({"type": "m.room.topic", "state_key": "", "content": {},
                                 "sender": "@o:x"}, EvalContext(member_count=5)) is None


def test_default_order_matches_spec() -> None:
    got = rules.merge(ME, None)["global"]
    assert [r["rule_id"] for r in got["override"]] == [
        ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
        ".m.rule.member_event", ".m.rule.is_user_mention",
        ".m.rule.contains_display_name", ".m.rule.is_room_mention", ".m.rule.roomnotif",
        ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
        ".m.rule.suppress_edits"]
    assert [r["rule_id"] for r in got["underride"]] == [
        ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
        ".m.rule.message", ".m.rule.encrypted"]


def _change(changes: dict[str, Any], fn: Any) -> dict[str, Any]:
    result: dict[str, Any] = fn(changes)
    return result


def test_user_rules_master_and_kinds() -> None:
    ctx = EvalContext(member_count=5)
    ch = rules.empty_changes()
    # master enabled: nothing notifies, mentions included
    master = rules.set_enabled(ch, "override", ".m.rule.master", True)
    out = _defaults(master).evaluate(_msg("x", **{"m.mentions": {"user_ids": [ME]}}), ctx)
    assert out is not None and out.rule_id == ".m.rule.master" and not out.notify
    # a content rule beats the underride .m.rule.message
    content = rules.put_user_rule(ch, "content", rules.build_user_rule(
        "content", "tea", {"pattern": "tea", "actions": ["notify", {"set_tweak": "highlight"}]}))
    out = _defaults(content).evaluate(_msg("time for Tea!"), ctx)
    assert out is not None and out.rule_id == "tea" and out.highlight
    # a room rule muting the room
    room = rules.put_user_rule(ch, "room", rules.build_user_rule("room", "!r:x",
                                                                {"actions": []}))
    out = _defaults(room).evaluate(_msg(), ctx)
    assert out is not None and out.rule_id == "!r:x" and not out.notify
    # a sender rule with a sound tweak; dont_notify is stripped
    sender = rules.put_user_rule(ch, "sender", rules.build_user_rule(
        "sender", "@other:example.org",
        {"actions": ["notify", {"set_tweak": "sound", "value": "bell"}]}))
    out = _defaults(sender).evaluate(_msg(), ctx)
    assert out is not None and out.tweaks() == {"sound": "bell"}
    # a disabled default rule is skipped: .m.rule.message off, nothing else matches
    off = rules.set_enabled(ch, "underride", ".m.rule.message", False)
    assert _defaults(off).evaluate(_msg(), ctx) is None
    # changed actions of a default rule
    acts = rules.set_actions(ch, "underride", ".m.rule.message",
                             ["notify", {"set_tweak": "highlight", "value": False}])
    out = _defaults(acts).evaluate(_msg(), ctx)
    assert out is not None and out.notify and not out.highlight
    # an override with an unknown condition never matches
    unk = rules.put_user_rule(ch, "override", rules.build_user_rule(
        "override", "future", {"conditions": [{"kind": "org.future"}], "actions": []}))
    out = _defaults(unk).evaluate(_msg(), ctx)
    assert out is not None and out.rule_id == ".m.rule.message"


# ------------------------------------------------------------------ one ruleset, many users

ALICE, BOB, CAROL = "@alice:example.org", "@bob:example.org", "@carol:example.org"
NAMES = {ALICE: "Alice", BOB: None, CAROL: "caz"}
_TEA = {"pattern": "tea", "actions": ["notify", {"set_tweak": "highlight"}]}
_NAME_RULE = {"conditions": [{"kind": "contains_display_name"}],
              "actions": ["notify", {"set_tweak": "sound", "value": "name"}]}
_MINE = {"conditions": [{"kind": "event_match", "key": "content.body", "pattern": BOB}],
         "actions": ["notify"]}
CHANGES: list[dict[str, Any] | None] = [
    None,
    rules.set_enabled(rules.empty_changes(), "override", ".m.rule.master", True),
    rules.put_user_rule(rules.empty_changes(), "content",
                        rules.build_user_rule("content", "tea", _TEA)),
    rules.put_user_rule(rules.empty_changes(), "override",
                        rules.build_user_rule("override", "name", _NAME_RULE)),
    rules.put_user_rule(rules.empty_changes(), "override",
                        rules.build_user_rule("override", "mine", _MINE)),
    rules.set_enabled(rules.empty_changes(), "override", ".m.rule.is_user_mention", False),
]
EVENTS: list[dict[str, Any]] = [
    _msg(),
    _msg("time for tea, Alice?"),
    _msg("caz: are you there", msgtype="m.notice"),
    _msg("hey", **{"m.mentions": {"user_ids": [BOB, "@x:y"]}}),
    _msg("@room", **{"m.mentions": {"room": True}}),
    _msg(f"{BOB} said so"),
    {"type": "m.room.member", "state_key": CAROL, "sender": "@other:example.org",
     "content": {"membership": "invite"}},
    {"type": "m.room.member", "state_key": BOB, "sender": BOB,
     "content": {"membership": "join"}},
    {"type": "m.room.encrypted", "content": {}, "sender": "@other:example.org"},
    {"type": "m.reaction", "content": {}, "sender": "@other:example.org"},
]


@pytest.mark.parametrize("changes", CHANGES)
@pytest.mark.parametrize("member_count", [2, 7])
def test_shared_ruleset_for_many_users_equals_each_users_own(
        changes: dict[str, Any] | None, member_count: int) -> None:
    """`evaluate_many` over a ruleset compiled with the USER placeholder gives each user what
    their own ruleset (compiled with their id) gives, for every event."""
    shared = CompiledRules(rules.merge(USER, changes))
    users = [ALICE, BOB, CAROL]
    for pl in ({}, ADMIN_PL):
        room = EvalContext(member_count=member_count, power_levels=pl)
        for ev in EVENTS:
            got = shared.evaluate_many(ev, room, users, NAMES.get)
            for user, outcome in zip(users, got, strict=True):
                own = CompiledRules(rules.merge(user, changes)).evaluate(
                    ev, EvalContext(member_count, NAMES[user], pl))
                assert (outcome and outcome.rule_id) == (own and own.rule_id), (user, ev)
                assert (outcome and outcome.actions) == (own and own.actions)


def test_placeholder_is_not_any_users_string() -> None:
    """A rule a user writes with the placeholder's text still matches only that text."""
    assert str(USER) == USER and USER is not str(USER)
    cond = {"kind": "event_property_is", "key": "sender", "value": str(USER)}
    m = compile_condition(cond)
    ctx = EvalContext(member_count=2, user_id=ALICE)
    assert m({"sender": ALICE}, ctx) is False
    assert m({"sender": str(USER)}, ctx) is True
