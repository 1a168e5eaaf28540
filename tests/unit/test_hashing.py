from __future__ import annotations

import base64
import copy
import hashlib
import re
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
    STABLE_ROOM_VERSIONS,
    RoomVersion,
)
from homeserver.signing import ServerSigningKey, verify_signed_json

V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12 = (
    ROOM_VERSIONS[str(n)] for n in range(1, 13)
)
ALL = list(ROOM_VERSIONS.values())
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"


def spec_key() -> ServerSigningKey:
    return ServerSigningKey.from_seed("domain", "ed25519:1", SPEC_SEED)


# Which versions have each behaviour, written out from the spec's rooms/v1.md ... v12.md (the
# version that introduced or dropped it in the comment), independently of the table's code.
VERSION_FLAGS: dict[str, set[int]] = {
    "reference_hash_event_ids": set(range(3, 13)),  # v3 event IDs are hashes
    "url_safe_event_ids": set(range(4, 13)),  # v4 URL-safe base64
    "enforce_key_validity": set(range(5, 13)),  # v5
    "special_case_aliases_auth": set(range(1, 6)),  # removed in v6
    "redaction_keeps_aliases": set(range(1, 6)),  # removed in v6
    "redaction_auth_rule": {1, 2},  # moved to "Handling redactions" in v3
    "notifications_power_levels": set(range(6, 13)),  # v6
    "strict_canonical_json": set(range(6, 13)),  # v6
    "float_power_levels": set(range(1, 6)),  # v1-v5 "floaty power levels"
    "knock_join_rule": set(range(7, 13)),  # v7
    "restricted_join_rule": set(range(8, 13)),  # v8
    "redaction_keeps_join_authorised": set(range(9, 13)),  # v9
    "knock_restricted_join_rule": set(range(10, 13)),  # v10
    "integer_power_levels": set(range(10, 13)),  # v10
    "updated_redaction_rules": {11, 12},
    "implicit_room_creator": {11, 12},
    "redacts_in_content": {11, 12},
    "room_id_is_create_event_hash": {12},
    "creators_have_infinite_power": {12},
    "create_event_in_auth_events": set(range(1, 12)),
    "state_res_v1": {1},
    "state_res_v2_1": {12},
}


@pytest.mark.parametrize(("flag", "versions"), VERSION_FLAGS.items(), ids=list(VERSION_FLAGS))
def test_room_version_flags(flag: str, versions: set[int]) -> None:
    assert {int(v) for v, rv in ROOM_VERSIONS.items() if getattr(rv, flag)} == versions


def test_room_version_table() -> None:
    assert list(ROOM_VERSIONS) == [str(n) for n in range(1, 13)]
    assert all(rv.identifier == v for v, rv in ROOM_VERSIONS.items())
    assert DEFAULT_ROOM_VERSION == "12"
    assert STABLE_ROOM_VERSIONS == set(ROOM_VERSIONS)
    assert [ROOM_VERSIONS[v].max_depth for v in ("5", "6")] == [2**63 - 1, 2**53 - 1]
    assert (V10.updated_redaction_rules, V11.updated_redaction_rules) == (False, True)
    assert (V10.implicit_room_creator, V11.implicit_room_creator) == (False, True)
    assert [rv.room_id_is_create_event_hash for rv in (V10, V11, V12)] == [False, False, True]
    assert [rv.create_event_in_auth_events for rv in (V10, V11, V12)] == [True, True, False]
    assert [rv.creators_have_infinite_power for rv in (V10, V11, V12)] == [False, False, True]


# Appendices, "Event Signing". These events carry ``origin``, which only the pre-v11
# redaction rules keep, so the spec's signatures hold for v1-v10 (the redactable one has a
# v1-style event_id, kept by those rules too; the minimal one has none, which v1/v2 need).
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


SPEC_VECTORS = [
    (
        "minimal",
        SPEC_MINIMAL_EVENT,
        "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos",
        "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg",
    ),
    (
        "redactable",
        SPEC_REDACTABLE_EVENT,
        "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g",
        "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA",
    ),
]


