"""The shapes of uploaded keys, and the signature checks on them: pure code, no I/O.

The server cannot judge a key (it never sees private keys), but it can refuse what no client
could use: device keys of another user or device or of the wrong shape, cross-signing keys
without the usage they claim or without the master key's signature, key ids that are not
`algorithm:id`. (A device's self-signature is left to the clients: see check_device_keys.)
Checking here keeps a broken upload from reaching other users' clients, where it would surface as
an undecryptable message instead of a clear error for the uploader.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import Codes, MatrixError
from homeserver.signing import SignatureError, verify_signed_json
from homeserver.types import JsonDict

MAX_ID_LEN = 255  # user ids, device ids, key ids, algorithm names
MAX_KEY_LEN = 1024  # one public key (base64) or signature
MAX_KEYS_PER_UPLOAD = 1_000  # one-time keys in one /keys/upload
CROSS_SIGNING_USAGES = ("master", "self_signing", "user_signing")


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, msg)


def _invalid(msg: str) -> MatrixError:
    return MatrixError(400, Codes.INVALID_PARAM, msg)


def _short_str(v: Any, limit: int = MAX_ID_LEN) -> bool:
    return isinstance(v, str) and 0 < len(v) <= limit


def split_key_id(key_id: str) -> tuple[str, str]:
    """`algorithm:id` -> (algorithm, id); anything else is M_INVALID_PARAM."""
    alg, sep, ident = key_id.partition(":")
    if not sep or not alg or not ident or len(key_id) > MAX_ID_LEN:
        raise _invalid(f"Invalid key id {key_id[:80]!r}: expected <algorithm>:<key_id>")
    return alg, ident


def check_signatures_shape(obj: JsonDict, where: str) -> dict[str, dict[str, str]]:
    sigs = obj.get("signatures", {})
    if not isinstance(sigs, dict):
        raise _bad(f"{where}: signatures must be an object")
    for signer, by_key in sigs.items():
        if not isinstance(by_key, dict) or not by_key:
            raise _bad(f"{where}: signatures of {signer[:80]} must be a non-empty object")
        for kid, sig in by_key.items():
            if not _short_str(kid) or not _short_str(sig, MAX_KEY_LEN):
                raise _bad(f"{where}: invalid signature entry")
    return sigs


def has_valid_signature(obj: JsonDict, signer: str, key_id: str, public_key: str) -> bool:
    try:
        verify_signed_json(obj, signer, key_id, public_key)
    except SignatureError:
        return False
    return True


def check_device_keys(keys: Any, user_id: str, device_id: str) -> JsonDict:
    """Validate the shape of an uploaded device_keys object for this user's device. Returns
    the object as it is stored."""
    if not isinstance(keys, dict):
        raise _bad("device_keys must be an object")
    if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        raise _invalid("device_keys must be for the requesting user and device")
    algorithms = keys.get("algorithms")
    if not isinstance(algorithms, list) or not algorithms or len(algorithms) > 32 or \
            not all(_short_str(a) for a in algorithms):
        raise _bad("device_keys.algorithms must be a non-empty list of strings")
    pub = keys.get("keys")
    if not isinstance(pub, dict) or not pub or len(pub) > 32:
        raise _bad("device_keys.keys must be a non-empty object")
    for kid, value in pub.items():
        split_key_id(kid)
        if not _short_str(value, MAX_KEY_LEN):
            raise _bad(f"device_keys.keys[{kid[:80]!r}] must be a string")
    if "signatures" not in keys:  # required by the spec's DeviceKeys (it may be empty)
        raise _bad("device_keys.signatures is required")
    check_signatures_shape(keys, "device_keys")
    # The device's self-signature is not verified here, nor is an `ed25519:<device_id>` key
    # required: the spec asks neither of the server (only the shape of DeviceKeys), the
    # reference server checks neither, and SyTest uploads keys that fail both. Every client
    # verifies the self-signature itself before it trusts or encrypts to a device (spec
    # "Device verification"; matrix-js-sdk, vodozemac and matrix-nio all do), so a device whose
    # keys do not verify is ignored by the others whether or not the server refused it.
    return {k: v for k, v in keys.items() if k != "unsigned"}


def check_one_time_keys(keys: Any, field: str) -> list[tuple[str, str, Any]]:
    """(algorithm, key_id, key) per entry of one_time_keys / fallback_keys. A key is a string
    (old curve25519 keys) or a signed object with a string `key`."""
    if keys is None:
        return []
    if not isinstance(keys, dict):
        raise _bad(f"{field} must be an object")
    if len(keys) > MAX_KEYS_PER_UPLOAD:
        raise MatrixError(413, Codes.TOO_LARGE, f"Too many keys in {field}")
    out: list[tuple[str, str, Any]] = []
    for full_id, key in keys.items():
        alg, kid = split_key_id(full_id)
        if isinstance(key, str):
            if not 0 < len(key) <= MAX_KEY_LEN:
                raise _bad(f"{field}[{full_id[:80]!r}] is not a valid key")
        elif isinstance(key, dict):
            if not _short_str(key.get("key"), MAX_KEY_LEN):
                raise _bad(f"{field}[{full_id[:80]!r}].key must be a string")
            check_signatures_shape(key, f"{field}[{full_id[:80]!r}]")
            if "fallback" in key and not isinstance(key["fallback"], bool):
                raise _bad(f"{field}[{full_id[:80]!r}].fallback must be a boolean")
            if len(key) > 16:
                raise _bad(f"{field}[{full_id[:80]!r}] has too many fields")
        else:
            raise _bad(f"{field}[{full_id[:80]!r}] must be a string or an object")
        out.append((alg, kid, key))
    return out


def cross_signing_public_key(key: Any, user_id: str, usage: str) -> str:
    """Validate a cross-signing key object of `usage` for `user_id`; returns its public key."""
    where = f"{usage}_key"
    if not isinstance(key, dict):
        raise _bad(f"{where} must be an object")
    if key.get("user_id") != user_id:
        raise _invalid(f"{where} must be for the requesting user")
    usages = key.get("usage")
    if not isinstance(usages, list) or not all(isinstance(u, str) for u in usages) or \
            usage not in usages or any(u != usage for u in usages):
        raise _invalid(f"{where}.usage must be [{usage!r}]")
    pub = key.get("keys")
    if not isinstance(pub, dict) or len(pub) != 1:
        raise _invalid(f"{where}.keys must hold exactly one key")
    ((kid, value),) = pub.items()
    alg, ident = split_key_id(kid)
    if alg != "ed25519" or ident != value or not _short_str(value, MAX_KEY_LEN):
        raise _invalid(f"{where}.keys must be {{'ed25519:<public key>': '<public key>'}}")
    check_signatures_shape(key, where)
    return value


def check_signed_by_master(key: JsonDict, user_id: str, master_pub: str, usage: str) -> None:
    """A self-signing or user-signing key must carry a valid signature by the master key."""
    if not has_valid_signature(key, user_id, f"ed25519:{master_pub}", master_pub):
        raise MatrixError(400, Codes.INVALID_SIGNATURE,
                          f"{usage}_key is not signed by the master key")
