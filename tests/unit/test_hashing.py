from __future__ import annotations

import base64
import copy
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeserver.events.hashing import (
    MAX_EVENT_BYTES,
    EventTooLarge,
    check_event_size,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    finalize_event,
    prune_event,
    room_id_for_create_event,
)
from homeserver.events.room_versions import (
    DEFAULT_ROOM_VERSION,
    ROOM_VERSIONS,
    RoomVersion,
)
from homeserver.signing import ServerSigningKey, verify_signed_json

V10, V11, V12 = ROOM_VERSIONS["10"], ROOM_VERSIONS["11"], ROOM_VERSIONS["12"]
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"


def spec_key() -> ServerSigningKey:
    return ServerSigningKey.from_seed("domain", "ed25519:1", SPEC_SEED)


def test_room_version_table() -> None:
    assert set(ROOM_VERSIONS) == {"10", "11", "12"}
    assert DEFAULT_ROOM_VERSION == "12"
    assert (V10.updated_redaction_rules, V11.updated_redaction_rules) == (False, True)
    assert (V10.implicit_room_creator, V11.implicit_room_creator) == (False, True)
    assert [rv.room_id_is_create_event_hash for rv in (V10, V11, V12)] == [False, False, True]
    assert [rv.create_event_in_auth_events for rv in (V10, V11, V12)] == [True, True, False]
    assert [rv.creators_have_infinite_power for rv in (V10, V11, V12)] == [False, False, True]


# Appendices, "Event Signing". These events carry ``origin``, which only the pre-v11
# redaction rules keep, so the spec's signatures hold for v10.
SPEC_MINIMAL_EVENT: dict[str, Any] = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
SPEC_REDACTABLE_EVENT: dict[str, Any] = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}


@pytest.mark.parametrize(
    ("event", "content_hash", "signature"),
    [
        (
            SPEC_MINIMAL_EVENT,
            "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos",
            "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg",
        ),
        (
            SPEC_REDACTABLE_EVENT,
            "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g",
            "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA",
        ),
    ],
)
def test_spec_event_signing_vectors(
    event: dict[str, Any], content_hash: str, signature: str
) -> None:
    original = copy.deepcopy(event)
    assert compute_content_hash(event) == content_hash
    _, signed = finalize_event(event, V10, spec_key())
    assert event == original  # input untouched
    assert signed["hashes"] == {"sha256": content_hash}
    assert signed["signatures"] == {"domain": {"ed25519:1": signature}}
    assert signed["unsigned"] == {"age_ts": 1000000}
    assert {k: v for k, v in signed.items() if k not in ("hashes", "signatures")} == {
        k: v for k, v in event.items() if k not in ("hashes", "signatures")
    }


def test_content_hash_ignores_unsigned_signatures_hashes() -> None:
    base = {"type": "m.room.message", "content": {"body": "x"}}
    noisy = {**base, "unsigned": {"a": 1}, "signatures": {"s": {}}, "hashes": {"sha256": "z"}}
    assert compute_content_hash(base) == compute_content_hash(noisy)
    assert compute_content_hash(base) != compute_content_hash({**base, "content": {"body": "y"}})


MESSAGE: dict[str, Any] = {
    "auth_events": ["$a"],
    "content": {"body": "hi"},
    "depth": 5,
    "hashes": {"sha256": "abc"},
    "origin": "x.test",
    "origin_server_ts": 1,
    "prev_events": ["$p"],
    "room_id": "!r:x.test",
    "sender": "@u:x.test",
    "signatures": {"x.test": {"ed25519:1": "sig"}},
    "type": "m.room.message",
    "unsigned": {"age": 1},
}


