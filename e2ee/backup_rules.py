"""Key backup protocol rules, pure and without I/O: what a backup version and a backed-up room
key must look like, and which of two keys for one session the backup keeps.

Errcodes follow one principle: a field that is missing or of the wrong JSON type is M_BAD_JSON
(as for every body the JSON Schemas check); a field of the right type whose value is not
acceptable (an unknown algorithm, a public key that is not a Curve25519 key, a negative index,
a malformed room id) is M_INVALID_PARAM, the code the spec gives for the algorithm and version
mismatches of PUT /room_keys/version/{version}; a value above a size bound is M_TOO_LARGE.

The replacement rule is the spec's ("Server-side key backups"): a verified key beats an
unverified one; between two of the same verifiedness the lower first_message_index wins, and
only when those are equal too does the lower forwarded_count decide. Synapse's
`_should_replace_room_key` differs: it compares each field on its own, so an unverified key
with a lower index replaces a verified one, and a key with a higher index but a lower
forwarded_count replaces one that can decrypt more. We follow the spec. On a complete tie the
stored key stays (as in Synapse): nothing changes and the etag stays the same.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from homeserver.errors import Codes, MatrixError, bad_json
from homeserver.errors import invalid_param as invalid
from homeserver.events.validation import MAX_SAFE_INT
from homeserver.types import JsonDict, is_valid_room_id

CURVE25519_AES_SHA2 = "m.megolm_backup.v1.curve25519-aes-sha2"

MAX_AUTH_DATA_BYTES = 65_536  # serialised auth_data (public key plus signatures)
MAX_SESSION_DATA_BYTES = 65_536  # one session's serialised session_data; real ones are ~1 kB
MAX_SESSION_ID_LENGTH = 255  # megolm session ids are 43 characters
MAX_SESSIONS_PER_REQUEST = 10_000

_UNPADDED_BASE64 = re.compile(r"^[A-Za-z0-9+/]*$")


@dataclass(frozen=True, slots=True)
class RoomKey:
    """One backed-up megolm session: the metadata the server compares, and the encrypted
    `session_data` (kept serialised: the server never looks inside it once checked)."""

    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: str


def should_replace(stored: RoomKey, new: RoomKey) -> bool:
    """Whether `new` replaces `stored` for the same session (see the module docstring)."""
    if new.is_verified != stored.is_verified:
        return new.is_verified
    if new.first_message_index != stored.first_message_index:
        return new.first_message_index < stored.first_message_index
    return new.forwarded_count < stored.forwarded_count


# ------------------------------------------------------------------ algorithms


def _curve25519_public_key(value: Any) -> None:
    if not isinstance(value, str):
        raise bad_json("auth_data.public_key must be a string")
    # 32 bytes in unpadded base64 are 43 characters.
    if len(value) != 43 or not _UNPADDED_BASE64.match(value):
        raise invalid("auth_data.public_key must be a Curve25519 key in unpadded base64")
    try:
        raw = base64.b64decode(value + "=", validate=True)
    except binascii.Error:
        raise invalid("auth_data.public_key is not valid base64") from None
    if len(raw) != 32:
        raise invalid("auth_data.public_key must be 32 bytes")


def _signatures(value: Any) -> None:
    """Signed JSON's `signatures`: {user_id: {key_id: signature}}. The server cannot check them
    (clients decide whether they trust the backup), only that they are well formed."""
    if not isinstance(value, dict):
        raise bad_json("auth_data.signatures must be an object")
    for user_id, by_key in value.items():
        if not isinstance(by_key, dict):
            raise bad_json(f"auth_data.signatures.{user_id} must be an object")
        for key_id, sig in by_key.items():
            if not isinstance(sig, str):
                raise bad_json(f"auth_data.signatures.{user_id}.{key_id} must be a string")


def _check_auth_data_curve25519(auth_data: JsonDict) -> None:
    if "public_key" not in auth_data:
        raise bad_json("auth_data.public_key is required")
    _curve25519_public_key(auth_data["public_key"])
    if "signatures" in auth_data:
        _signatures(auth_data["signatures"])


def _check_session_data_curve25519(session_data: JsonDict, where: str) -> None:
    for name in ("ephemeral", "ciphertext", "mac"):
        if name not in session_data:
            raise bad_json(f"{where}.session_data.{name} is required")
        if not isinstance(session_data[name], str):
            raise bad_json(f"{where}.session_data.{name} must be a string")


@dataclass(frozen=True, slots=True)
class Algorithm:
    check_auth_data: Callable[[JsonDict], None]
    check_session_data: Callable[[JsonDict, str], None]
    opaque: bool = False  # an algorithm the spec does not define: its data are stored as sent


def _no_check(*_: Any) -> None:
    return None


# The spec defines one algorithm, and its data are checked. Others (a client's own, or a test
# suite's) are stored as opaque JSON, as the reference server does: the server has nothing to
# check in data whose format no spec gives, and refusing them would break such clients.
ALGORITHMS: dict[str, Algorithm] = {
    CURVE25519_AES_SHA2: Algorithm(_check_auth_data_curve25519, _check_session_data_curve25519),
}
OPAQUE = Algorithm(_no_check, _no_check, opaque=True)
MAX_ALGORITHM_LENGTH = 255


def algorithm_of(name: str) -> Algorithm:
    return ALGORITHMS.get(name, OPAQUE)


# ------------------------------------------------------------------ request bodies


def parse_version_info(body: JsonDict) -> tuple[str, str]:
    """`{algorithm, auth_data}` of POST and PUT /room_keys/version; returns them checked, with
    auth_data serialised."""
    if "algorithm" not in body:
        raise bad_json("algorithm is required")
    algorithm = body["algorithm"]
    if not isinstance(algorithm, str):
        raise bad_json("algorithm must be a string")
    if "auth_data" not in body:
        raise bad_json("auth_data is required")
    if not algorithm or len(algorithm) > MAX_ALGORITHM_LENGTH:
        raise invalid(f"algorithm must be 1 to {MAX_ALGORITHM_LENGTH} characters")
    auth_data = body["auth_data"]
    spec = algorithm_of(algorithm)
    if not isinstance(auth_data, dict) and not spec.opaque:
        raise bad_json("auth_data must be an object")
    raw = orjson.dumps(auth_data).decode()
    if len(raw) > MAX_AUTH_DATA_BYTES:
        raise MatrixError(413, Codes.TOO_LARGE, "auth_data is too large")
    spec.check_auth_data(auth_data)
    return algorithm, raw


def _count(value: Any, name: str, where: str) -> int:
    if type(value) is not int:  # not bool, not 1.0
        raise bad_json(f"{where}.{name} must be an integer")
    if value < 0 or value > MAX_SAFE_INT:
        raise invalid(f"{where}.{name} must be between 0 and {MAX_SAFE_INT}")
    return value


def parse_room_key(body: Any, where: str, algorithm: Algorithm) -> RoomKey:
    """KeyBackupData: all four fields required; other fields are ignored (and not stored)."""
    if not isinstance(body, dict):
        raise bad_json(f"{where} must be an object")
    for name in ("first_message_index", "forwarded_count", "is_verified", "session_data"):
        if name not in body:
            raise bad_json(f"{where}.{name} is required")
    first = _count(body["first_message_index"], "first_message_index", where)
    forwarded = _count(body["forwarded_count"], "forwarded_count", where)
    if not isinstance(body["is_verified"], bool):
        raise bad_json(f"{where}.is_verified must be a boolean")
    session_data = body["session_data"]
    if not isinstance(session_data, dict) and not algorithm.opaque:
        raise bad_json(f"{where}.session_data must be an object")
    raw = orjson.dumps(session_data).decode()
    if len(raw) > MAX_SESSION_DATA_BYTES:
        raise MatrixError(413, Codes.TOO_LARGE, f"{where}.session_data is too large")
    if isinstance(session_data, dict):
        algorithm.check_session_data(session_data, where)
    return RoomKey(first, forwarded, body["is_verified"], raw)


def check_room_id(room_id: str) -> None:
    if not is_valid_room_id(room_id):
        raise invalid(f"Invalid room id {room_id!r}")


def check_session_id(session_id: str) -> None:
    if not session_id or len(session_id) > MAX_SESSION_ID_LENGTH:
        raise invalid(f"A session id must be 1 to {MAX_SESSION_ID_LENGTH} characters")


Uploads = dict[tuple[str, str], RoomKey]


def _sessions(body: Any, room_id: str, where: str, algorithm: Algorithm,
              into: Uploads) -> None:
    """RoomKeyBackup `{"sessions": {session_id: KeyBackupData}}` into `into`."""
    if not isinstance(body, dict):
        raise bad_json(f"{where} must be an object")
    if "sessions" not in body:
        raise bad_json(f"{where}.sessions is required")
    sessions = body["sessions"]
    if not isinstance(sessions, dict):
        raise bad_json(f"{where}.sessions must be an object")
    for session_id, key in sessions.items():
        check_session_id(session_id)
        if len(into) >= MAX_SESSIONS_PER_REQUEST:
            raise MatrixError(413, Codes.TOO_LARGE,
                              f"At most {MAX_SESSIONS_PER_REQUEST} sessions per request")
        into[(room_id, session_id)] = parse_room_key(key, f"{where}.sessions.{session_id}",
                                                     algorithm)


def parse_uploads(body: JsonDict, algorithm: Algorithm, room_id: str | None = None,
                  session_id: str | None = None) -> Uploads:
    """The body of PUT /room_keys/keys[/{roomId}[/{sessionId}]] as {(room, session): key}.

    The three forms nest the same object: one KeyBackupData, a room's `sessions`, or all
    `rooms`; the path says which one was sent."""
    uploads: Uploads = {}
    if room_id is not None:
        check_room_id(room_id)
        if session_id is not None:
            check_session_id(session_id)
            uploads[(room_id, session_id)] = parse_room_key(body, "body", algorithm)
        else:
            _sessions(body, room_id, "body", algorithm, uploads)
        return uploads
    if "rooms" not in body:
        raise bad_json("rooms is required")
    rooms = body["rooms"]
    if not isinstance(rooms, dict):
        raise bad_json("rooms must be an object")
    for rid, room in rooms.items():
        check_room_id(rid)
        _sessions(room, rid, f"rooms.{rid}", algorithm, uploads)
    return uploads


def parse_version(version: str) -> int | None:
    """Our version ids are the decimal numbers we hand out ("1", "2", ...); any other string
    names no backup (the spec treats versions as opaque strings, so it is not found, not
    malformed)."""
    if (not version or len(version) > 18 or not version.isascii() or not version.isdigit()
            or version[0] == "0"):
        return None
    return int(version)
