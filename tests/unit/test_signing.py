from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from homeserver.signing import (
    ServerSigningKey,
    SignatureError,
    canonical_json,
    verify_signed_json,
)

# Appendices, "Cryptographic Test Vectors".
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"


def spec_key() -> ServerSigningKey:
    return ServerSigningKey.from_seed("domain", "ed25519:1", SPEC_SEED)


# Appendices, "Canonical JSON" examples.
@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({}, b"{}"),
        ({"one": 1, "two": "Two"}, b'{"one":1,"two":"Two"}'),
        ({"b": "2", "a": "1"}, b'{"a":"1","b":"2"}'),
        (
            {
                "auth": {
                    "success": True,
                    "mxid": "@john.doe:example.com",
                    "profile": {
                        "display_name": "John Doe",
                        "three_pids": [
                            {"medium": "email", "address": "john.doe@example.org"},
                            {"medium": "msisdn", "address": "123456789"},
                        ],
                    },
                }
            },
            b'{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe",'
            b'"three_pids":[{"address":"john.doe@example.org","medium":"email"},'
            b'{"address":"123456789","medium":"msisdn"}]},"success":true}}',
        ),
        ({"a": "日本語"}, '{"a":"日本語"}'.encode()),
        ({"本": 2, "日": 1}, '{"日":1,"本":2}'.encode()),
        ({"a": "\u65e5"}, '{"a":"日"}'.encode()),
        ({"a": None}, b'{"a":null}'),
        ({"a": -0, "b": 10000000000}, b'{"a":0,"b":10000000000}'),
    ],
)
def test_canonical_json_spec_examples(obj: object, expected: bytes) -> None:
    assert canonical_json(obj) == expected


@pytest.mark.parametrize(
    ("obj", "signature"),
    [
        (
            {},
            "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ",
        ),
        (
            {"one": 1, "two": "Two"},
            "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw",
        ),
    ],
)
def test_sign_json_spec_vectors(obj: dict[str, Any], signature: str) -> None:
    expected = {**obj, "signatures": {"domain": {"ed25519:1": signature}}}
    result = spec_key().sign_json(obj)
    assert result is obj  # signs in place
    assert result == expected
    verify_signed_json(result, "domain", "ed25519:1", spec_key().verify_key_base64)


def test_sign_json_keeps_unsigned_and_other_signatures() -> None:
    obj: dict[str, Any] = {
        "one": 1,
        "two": "Two",
        "unsigned": {"age_ts": 5},
        "signatures": {"other": {"ed25519:x": "abc"}},
    }
    spec_key().sign_json(obj)
    assert obj["unsigned"] == {"age_ts": 5}
    assert obj["signatures"]["other"] == {"ed25519:x": "abc"}
    # unsigned and foreign signatures are not covered, so the vector signature is unchanged.
    assert obj["signatures"]["domain"]["ed25519:1"] == (
        "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
    )


def _signed() -> dict[str, Any]:
    return spec_key().sign_json({"one": 1, "two": "Two"})


@pytest.mark.parametrize(
    ("mutate", "server", "key_id", "key_b64"),
    [
        pytest.param(lambda o: o.update(one=2), "domain", "ed25519:1", None, id="tampered"),
        pytest.param(lambda o: None, "elsewhere", "ed25519:1", None, id="wrong-server"),
        pytest.param(lambda o: None, "domain", "ed25519:2", None, id="wrong-key-id"),
        pytest.param(lambda o: o.pop("signatures"), "domain", "ed25519:1", None, id="unsigned"),
        pytest.param(lambda o: None, "domain", "ed25519:1", "not*base64", id="bad-key"),
        pytest.param(lambda o: None, "domain", "ed25519:1", "AAAA", id="short-key"),
        pytest.param(lambda o: None, "domain", "curve25519:1", None, id="bad-algorithm"),
        pytest.param(
            lambda o: o["signatures"]["domain"].update({"ed25519:1": "!!"}),
            "domain",
            "ed25519:1",
            None,
            id="bad-signature-b64",
        ),
    ],
)
def test_verify_signed_json_rejects(
    mutate: Any, server: str, key_id: str, key_b64: str | None
) -> None:
    obj = _signed()
    mutate(obj)
    if key_b64 is None:
        key_b64 = spec_key().verify_key_base64
    with pytest.raises(SignatureError):
        verify_signed_json(obj, server, key_id, key_b64)


def test_verify_with_other_servers_key_fails() -> None:
    other = ServerSigningKey.generate("domain")
    with pytest.raises(SignatureError):
        verify_signed_json(_signed(), "domain", "ed25519:1", other.verify_key_base64)


def test_generate_key_id_and_round_trip() -> None:
    key = ServerSigningKey.generate("example.org")
    assert key.server_name == "example.org"
    assert re.fullmatch(r"ed25519:a_[A-Za-z0-9]{4}", key.key_id)
    signed = key.sign_json({"x": 1})
    verify_signed_json(signed, "example.org", key.key_id, key.verify_key_base64)
    assert set(signed["signatures"]["example.org"]) == {key.key_id}


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    key = ServerSigningKey.generate("example.org")
    path = tmp_path / "signing.key"
    key.save(path)
    text = path.read_text()
    assert re.fullmatch(r"ed25519 a_[A-Za-z0-9]{4} [A-Za-z0-9+/]{43}\n", text)
    loaded = ServerSigningKey.from_file(path, "example.org")
    assert loaded.key_id == key.key_id
    assert loaded.verify_key_base64 == key.verify_key_base64
    assert loaded.sign_json({"a": 1}) == key.sign_json({"a": 1})


def test_from_file_reads_synapse_format(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text(f"\ned25519 1 {SPEC_SEED}\ned25519 2 {SPEC_SEED}\n")
    key = ServerSigningKey.from_file(str(path), "domain")
    assert key.key_id == "ed25519:1"
    assert key.sign_json({})["signatures"]["domain"]["ed25519:1"].startswith("K8280/U9")


@pytest.mark.parametrize("content", ["", "\n\n", "ed25519 1\n", "rsa 1 AAAA\n"])
def test_from_file_rejects_malformed(tmp_path: Path, content: str) -> None:
    path = tmp_path / "k"
    path.write_text(content)
    with pytest.raises(ValueError):
        ServerSigningKey.from_file(path, "domain")
