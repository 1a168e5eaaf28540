"""Cross-signing keys and signatures: each signature verified before it is stored, key
replacement behind user-interactive auth, and who sees what through /keys/query."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2ee.keys import new_cross_signing, new_device, query, sign_with, upload
from tests.helpers import Client, User

PASSWORD_AUTH = {"type": "m.login.password", "password": "pw-secret-1"}


async def upload_cs(c: Client, user: User, body: dict[str, Any]) -> tuple[int, Any]:
    return await c.request("POST", "/keys/device_signing/upload", body, user.access_token)


async def test_first_upload_needs_no_auth_and_is_served(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    cs = new_cross_signing(alice.user_id)
    status, body = await upload_cs(c, alice, cs.upload_body())
    assert status == 200 and body == {}
    mine = await query(c, alice, {alice.user_id: []})
    assert mine["master_keys"][alice.user_id] == cs.key_obj("master")
    assert mine["self_signing_keys"][alice.user_id] == cs.key_obj("self_signing")
    assert mine["user_signing_keys"][alice.user_id] == cs.key_obj("user_signing")
    theirs = await query(c, bob, {alice.user_id: []})
    assert theirs["master_keys"][alice.user_id] == cs.key_obj("master")
    assert alice.user_id not in theirs.get("user_signing_keys", {})
    # the same keys again: idempotent, still no auth
    assert (await upload_cs(c, alice, cs.upload_body()))[0] == 200


async def test_replacing_keys_needs_auth(c: Client) -> None:
    alice = await c.register()
    first = new_cross_signing(alice.user_id)
    assert (await upload_cs(c, alice, first.upload_body()))[0] == 200
    second = new_cross_signing(alice.user_id)
    status, body = await upload_cs(c, alice, second.upload_body())
    assert status == 401 and "flows" in body and "session" in body
    assert (await query(c, alice, {alice.user_id: []}))["master_keys"][alice.user_id] == \
        first.key_obj("master")
    status, body = await upload_cs(c, alice, {
        **second.upload_body(), "auth": {**PASSWORD_AUTH, "session": body["session"],
                                         "identifier": {"type": "m.id.user",
                                                        "user": alice.user_id}}})
    assert status == 200, body
    assert (await query(c, alice, {alice.user_id: []}))["master_keys"][alice.user_id] == \
        second.key_obj("master")


@pytest.mark.parametrize("breakage,status,code", [
    ("ssk not signed by master", 400, "M_INVALID_SIGNATURE"),
    ("wrong usage", 400, "M_INVALID_PARAM"),
    ("other user", 400, "M_INVALID_PARAM"),
    ("two keys", 400, "M_INVALID_PARAM"),
    ("key id mismatch", 400, "M_INVALID_PARAM"),
    ("no master", 400, "M_MISSING_PARAM"),
    ("nothing", 400, "M_MISSING_PARAM"),
    ("not an object", 400, "M_BAD_JSON"),
])
async def test_bad_cross_signing_uploads(c: Client, breakage: str, status: int,
                                         code: str) -> None:
    alice = await c.register()
    cs = new_cross_signing(alice.user_id)
    body = cs.upload_body()
    if breakage == "ssk not signed by master":
        body["self_signing_key"] = {k: v for k, v in body["self_signing_key"].items()
                                    if k != "signatures"}
    elif breakage == "wrong usage":
        body["master_key"]["usage"] = ["self_signing"]
    elif breakage == "other user":
        body["master_key"]["user_id"] = "@else:parley.test"
    elif breakage == "two keys":
        body["master_key"]["keys"]["ed25519:other"] = "other"
    elif breakage == "key id mismatch":
        pub = cs.pub(cs.master)
        body["master_key"]["keys"] = {"ed25519:abc": pub}
    elif breakage == "no master":
        del body["master_key"]
    elif breakage == "nothing":
        body = {}
    elif breakage == "not an object":
        body["master_key"] = "x"
    got_status, got = await upload_cs(c, alice, body)
    assert (got_status, got["errcode"]) == (status, code), got
    q = await query(c, alice, {alice.user_id: []})
    assert q["master_keys"] == {} and q["self_signing_keys"] == {}


async def test_signing_own_device_and_master_key(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    dev = new_device(alice)
    keys = dev.device_keys()
    assert (await upload(c, alice, {"device_keys": keys}))[0] == 200
    cs = new_cross_signing(alice.user_id)
    assert (await upload_cs(c, alice, cs.upload_body()))[0] == 200
    signed_dev = sign_with(keys, alice.user_id, cs.self_signing)
    signed_master = dev.sign(cs.key_obj("master"))
    status, body = await c.request("POST", "/keys/signatures/upload", {
        alice.user_id: {alice.device_id: signed_dev, cs.pub(cs.master): signed_master}},
        alice.access_token)
    assert status == 200 and body == {"failures": {}}, body
    q = await query(c, bob, {alice.user_id: []})
    served = q["device_keys"][alice.user_id][alice.device_id]
    assert served["signatures"][alice.user_id] == signed_dev["signatures"][alice.user_id]
    assert f"ed25519:{alice.device_id}" in q["master_keys"][alice.user_id]["signatures"][
        alice.user_id]


async def test_bad_signatures_are_reported_per_key_and_not_stored(c: Client) -> None:
    alice = await c.register()
    dev = new_device(alice)
    keys = dev.device_keys()
    assert (await upload(c, alice, {"device_keys": keys}))[0] == 200
    cs = new_cross_signing(alice.user_id)
    assert (await upload_cs(c, alice, cs.upload_body()))[0] == 200
    forged = sign_with(keys, alice.user_id, new_cross_signing(alice.user_id).self_signing)
    tampered = sign_with({**keys, "algorithms": ["x"]}, alice.user_id, cs.self_signing)
    status, body = await c.request("POST", "/keys/signatures/upload", {
        alice.user_id: {alice.device_id: forged, "NODEVICE": forged,
                        "bogus-master": {"signatures": {}}}},
        alice.access_token)
    assert status == 200
    f = body["failures"][alice.user_id]
    assert f[alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    assert f["NODEVICE"]["errcode"] == "M_NOT_FOUND"
    assert "bogus-master" in f
    status, body = await c.request("POST", "/keys/signatures/upload", {
        alice.user_id: {alice.device_id: tampered}}, alice.access_token)
    assert body["failures"][alice.user_id][alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    served = (await query(c, alice, {alice.user_id: []}))["device_keys"][alice.user_id]
    assert served[alice.device_id]["signatures"] == keys["signatures"]


async def test_signing_another_users_master_key(c: Client) -> None:
    alice, bob, carol = await c.register(), await c.register(), await c.register()
    a_cs, b_cs = new_cross_signing(alice.user_id), new_cross_signing(bob.user_id)
    assert (await upload_cs(c, alice, a_cs.upload_body()))[0] == 200
    assert (await upload_cs(c, bob, b_cs.upload_body()))[0] == 200
    signed = sign_with(b_cs.key_obj("master"), alice.user_id, a_cs.user_signing)
    status, body = await c.request("POST", "/keys/signatures/upload", {
        bob.user_id: {b_cs.pub(b_cs.master): signed}}, alice.access_token)
    assert status == 200 and body == {"failures": {}}, body
    for_alice = (await query(c, alice, {bob.user_id: []}))["master_keys"][bob.user_id]
    assert alice.user_id in for_alice["signatures"]
    for_carol = (await query(c, carol, {bob.user_id: []}))["master_keys"][bob.user_id]
    assert alice.user_id not in for_carol.get("signatures", {})
    # signed with the master key instead of the user-signing key: refused
    wrong = sign_with(b_cs.key_obj("master"), alice.user_id, a_cs.master)
    status, body = await c.request("POST", "/keys/signatures/upload", {
        bob.user_id: {b_cs.pub(b_cs.master): wrong}}, alice.access_token)
    assert body["failures"][bob.user_id][b_cs.pub(b_cs.master)]["errcode"] == \
        "M_INVALID_SIGNATURE"


async def test_malformed_signature_uploads(c: Client) -> None:
    alice = await c.register()
    for body in ([], {"@a:b": []}, {"@a:b": {"k": "x"}}):
        status, got = await c.request("POST", "/keys/signatures/upload", body,
                                      alice.access_token)
        assert status == 400, got