@pytest.mark.parametrize(
    ("rv", "canonical"),
    [
        (
            V10,
            '{"auth_events":["$a"],"content":{},"depth":5,"hashes":{"sha256":"abc"},'
            '"origin":"x.test","origin_server_ts":1,"prev_events":["$p"],'
            '"room_id":"!r:x.test","sender":"@u:x.test","type":"m.room.message"}',
        ),
        (
            V11,
            '{"auth_events":["$a"],"content":{},"depth":5,"hashes":{"sha256":"abc"},'
            '"origin_server_ts":1,"prev_events":["$p"],'
            '"room_id":"!r:x.test","sender":"@u:x.test","type":"m.room.message"}',
        ),
        (
            V12,
            '{"auth_events":["$a"],"content":{},"depth":5,"hashes":{"sha256":"abc"},'
            '"origin_server_ts":1,"prev_events":["$p"],'
            '"room_id":"!r:x.test","sender":"@u:x.test","type":"m.room.message"}',
        ),
    ],
)
def test_event_id_is_hash_of_hand_written_redacted_json(rv: RoomVersion, canonical: str) -> None:
    digest = hashlib.sha256(canonical.encode()).digest()
    expected = "$" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert compute_reference_hash(MESSAGE, rv) == digest
    assert compute_event_id(MESSAGE, rv) == expected
    assert len(expected) == 44 and "+" not in expected and "/" not in expected


@pytest.mark.parametrize("rv", [V10, V11, V12])
def test_event_id_stable_under_redaction_and_unsigned(rv: RoomVersion) -> None:
    event_id = compute_event_id(MESSAGE, rv)
    assert compute_event_id(prune_event(MESSAGE, rv), rv) == event_id
    assert compute_event_id({**MESSAGE, "unsigned": {"age": 99}}, rv) == event_id
    assert compute_event_id({**MESSAGE, "signatures": {}}, rv) == event_id
    assert compute_event_id({**MESSAGE, "depth": 6}, rv) != event_id
    assert compute_event_id({**MESSAGE, "hashes": {"sha256": "abd"}}, rv) != event_id


def _ev(event_type: str, content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": event_type,
        "room_id": "!r:x.test",
        "sender": "@u:x.test",
        "content": content,
        "origin_server_ts": 1,
        "unsigned": {"age": 5, "redacted_because": {}},
        **extra,
    }


_TOP = {"type", "room_id", "sender", "origin_server_ts"}

