"""Real ed25519 keys and signatures for the e2ee tests (signedjson + pynacl, as clients sign)."""

from __future__ import annotations

import base64
import copy
import secrets
from dataclasses import dataclass
from typing import Any

from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from tests.helpers import Client, User


def b64(n: int = 32) -> str:
    return base64.b64encode(secrets.token_bytes(n)).decode().rstrip("=")


@dataclass
class Device:
    user: User
    signing_key: Any  # nacl SigningKey with .version == device_id

    @property
    def ed25519(self) -> str:
        return str(encode_verify_key_base64(get_verify_key(self.signing_key)))

    def device_keys(self) -> dict[str, Any]:
        u, d = self.user.user_id, self.user.device_id
        obj = {"user_id": u, "device_id": d,
               "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
               "keys": {f"curve25519:{d}": b64(), f"ed25519:{d}": self.ed25519}}
        return dict(sign_json(obj, u, self.signing_key))

    def one_time_keys(self, n: int, prefix: str = "AAA") -> dict[str, Any]:
        return {f"signed_curve25519:{prefix}{i}": self.sign({"key": b64()}) for i in range(n)}

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        return dict(sign_json(copy.deepcopy(obj), self.user.user_id, self.signing_key))


def new_device(user: User) -> Device:
    return Device(user, generate_signing_key(user.device_id))


@dataclass
class CrossSigning:
    user_id: str
    master: Any
    self_signing: Any
    user_signing: Any

    @staticmethod
    def pub(key: Any) -> str:
        return str(encode_verify_key_base64(get_verify_key(key)))

    def key_obj(self, usage: str) -> dict[str, Any]:
        key = getattr(self, usage)
        pub = self.pub(key)
        obj: dict[str, Any] = {"user_id": self.user_id, "usage": [usage],
                               "keys": {f"ed25519:{pub}": pub}}
        if usage != "master":
            obj = dict(sign_json(obj, self.user_id, self.master))
        return obj

    def upload_body(self) -> dict[str, Any]:
        return {f"{u}_key": self.key_obj(u) for u in ("master", "self_signing", "user_signing")}


def new_cross_signing(user_id: str) -> CrossSigning:
    keys = []
    for _ in range(3):
        k = generate_signing_key("x")
        k.version = CrossSigning.pub(k)  # signatures name the key by its public key
        keys.append(k)
    return CrossSigning(user_id, *keys)


def sign_with(obj: dict[str, Any], user_id: str, key: Any) -> dict[str, Any]:
    return dict(sign_json(copy.deepcopy(obj), user_id, key))


async def upload(c: Client, user: User, body: dict[str, Any]) -> tuple[int, Any]:
    return await c.request("POST", "/keys/upload", body, user.access_token)


async def query(c: Client, user: User, wanted: dict[str, list[str]]) -> dict[str, Any]:
    status, body = await c.request("POST", "/keys/query", {"device_keys": wanted},
                                   user.access_token)
    assert status == 200, body
    return dict(body)


async def claim(c: Client, user: User, wanted: dict[str, dict[str, str]]) -> dict[str, Any]:
    status, body = await c.request("POST", "/keys/claim", {"one_time_keys": wanted},
                                   user.access_token)
    assert status == 200, body
    return dict(body)


async def login(c: Client, user: User, device_id: str) -> User:
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "password": "pw-secret-1", "device_id": device_id,
        "identifier": {"type": "m.id.user", "user": user.user_id}})
    assert status == 200, body
    return User(body["user_id"], body["access_token"], body["device_id"])