@pytest.mark.parametrize(
    ("rv", "event", "content_hash", "signature"),
    [
        pytest.param(rv, event, content_hash, signature, id=f"{name}-v{rv.identifier}")
        for name, event, content_hash, signature in SPEC_VECTORS
        for rv in ALL[:10]
        if "event_id" in event or rv.reference_hash_event_ids
    ],
)
def test_spec_event_signing_vectors(
    rv: RoomVersion, event: dict[str, Any], content_hash: str, signature: str
) -> None:
    original = copy.deepcopy(event)
    assert compute_content_hash(event) == content_hash
    event_id, signed = finalize_event(event, rv, spec_key())
    if not rv.reference_hash_event_ids:
        assert event_id == "$0:domain"
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


# v3 and v4 differ only in the base64 alphabet; at depth 6 this event's hash has both a "/"
# and a "+" in standard base64, so the two IDs must differ.
V3_MESSAGE = {**MESSAGE, "depth": 6}
V3_CANONICAL = (
    '{"auth_events":["$a"],"content":{},"depth":6,"hashes":{"sha256":"abc"},'
    '"origin":"x.test","origin_server_ts":1,"prev_events":["$p"],'
    '"room_id":"!r:x.test","sender":"@u:x.test","type":"m.room.message"}'
)


def test_v3_event_id_standard_base64_v4_url_safe() -> None:
    digest = hashlib.sha256(V3_CANONICAL.encode()).digest()
    standard = "$" + base64.b64encode(digest).decode().rstrip("=")
    url_safe = "$" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert "/" in standard and "+" in standard
    assert compute_event_id(V3_MESSAGE, V3) == standard
    for rv in (V4, V5, V6, V7, V8, V9, V10):
        assert compute_event_id(V3_MESSAGE, rv) == url_safe


@pytest.mark.parametrize("rv", [V1, V2], ids=["v1", "v2"])
def test_v1_v2_event_id_is_carried_not_computed(rv: RoomVersion) -> None:
    event = {**MESSAGE, "event_id": "$abc:x.test"}
    assert compute_event_id(event, rv) == "$abc:x.test"
    # it is covered by the reference hash (redaction keeps it)
    assert compute_reference_hash(event, rv) != compute_reference_hash(
        {**event, "event_id": "$abd:x.test"}, rv
    )
    with pytest.raises(ValueError):
        compute_event_id(MESSAGE, rv)


@pytest.mark.parametrize("rv", ALL[2:], ids=lambda rv: f"v{rv.identifier}")
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
    # rooms/v1.md ... v9.md: aliases kept v1-v5; join_rules "allow" from v8; member
    # join_authorised_via_users_server from v9; v1-v10 top-level keys.
    *[
        (
            f"aliases-v{rv.identifier}",
            rv,
            _ev("m.room.aliases", {"aliases": ["#a:x"], "x": 1}, state_key="x"),
            {"aliases": ["#a:x"]} if int(rv.identifier) <= 5 else {},
            _TOP | {"content", "state_key"},
        )
        for rv in ALL
    ],
    *[
        (
            f"join-rules-v{rv.identifier}",
            rv,
            _ev("m.room.join_rules", {"join_rule": "restricted", "allow": [{"a": 1}], "x": 2}),
            {"join_rule": "restricted", "allow": [{"a": 1}]}
            if int(rv.identifier) >= 8
            else {"join_rule": "restricted"},
            _TOP | {"content"},
        )
        for rv in ALL
    ],
    *[
        (
            f"member-v{rv.identifier}",
            rv,
            _ev(
                "m.room.member",
                {"membership": "join", "join_authorised_via_users_server": "@a:x", "n": "N"},
            ),
            {"membership": "join", "join_authorised_via_users_server": "@a:x"}
            if int(rv.identifier) >= 9
            else {"membership": "join"},
            _TOP | {"content"},
        )
        for rv in ALL
    ],
    *[
        (
            f"top-level-v{rv.identifier}",
            rv,
            _ev(
                "X",
                {},
                event_id="$e:x",
                origin="o",
                membership="join",
                prev_state=[],
                prev_events=[["$p:x", {"sha256": "h"}]],
                redacts="$r:x",
                age_ts=1,
            ),
            {},
            _TOP | {"content", "event_id", "origin", "membership", "prev_state", "prev_events"},
        )
        for rv in ALL[:10]
    ],
    (
        "create-v1",
        V1,
        _ev("m.room.create", {"creator": "@u:x.test", "room_version": "1", "m.federate": False}),
        {"creator": "@u:x.test"},
        _TOP | {"content"},
    ),
    (
        "power-levels-v1",
        V1,
        _ev("m.room.power_levels", {"ban": "50", "invite": 3, "notifications": {}, "kick": 1.5}),
        {"ban": "50", "kick": 1.5},
        _TOP | {"content"},
    ),
    (
        "redaction-v1-drops-content",
        V1,
        _ev("m.room.redaction", {"redacts": "$x:y", "reason": "r"}, redacts="$x:y"),
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


PREV_HASH = "cHJldmhhc2g"
AUTH_HASH = "YXV0aGhhc2g"


def _v1_event() -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "room_id": "!r:domain",
        "sender": "@u:domain",
        "content": {"body": "hi"},
        "origin_server_ts": 5,
        "depth": 3,
        "prev_events": ["$prev:domain"],
        "auth_events": ["$auth:domain", ["$pair:domain", {"sha256": "cGFpcg"}]],
    }