PRUNE_CASES: list[tuple[str, RoomVersion, dict[str, Any], dict[str, Any], set[str]]] = [
    # (name, rv, event, expected content, expected top-level keys)
    ("message-v10", V10, _ev("m.room.message", {"body": "x"}), {}, _TOP | {"content"}),
    (
        "top-level-v10",
        V10,
        _ev("X", {}, origin="o", membership="join", prev_state=[], age_ts=1, foo=1),
        {},
        _TOP | {"content", "origin", "membership", "prev_state"},
    ),
    (
        "top-level-v11",
        V11,
        _ev("X", {}, origin="o", membership="join", prev_state=[], age_ts=1, foo=1),
        {},
        _TOP | {"content"},
    ),
    (
        "keeps-essential-v12",
        V12,
        _ev(
            "X",
            {},
            event_id="$e",
            state_key="",
            hashes={"sha256": "h"},
            signatures={},
            depth=1,
            prev_events=[],
            auth_events=[],
        ),
        {},
        _TOP
        | {
            "content",
            "event_id",
            "state_key",
            "hashes",
            "signatures",
            "depth",
            "prev_events",
            "auth_events",
        },
    ),
    (
        "member-v10",
        V10,
        _ev(
            "m.room.member",
            {
                "membership": "join",
                "displayname": "U",
                "join_authorised_via_users_server": "@a:x",
                "third_party_invite": {"signed": {"mxid": "@u:x"}, "display_name": "d"},
            },
        ),
        {"membership": "join", "join_authorised_via_users_server": "@a:x"},
        _TOP | {"content"},
    ),
    (
        "member-v11-keeps-tpi-signed",
        V11,
        _ev(
            "m.room.member",
            {
                "membership": "invite",
                "avatar_url": "mxc://x/y",
                "third_party_invite": {"signed": {"mxid": "@u:x"}, "display_name": "d"},
            },
        ),
        {"membership": "invite", "third_party_invite": {"signed": {"mxid": "@u:x"}}},
        _TOP | {"content"},
    ),
    (
        "member-v11-tpi-without-signed",
        V11,
        _ev("m.room.member", {"membership": "invite", "third_party_invite": {"x": 1}}),
        {"membership": "invite"},
        _TOP | {"content"},
    ),
    (
        "create-v10",
        V10,
        _ev("m.room.create", {"creator": "@u:x.test", "room_version": "10", "m.federate": False}),
        {"creator": "@u:x.test"},
        _TOP | {"content"},
    ),
    (
        "create-v11-keeps-all",
        V11,
        _ev("m.room.create", {"room_version": "11", "m.federate": False, "predecessor": {}}),
        {"room_version": "11", "m.federate": False, "predecessor": {}},
        _TOP | {"content"},
    ),
    (
        "create-v12-keeps-all",
        V12,
        _ev("m.room.create", {"room_version": "12", "additional_creators": ["@b:y"]}),
        {"room_version": "12", "additional_creators": ["@b:y"]},
        _TOP | {"content"},
    ),
    (
        "join-rules",
        V11,
        _ev("m.room.join_rules", {"join_rule": "restricted", "allow": [{"a": 1}], "x": 2}),
        {"join_rule": "restricted", "allow": [{"a": 1}]},
        _TOP | {"content"},
    ),
    (
        "power-levels-v10-drops-invite",
        V10,
        _ev(
            "m.room.power_levels",
            {
                "ban": 1,
                "events": {},
                "events_default": 2,
                "invite": 3,
                "kick": 4,
                "notifications": {"room": 5},
                "redact": 6,
                "state_default": 7,
                "users": {},
                "users_default": 8,
            },
        ),
        {
            "ban": 1,
            "events": {},
            "events_default": 2,
            "kick": 4,
            "redact": 6,
            "state_default": 7,
            "users": {},
            "users_default": 8,
        },
        _TOP | {"content"},
    ),
    (
        "power-levels-v11-keeps-invite",
        V11,
        _ev("m.room.power_levels", {"invite": 3, "notifications": {"room": 5}}),
        {"invite": 3},
        _TOP | {"content"},
    ),
    (
        "history-visibility",
        V10,
        _ev("m.room.history_visibility", {"history_visibility": "shared", "x": 1}),
        {"history_visibility": "shared"},
        _TOP | {"content"},
    ),
    (
        "redaction-v10-drops-redacts",
        V10,
        _ev("m.room.redaction", {"redacts": "$x", "reason": "r"}, redacts="$x"),
        {},
        _TOP | {"content"},
    ),
    (
        "redaction-v11-keeps-content-redacts",
        V11,
        _ev("m.room.redaction", {"redacts": "$x", "reason": "r"}, redacts="$x"),
        {"redacts": "$x"},
        _TOP | {"content"},
    ),
    (
        "aliases-stripped",
        V11,
        _ev("m.room.aliases", {"aliases": ["#a:x"]}),
        {},
        _TOP | {"content"},
    ),
]


@pytest.mark.parametrize(
    ("rv", "event", "content", "keys"),
    [pytest.param(*case[1:], id=case[0]) for case in PRUNE_CASES],
)
def test_prune_event(
    rv: RoomVersion, event: dict[str, Any], content: dict[str, Any], keys: set[str]
) -> None:
    before = copy.deepcopy(event)
    pruned = prune_event(event, rv)
    assert pruned["content"] == content
    assert set(pruned) == keys
    assert event == before
    # a deep copy: changing the result never reaches the original
    pruned["content"]["new"] = 1
    assert event == before
    # pruning is idempotent
    assert prune_event(prune_event(event, rv), rv) == prune_event(event, rv)


def _create_v12() -> dict[str, Any]:
    return {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@alice:domain",
        "content": {"room_version": "12"},
        "origin_server_ts": 1700000000000,
        "depth": 1,
        "prev_events": [],
        "auth_events": [],
    }


