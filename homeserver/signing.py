"""Server signing keys and signed JSON (appendices: "Signing JSON").

Everything here is pure: keys are loaded and saved by the caller-provided path only, and
nothing is cached, so tests can build keys from fixed seeds and compare against the spec's
cryptographic test vectors.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canonicaljson import encode_canonical_json
from signedjson.key import (
    NACL_ED25519,
    decode_signing_key_base64,
    decode_verify_key_base64,
    encode_signing_key_base64,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
)
from signedjson.sign import SignatureVerifyException, sign_json
from signedjson.sign import verify_signed_json as _signedjson_verify
from signedjson.types import SigningKey
from unpaddedbase64 import encode_base64

JsonDict = dict[str, Any]

_KEY_VERSION_ALPHABET = string.ascii_letters + string.digits


class SignatureError(Exception):
    """A signature is missing, malformed or does not verify."""


def canonical_json(obj: object) -> bytes:
    """Encode ``obj`` the one way every server agrees on, so hashes and signatures match."""
    return encode_canonical_json(obj)


@dataclass(frozen=True, slots=True, eq=False)
class ServerSigningKey:
    """An ed25519 key a server signs events and requests with.

    ``key_id`` is derived from the key itself so the id in a signature can never
    disagree with the key that made it.
    """

    server_name: str
    signing_key: SigningKey

    @property
    def key_id(self) -> str:
        return f"{self.signing_key.alg}:{self.signing_key.version}"

    @property
    def verify_key_base64(self) -> str:
        return str(encode_verify_key_base64(get_verify_key(self.signing_key)))

    @classmethod
    def generate(cls, server_name: str) -> ServerSigningKey:
        """Make a fresh key with a random ``a_XXXX`` version, as Synapse does."""
        version = "a_" + "".join(secrets.choice(_KEY_VERSION_ALPHABET) for _ in range(4))
        return cls(server_name=server_name, signing_key=generate_signing_key(version))

    @classmethod
    def from_seed(cls, server_name: str, key_id: str, seed_base64: str) -> ServerSigningKey:
        """Build a key from an unpadded base64 seed (used for fixed test vectors)."""
        algorithm, _, version = key_id.partition(":")
        if algorithm != NACL_ED25519 or not version:
            raise ValueError(f"unsupported key id {key_id!r}")
        key = decode_signing_key_base64(algorithm, version, seed_base64)
        return cls(server_name=server_name, signing_key=key)

    @classmethod
    def from_file(cls, path: str | Path, server_name: str) -> ServerSigningKey:
        """Read a Synapse-compatible key file: ``ed25519 <version> <unpadded b64 seed>``.

        Only the first non-blank line is used; a Synapse file may list more keys but the
        first is the one Synapse signs with.
        """
        for line in Path(path).read_text(encoding="ascii").splitlines():
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise ValueError(f"malformed signing key line in {path}")
            algorithm, version, seed = parts
            return cls.from_seed(server_name, f"{algorithm}:{version}", seed)
        raise ValueError(f"no signing key found in {path}")

    def save(self, path: str | Path) -> None:
        seed = encode_signing_key_base64(self.signing_key)
        line = f"{self.signing_key.alg} {self.signing_key.version} {seed}\n"
        Path(path).write_text(line, encoding="ascii")

    def sign_bytes(self, data: bytes) -> str:
        """The unpadded base64 ed25519 signature of already canonical bytes."""
        return str(encode_base64(self.signing_key.sign(data).signature))

    def sign_json(self, obj: JsonDict) -> JsonDict:
        """Add our signature to ``obj`` in place, keeping any signatures already there."""
        return sign_json(obj, self.server_name, self.signing_key)


def verify_signed_json(obj: JsonDict, server_name: str, key_id: str, verify_key_b64: str) -> None:
    """Check ``obj`` carries a valid signature by ``server_name`` with the given key.

    Raises:
        SignatureError: if the key is unusable or the signature is absent or wrong.
    """
    algorithm, _, version = key_id.partition(":")
    if algorithm != NACL_ED25519 or not version:
        raise SignatureError(f"unsupported key algorithm in {key_id!r}")
    try:
        verify_key = decode_verify_key_base64(algorithm, version, verify_key_b64)
    except Exception as e:  # bad base64 or wrong length; nacl raises several types
        raise SignatureError(f"invalid verify key for {key_id}: {e}") from e
    try:
        _signedjson_verify(obj, server_name, verify_key)
    except SignatureVerifyException as e:
        raise SignatureError(str(e)) from e


@dataclass(frozen=True, slots=True)
class OldVerifyKey:
    """A key this server signed with before a rotation: still published (as old_verify_keys)
    so that events and requests it signed stay verifiable."""

    key_id: str
    verify_key_base64: str
    expired_ts: int


def load_old_keys(path: str | Path) -> list[OldVerifyKey]:
    """Lines of ``ed25519 <version> <unpadded b64 verify key> <expired_ts>``; no file: none."""
    p = Path(path)
    if not p.exists():
        return []
    keys = []
    for line in p.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4 or parts[0] != NACL_ED25519 or not parts[3].isdigit():
            raise ValueError(f"malformed old key line in {path}")
        decode_verify_key_base64(parts[0], parts[1], parts[2])  # refuse a broken key early
        keys.append(OldVerifyKey(f"{parts[0]}:{parts[1]}", parts[2], int(parts[3])))
    return keys


def rotate_key(key_path: str | Path, old_path: str | Path, server_name: str,
               now_ms: int) -> ServerSigningKey:
    """Retire the key in `key_path` into `old_path` (expired now) and write a fresh one.

    The old key is appended first, so a crash in between leaves it published, never lost."""
    current = ServerSigningKey.from_file(key_path, server_name)
    version = current.signing_key.version
    with Path(old_path).open("a", encoding="ascii") as f:
        f.write(f"{current.signing_key.alg} {version} {current.verify_key_base64} {now_ms}\n")
    while True:
        new = ServerSigningKey.generate(server_name)
        if new.key_id != current.key_id and all(
                k.key_id != new.key_id for k in load_old_keys(old_path)):
            break
    tmp = Path(str(key_path) + ".new")
    new.save(tmp)
    tmp.chmod(0o600)
    tmp.replace(key_path)
    return new
