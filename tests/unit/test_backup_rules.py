"""The key backup rules of e2ee/backup_rules.py, table by table: which stored key a new upload
replaces, which versions are ours, and what bodies are refused with which errcode."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from e2ee.backup_rules import (
    ALGORITHMS,
    CURVE25519_AES_SHA2,
    MAX_SESSION_DATA_BYTES,
    RoomKey,
    algorithm_of,
    parse_room_key,
    parse_uploads,
    parse_version,
    parse_version_info,
    should_replace,
)
from homeserver.errors import MatrixError

ALG = ALGORITHMS[CURVE25519_AES_SHA2]
PUBLIC_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")
DATA = {"ephemeral": "e", "ciphertext": "c", "mac": "m"}


def key(verified: bool, first: int, forwarded: int) -> RoomKey:
    return RoomKey(first, forwarded, verified, "{}")


# (stored: verified, first_message_index, forwarded_count), new, does new replace stored
REPLACE = [
    # verifiedness decides first, whatever the indexes say
    ((False, 5, 5), (True, 9, 9), True),
    ((True, 9, 9), (False, 0, 0), False),
    ((True, 0, 0), (False, 0, 0), False),
    ((False, 0, 0), (True, 0, 0), True),
    # same verifiedness: the lower first_message_index wins
    ((False, 5, 0), (False, 4, 9), True),
    ((False, 4, 0), (False, 5, 0), False),
    ((True, 5, 0), (True, 4, 9), True),
    ((True, 4, 9), (True, 5, 0), False),  # Synapse would replace (lower forwarded_count)
    # same verifiedness and index: the lower forwarded_count wins
    ((False, 3, 2), (False, 3, 1), True),
    ((False, 3, 1), (False, 3, 2), False),
    ((True, 3, 2), (True, 3, 0), True),
    # a complete tie keeps the stored key
    ((False, 3, 1), (False, 3, 1), False),
    ((True, 0, 0), (True, 0, 0), False),
]


@pytest.mark.parametrize(("stored", "new", "replaces"), REPLACE)
def test_should_replace(stored: tuple[bool, int, int], new: tuple[bool, int, int],
                        replaces: bool) -> None:
    assert should_replace(key(*stored), key(*new)) is replaces


@pytest.mark.parametrize(("stored", "new", "replaces"), REPLACE)
def test_should_replace_is_a_strict_order(stored: tuple[bool, int, int],
                                          new: tuple[bool, int, int], replaces: bool) -> None:
    # never both ways: the backup cannot flip between two uploads forever
    if replaces:
        assert not should_replace(key(*new), key(*stored))


@pytest.mark.parametrize(("raw", "number"), [
    ("1", 1), ("42", 42), ("999999999999999999", 999999999999999999),
    ("0", None), ("01", None), ("-1", None), ("+1", None), ("1.0", None), ("", None),
    (" 1", None), ("1e3", None), ("١", None), ("²", None), ("9" * 19, None), ("abc", None),
])
def test_parse_version(raw: str, number: int | None) -> None:
    assert parse_version(raw) == number


def _err(fn: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(MatrixError) as e:
        fn(*args)
    return e.value.status, e.value.errcode


@pytest.mark.parametrize(("body", "errcode"), [
    ({}, "M_BAD_JSON"),
    ({"auth_data": {"public_key": PUBLIC_KEY}}, "M_BAD_JSON"),
    ({"algorithm": 1, "auth_data": {"public_key": PUBLIC_KEY}}, "M_BAD_JSON"),
    ({"algorithm": CURVE25519_AES_SHA2}, "M_BAD_JSON"),
    ({"algorithm": CURVE25519_AES_SHA2, "auth_data": "x"}, "M_BAD_JSON"),
    ({"algorithm": CURVE25519_AES_SHA2, "auth_data": [PUBLIC_KEY]}, "M_BAD_JSON"),
    ({"algorithm": CURVE25519_AES_SHA2, "auth_data": {}}, "M_BAD_JSON"),
    ({"algorithm": CURVE25519_AES_SHA2, "auth_data": {"public_key": 5}}, "M_BAD_JSON"),
    ({"algorithm": CURVE25519_AES_SHA2, "auth_data": {"public_key": "abc"}},
     "M_INVALID_PARAM"),
    ({"algorithm": CURVE25519_AES_SHA2, "auth_data": {"public_key": PUBLIC_KEY + "="}},
     "M_INVALID_PARAM"),
    ({"algorithm": CURVE25519_AES_SHA2, "auth_data": {"public_key": "!" * 43}},
     "M_INVALID_PARAM"),
    ({"algorithm": CURVE25519_AES_SHA2,
      "auth_data": {"public_key": PUBLIC_KEY, "signatures": []}}, "M_BAD_JSON"),
    ({"algorithm": CURVE25519_AES_SHA2,
      "auth_data": {"public_key": PUBLIC_KEY, "signatures": {"@a:b": "sig"}}}, "M_BAD_JSON"),
    ({"algorithm": CURVE25519_AES_SHA2,
      "auth_data": {"public_key": PUBLIC_KEY, "signatures": {"@a:b": {"ed25519:D": 1}}}},
     "M_BAD_JSON"),
    ({"algorithm": "", "auth_data": {}}, "M_INVALID_PARAM"),
    ({"algorithm": "x" * 256, "auth_data": {}}, "M_INVALID_PARAM"),
    ({"algorithm": "m.other", "auth_data": "x" * 70_000}, "M_TOO_LARGE"),
    ({"algorithm": CURVE25519_AES_SHA2,
      "auth_data": {"public_key": PUBLIC_KEY, "x": "y" * 70_000}}, "M_TOO_LARGE"),
])
def test_version_info_refused(body: dict[str, Any], errcode: str) -> None:
    assert _err(parse_version_info, body)[1] == errcode


def test_version_info_accepted() -> None:
    sigs = {"@a:b": {"ed25519:D": "sig"}}
    algorithm, raw = parse_version_info({"algorithm": CURVE25519_AES_SHA2, "auth_data": {
        "public_key": PUBLIC_KEY, "signatures": sigs, "extra": [1]}})
    assert algorithm == CURVE25519_AES_SHA2
    assert orjson.loads(raw) == {"public_key": PUBLIC_KEY, "signatures": sigs, "extra": [1]}


def good(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"first_message_index": 0, "forwarded_count": 0,
                            "is_verified": False, "session_data": dict(DATA)}
    body.update(over)
    return {k: v for k, v in body.items() if v is not ...}


@pytest.mark.parametrize(("body", "errcode"), [
    ([], "M_BAD_JSON"),
    (good(first_message_index=...), "M_BAD_JSON"),
    (good(forwarded_count=...), "M_BAD_JSON"),
    (good(is_verified=...), "M_BAD_JSON"),
    (good(session_data=...), "M_BAD_JSON"),
    (good(first_message_index="1"), "M_BAD_JSON"),
    (good(first_message_index=1.0), "M_BAD_JSON"),
    (good(first_message_index=True), "M_BAD_JSON"),
    (good(first_message_index=None), "M_BAD_JSON"),
    (good(first_message_index=-1), "M_INVALID_PARAM"),
    (good(first_message_index=2**53), "M_INVALID_PARAM"),
    (good(forwarded_count=-1), "M_INVALID_PARAM"),
    (good(forwarded_count=0.5), "M_BAD_JSON"),
    (good(is_verified=1), "M_BAD_JSON"),
    (good(is_verified="true"), "M_BAD_JSON"),
    (good(session_data="opaque"), "M_BAD_JSON"),
    (good(session_data={"ephemeral": "e", "mac": "m"}), "M_BAD_JSON"),
    (good(session_data={"ephemeral": "e", "ciphertext": 3, "mac": "m"}), "M_BAD_JSON"),
    (good(session_data={**DATA, "pad": "x" * MAX_SESSION_DATA_BYTES}), "M_TOO_LARGE"),
])
def test_room_key_refused(body: Any, errcode: str) -> None:
    assert _err(parse_room_key, body, "body", ALG)[1] == errcode


def test_room_key_accepted_and_extra_fields_dropped() -> None:
    k = parse_room_key(good(first_message_index=2**53 - 1, forwarded_count=3, is_verified=True,
                            extra="dropped"), "body", ALG)
    assert k == RoomKey(2**53 - 1, 3, True, '{"ephemeral":"e","ciphertext":"c","mac":"m"}')


@pytest.mark.parametrize(("body", "room_id", "session_id", "errcode"), [
    ({}, None, None, "M_BAD_JSON"),
    ({"rooms": []}, None, None, "M_BAD_JSON"),
    ({"rooms": {"!r:x": {}}}, None, None, "M_BAD_JSON"),
    ({"rooms": {"!r:x": {"sessions": []}}}, None, None, "M_BAD_JSON"),
    ({"rooms": {"!r:x": []}}, None, None, "M_BAD_JSON"),
    ({"rooms": {"r:x": {"sessions": {}}}}, None, None, "M_INVALID_PARAM"),
    ({"rooms": {"!r:x": {"sessions": {"": good()}}}}, None, None, "M_INVALID_PARAM"),
    ({"rooms": {"!r:x": {"sessions": {"s" * 256: good()}}}}, None, None, "M_INVALID_PARAM"),
    ({"rooms": {"!r:x": {"sessions": {"a": good(), "b": good(is_verified=0)}}}}, None, None,
     "M_BAD_JSON"),
    ({"sessions": {"a": good()}}, "not-a-room", None, "M_INVALID_PARAM"),
    ({}, "!r:x", None, "M_BAD_JSON"),
    (good(), "!r:x", "s" * 256, "M_INVALID_PARAM"),
    ({"sessions": {"a": good()}}, "!r:x", "a", "M_BAD_JSON"),  # a room body at a session path
])
def test_uploads_refused(body: dict[str, Any], room_id: str | None, session_id: str | None,
                         errcode: str) -> None:
    assert _err(parse_uploads, body, ALG, room_id, session_id)[1] == errcode


def test_uploads_are_bounded_per_request() -> None:
    from e2ee.backup_rules import MAX_SESSIONS_PER_REQUEST

    half = MAX_SESSIONS_PER_REQUEST // 2
    ok = {"rooms": {"!a:x": {"sessions": {str(i): good() for i in range(half)}},
                    "!b:x": {"sessions": {str(i): good() for i in range(half)}}}}
    assert len(parse_uploads(ok, ALG)) == MAX_SESSIONS_PER_REQUEST
    ok["rooms"]["!c:x"] = {"sessions": {"one": good()}}
    assert _err(parse_uploads, ok, ALG) == (413, "M_TOO_LARGE")


def test_uploads_three_forms_are_one_shape() -> None:
    k = parse_room_key(good(), "body", ALG)
    assert parse_uploads(good(), ALG, "!r:x", "s/1+") == {("!r:x", "s/1+"): k}
    assert parse_uploads({"sessions": {"s/1+": good()}}, ALG, "!r:x") == {("!r:x", "s/1+"): k}
    assert parse_uploads({"rooms": {"!r:x": {"sessions": {"s/1+": good()}},
                                    "!q:x": {"sessions": {}}}}, ALG) == {("!r:x", "s/1+"): k}


@pytest.mark.parametrize("auth_data", ["anopaquestring", {"any": ["thing"]}, 5, None])
def test_unknown_algorithms_keep_opaque_auth_data(auth_data: Any) -> None:
    algorithm, raw = parse_version_info({"algorithm": "m.megolm_backup.v1",
                                         "auth_data": auth_data})
    assert algorithm == "m.megolm_backup.v1" and orjson.loads(raw) == auth_data


def test_unknown_algorithms_keep_opaque_session_data() -> None:
    key = parse_room_key({"first_message_index": 1, "forwarded_count": 0, "is_verified": False,
                          "session_data": "anopaquestring"}, "body", algorithm_of("m.x"))
    assert orjson.loads(key.session_data) == "anopaquestring"
    with pytest.raises(MatrixError):  # the spec's algorithm still needs its object
        parse_room_key({"first_message_index": 1, "forwarded_count": 0, "is_verified": False,
                        "session_data": "anopaquestring"}, "body", ALG)
