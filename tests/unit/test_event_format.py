"""The version-dependent PDU format: reference lists in both shapes, Canonical JSON (v6+) and
the structure checks for received PDUs."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.format import (
    BadEventFormat,
    NotCanonicalJson,
    auth_event_ids,
    check_canonical_json,
    check_event_format,
    check_event_values,
    event_references,
    prev_event_ids,
)
from homeserver.events.room_versions import ROOM_VERSIONS, RoomVersion

ALL = list(ROOM_VERSIONS.values())
V1, V3 = ROOM_VERSIONS["1"], ROOM_VERSIONS["3"]

# From the spec's examples/pdu_v1.json and pdu_v3.json.
PDU_V1_REFS = [["$af232176:example.org", {"sha256": "abase64encodedsha256hashshouldbe43byteslong"}]]
PDU_V3_REFS = ["$abc123", "$def456"]


@pytest.mark.parametrize(
    ("pdu", "prev", "auth"),
    [
        ({"prev_events": PDU_V1_REFS, "auth_events": PDU_V1_REFS},
         ["$af232176:example.org"], ["$af232176:example.org"]),
        ({"prev_events": PDU_V3_REFS, "auth_events": ["$x"]}, PDU_V3_REFS, ["$x"]),
        ({}, [], []),
        ({"prev_events": None, "auth_events": "junk"}, [], []),
        # entries that are neither form are skipped, the rest kept in order
        ({"prev_events": ["$a", 5, ["$b", {}], ["$c"], [1, {}], "$d"]}, ["$a", "$b", "$d"], []),
    ],
)
def test_reference_ids_in_both_formats(pdu: dict[str, Any], prev: list[str],
                                       auth: list[str]) -> None:
    assert prev_event_ids(pdu) == prev
    assert auth_event_ids(pdu) == auth


def test_event_references_per_version() -> None:
    hashes = {"$a:x": "aGFzaA", "$b:x": "b3RoZXI"}
    assert event_references(V1, ["$a:x", "$b:x"], hashes) == [
        ["$a:x", {"sha256": "aGFzaA"}], ["$b:x", {"sha256": "b3RoZXI"}]]
    assert event_references(V3, ["$a", ["$b", {"sha256": "h"}]]) == ["$a", "$b"]
    assert event_references(V1, [["$c:x", {"sha256": "h"}]]) == [["$c:x", {"sha256": "h"}]]
    with pytest.raises(ValueError):
        event_references(V1, ["$missing:x"], hashes)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ({"a": [1, -1, 0, None, True, "s", {"b": 2**53 - 1}]}, True),
        (-(2**53) + 1, True),
        (2**53, False),
        (-(2**53), False),
        ({"deep": [{"x": 1.0}]}, False),
        (1.5, False),
        (float("inf"), False),
        (float("nan"), False),
        ([{"n": 10**20}], False),
    ],
)
def test_check_canonical_json(value: Any, ok: bool) -> None:
    if ok:
        check_canonical_json(value)
    else:
        with pytest.raises(NotCanonicalJson):
            check_canonical_json(value)


@pytest.mark.parametrize("rv", ALL, ids=lambda rv: f"v{rv.identifier}")
def test_floats_and_big_integers_rejected_from_v6(rv: RoomVersion) -> None:
    for content in ({"n": 1.5}, {"n": 2**53}, {"n": -(2**60)}):
        pdu = {"type": "m.room.message", "content": content}
        if int(rv.identifier) >= 6:
            with pytest.raises(NotCanonicalJson):
                check_event_values(rv, pdu)
        else:
            check_event_values(rv, pdu)
    check_event_values(rv, {"content": {"n": 2**53 - 1}})


def _pdu(rv: RoomVersion, **extra: Any) -> dict[str, Any]:
    pdu: dict[str, Any] = {
        "type": "m.room.message",
        "content": {},
        "prev_events": PDU_V1_REFS if not rv.reference_hash_event_ids else PDU_V3_REFS,
        "auth_events": [],
    }
    if not rv.reference_hash_event_ids:
        pdu["event_id"] = "$a4ecee13e2accdadf56c1025:example.com"
    pdu.update(extra)
    return pdu


@pytest.mark.parametrize("rv", ALL, ids=lambda rv: f"v{rv.identifier}")
def test_check_event_format(rv: RoomVersion) -> None:
    check_event_format(rv, _pdu(rv))
    old = not rv.reference_hash_event_ids
    bad: list[dict[str, Any]] = [
        _pdu(rv, prev_events="$a"),
        _pdu(rv, auth_events=None),
        # the other version group's reference shape
        _pdu(rv, prev_events=PDU_V3_REFS if old else PDU_V1_REFS),
    ]
    if old:
        bad += [
            {k: v for k, v in _pdu(rv).items() if k != "event_id"},
            _pdu(rv, event_id="$no-domain"),
            _pdu(rv, prev_events=[["$a:x", "h"]]),
            _pdu(rv, prev_events=[["$a:x", {"sha256": 1}]]),
            _pdu(rv, prev_events=[["$a:x", {"sha256": "h"}, "extra"]]),
        ]
    if old:  # an empty hashes object is allowed (the hashes are never used)
        check_event_format(rv, _pdu(rv, prev_events=[["$a:x", {}]]))
    if rv.strict_canonical_json:
        bad.append(_pdu(rv, content={"n": 0.5}))
    else:
        check_event_format(rv, _pdu(rv, content={"n": 0.5}))
    for pdu in bad:
        with pytest.raises(BadEventFormat):
            check_event_format(rv, pdu)
