"""Pure input checks: JSON depth and storable text (homeserver/json_input.py), canonical JSON
numbers and canonical_alias syntax (homeserver/events/validation.py), identifier grammar
(homeserver/types.py)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.errors import MatrixError
from homeserver.events.validation import (
    MAX_SAFE_INT,
    canonical_alias_aliases,
    canonical_json_problem,
    check_local_event,
)
from homeserver.json_input import MAX_JSON_DEPTH, json_problem, text_problem
from homeserver.types import (
    is_valid_event_id,
    is_valid_room_alias,
    is_valid_room_id,
    is_valid_user_id,
)


def nested(levels: int) -> Any:
    v: Any = 0
    for i in range(levels):
        v = {"k": v} if i % 2 else [v]
    return v


@pytest.mark.parametrize(("value", "ok"), [
    ({}, True), ([], True), ("x", True), (nested(MAX_JSON_DEPTH), True),
    (nested(MAX_JSON_DEPTH + 1), False), (nested(100_000), False),
    ({"a": "b\x00"}, False), ({"a\x00": 1}, False), (["\ud800"], False),
    ({"a": ["x", {"b": "ok"}]}, True),
])
def test_json_problem(value: Any, ok: bool) -> None:
    assert (json_problem(value) is None) is ok


def test_text_problem() -> None:
    assert text_problem("plain ☃") is None
    assert text_problem("a\x00") is not None
    assert text_problem("\udcff") is not None


@pytest.mark.parametrize(("value", "ok"), [
    (MAX_SAFE_INT, True), (-MAX_SAFE_INT, True), (MAX_SAFE_INT + 1, False),
    (-MAX_SAFE_INT - 1, False), (1.0, False), (0.5, False), (True, True), (None, True),
    ({"a": [1, {"b": 2**64}]}, False), ({"a": [1, {"b": "2.5"}]}, True),
])
def test_canonical_json_problem(value: Any, ok: bool) -> None:
    assert (canonical_json_problem(value) is None) is ok


def test_check_local_event() -> None:
    check_local_event("m.room.message", None, {"body": "x", "n": 3})
    for etype, key, content in [("m.x\x00", None, {}), ("m.x", "k\x00", {}),
                                ("m.x", None, {"n": 1.5}), ("m.x", None, nested(200)),
                                ("m.x", None, [])]:
        with pytest.raises(MatrixError) as e:
            check_local_event(etype, key, content)
        assert (e.value.status, e.value.errcode) == (400, "M_BAD_JSON")


def test_canonical_alias_aliases() -> None:
    assert canonical_alias_aliases({}) == []
    assert canonical_alias_aliases({"alias": "#a:b.c", "alt_aliases": ["#d:e"]}) == [
        "#a:b.c", "#d:e"]
    for content, errcode in [({"alias": 1}, "M_INVALID_PARAM"), ({"alias": "a:b"},
                             "M_INVALID_PARAM"), ({"alt_aliases": ["#a"]}, "M_INVALID_PARAM"),
                             ({"alt_aliases": "#a:b"}, "M_BAD_JSON"),
                             ({"alias": "#a\x00:b"}, "M_INVALID_PARAM")]:
        with pytest.raises(MatrixError) as e:
            canonical_alias_aliases(content)
        assert e.value.errcode == errcode, content


@pytest.mark.parametrize(("check", "value", "ok"), [
    (is_valid_user_id, "@alice:example.org", True),
    (is_valid_user_id, "@Alice Ünicode:example.org:8448", True),  # historical localparts
    (is_valid_user_id, "@a\x00:example.org", False),
    (is_valid_user_id, "@:example.org", False),
    (is_valid_user_id, "@a:bad server", False),
    (is_valid_user_id, "@a:" + "x" * 300, False),
    (is_valid_room_id, "!abc:example.org", True),
    (is_valid_room_id, "!" + "A" * 43, True),  # v12: the create event's hash
    (is_valid_room_id, "!abc\x00", False),
    (is_valid_room_id, "!abc:bad server", False),
    (is_valid_room_id, "abc:example.org", False),
    (is_valid_room_id, "!", False),
    (is_valid_room_alias, "#room:example.org", True),
    (is_valid_room_alias, "#r\x00:example.org", False),
    (is_valid_room_alias, "#nocolon", False),
    (is_valid_room_alias, "#" + "r" * 300 + ":example.org", False),
    (is_valid_event_id, "$abc", True),
    (is_valid_event_id, "$abc:example.org", True),
    (is_valid_event_id, "$", False),
    (is_valid_event_id, "abc", False),
    (is_valid_event_id, "$a\x00", False),
    (is_valid_event_id, "$\ud800", False),
])
def test_identifier_grammar(check: Any, value: str, ok: bool) -> None:
    assert check(value) is ok


@pytest.mark.parametrize("token", ["s" + "9" * 30, "s١", "s1 ", "s+1", "s1__2", "t1_" + "9" * 40,
                                   "t" + "0" * 5000 + "_1", "x1"])
def test_tokens_refuse_positions_sql_cannot_hold(token: str) -> None:
    from homeserver.streams.tokens import PaginationToken

    with pytest.raises(MatrixError) as e:
        PaginationToken.parse(token)
    assert e.value.errcode == "M_INVALID_PARAM"