@pytest.mark.parametrize("rv", [V1, V2], ids=["v1", "v2"])
def test_finalize_v1_v2_event(rv: RoomVersion) -> None:
    key = spec_key()
    event = _v1_event()
    before = copy.deepcopy(event)
    event_id, signed = finalize_event(
        event, rv, key, event_hashes={"$prev:domain": PREV_HASH, "$auth:domain": AUTH_HASH}
    )
    assert event == before
    # "$opaque_id:domain" with our server name, carried in the PDU
    assert re.fullmatch(r"\$[A-Za-z]{18}:domain", event_id)
    assert signed["event_id"] == event_id == compute_event_id(signed, rv)
    # references become [id, {"sha256": content hash}] pairs; given pairs are kept
    assert signed["prev_events"] == [["$prev:domain", {"sha256": PREV_HASH}]]
    assert signed["auth_events"] == [
        ["$auth:domain", {"sha256": AUTH_HASH}],
        ["$pair:domain", {"sha256": "cGFpcg"}],
    ]
    # the content hash and signature cover the event_id and the references
    assert signed["hashes"]["sha256"] == compute_content_hash(signed)
    verify_signed_json(prune_event(signed, rv), "domain", "ed25519:1", key.verify_key_base64)
    # a second event gets another ID; an event that has one keeps it
    assert finalize_event(event, rv, key, event_hashes={"$prev:domain": "a", "$auth:domain": "b"}
                          )[0] != event_id
    kept, _ = finalize_event({**event, "event_id": "$mine:domain"}, rv, key,
                             event_hashes={"$prev:domain": "a", "$auth:domain": "b"})
    assert kept == "$mine:domain"
    other, _ = finalize_event(event, rv, key, server_name="other.test",
                              event_hashes={"$prev:domain": "a", "$auth:domain": "b"})
    assert other.endswith(":other.test")


@pytest.mark.parametrize("rv", [V1, V2], ids=["v1", "v2"])
def test_finalize_v1_v2_needs_every_hash(rv: RoomVersion) -> None:
    with pytest.raises(ValueError, match=r"\$auth:domain"):
        finalize_event(_v1_event(), rv, spec_key(), event_hashes={"$prev:domain": PREV_HASH})
    with pytest.raises(ValueError):
        finalize_event(_v1_event(), rv, spec_key())


@pytest.mark.parametrize("rv", ALL[2:], ids=lambda rv: f"v{rv.identifier}")
def test_finalize_v3_plus_has_id_lists_and_no_event_id(rv: RoomVersion) -> None:
    event = _v1_event()
    if rv.room_id_is_create_event_hash:
        event["room_id"] = "!" + "A" * 43
    event_id, signed = finalize_event(event, rv, spec_key(), event_hashes={"$x": "unused"})
    assert "event_id" not in signed
    assert signed["prev_events"] == ["$prev:domain"]
    assert signed["auth_events"] == ["$auth:domain", "$pair:domain"]
    assert event_id == compute_event_id(signed, rv)
    assert re.fullmatch(r"\$[A-Za-z0-9_-]{43}" if rv.url_safe_event_ids
                        else r"\$[A-Za-z0-9+/]{43}", event_id)


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
    rv=st.sampled_from(ALL),
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
    if not rv.reference_hash_event_ids:
        event["event_id"] = "$e:x.test"
    pruned = prune_event(event, rv)
    assert prune_event(pruned, rv) == pruned
    assert compute_event_id(pruned, rv) == compute_event_id(event, rv)
    assert "unsigned" not in pruned