def test_finalize_v12_create_and_room_id() -> None:
    key = spec_key()
    event_id, signed = finalize_event(_create_v12(), V12, key)
    assert "room_id" not in signed
    assert event_id == compute_event_id(signed, V12)
    assert event_id.startswith("$") and len(event_id) == 44
    room_id = room_id_for_create_event(event_id)
    assert room_id == "!" + event_id[1:]
    # the signature is over the pruned event, and verifies against it
    pruned = prune_event(signed, V12)
    verify_signed_json(pruned, "domain", "ed25519:1", key.verify_key_base64)
    assert signed["hashes"]["sha256"] == compute_content_hash(signed)


def test_finalize_signature_survives_redaction_but_hash_does_not() -> None:
    key = spec_key()
    msg = {**MESSAGE, "sender": "@u:domain"}
    del msg["hashes"], msg["signatures"]
    event_id, signed = finalize_event(msg, V11, key)
    redacted = prune_event(signed, V11)
    verify_signed_json(prune_event(redacted, V11), "domain", "ed25519:1", key.verify_key_base64)
    assert compute_event_id(redacted, V11) == event_id
    assert compute_content_hash(redacted) != signed["hashes"]["sha256"]


def test_finalize_replaces_stale_hashes_and_signatures() -> None:
    msg = {**MESSAGE, "sender": "@u:domain"}
    _, signed = finalize_event(msg, V11, spec_key())
    assert set(signed["signatures"]) == {"domain"}
    assert signed["hashes"]["sha256"] != "abc"


def test_room_id_for_create_event_rejects_non_event_id() -> None:
    assert room_id_for_create_event("$abc") == "!abc"
    with pytest.raises(ValueError):
        room_id_for_create_event("!abc")


def _sized(n_body: int) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "sender": "@u:x",
        "room_id": "!r:x",
        "content": {"b": "x" * n_body},
    }


_BASE_SIZE = len(b'{"content":{"b":""},"room_id":"!r:x","sender":"@u:x","type":"m.room.message"}')


@pytest.mark.parametrize(
    ("event", "too_large"),
    [
        pytest.param(_sized(0), False, id="small"),
        pytest.param(_sized(MAX_EVENT_BYTES - _BASE_SIZE), False, id="exactly-64k"),
        pytest.param(_sized(MAX_EVENT_BYTES - _BASE_SIZE + 1), True, id="64k-plus-1"),
        pytest.param({**_sized(0), "type": "t" * 255}, False, id="type-255"),
        pytest.param({**_sized(0), "type": "t" * 256}, True, id="type-256"),
        pytest.param({**_sized(0), "state_key": "é" * 128}, True, id="state-key-256-bytes"),
        pytest.param({**_sized(0), "state_key": "é" * 127}, False, id="state-key-254-bytes"),
        pytest.param({**_sized(0), "sender": "@" + "u" * 255}, True, id="sender-256"),
        pytest.param({**_sized(0), "room_id": "!" + "r" * 255}, True, id="room-id-256"),
    ],
)
def test_check_event_size(event: dict[str, Any], too_large: bool) -> None:
    if too_large:
        with pytest.raises(EventTooLarge):
            check_event_size(event)
    else:
        check_event_size(event)


def test_event_too_large_is_value_error() -> None:
    assert issubclass(EventTooLarge, ValueError)


_json_leaf = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=5)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    rv=st.sampled_from([V10, V11, V12]),
    event_type=st.sampled_from(
        ["m.room.member", "m.room.create", "m.room.power_levels", "m.room.redaction", "m.x"]
    ),
    content=st.dictionaries(st.text(max_size=8), _json, max_size=5),
    extra=st.dictionaries(st.text(max_size=8), _json, max_size=3),
)
def test_redaction_never_changes_event_id(
    rv: RoomVersion, event_type: str, content: dict[str, Any], extra: dict[str, Any]
) -> None:
    event = {**extra, **_ev(event_type, content)}
    pruned = prune_event(event, rv)
    assert prune_event(pruned, rv) == pruned
    assert compute_event_id(pruned, rv) == compute_event_id(event, rv)
    assert "unsigned" not in pruned
