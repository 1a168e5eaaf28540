"""/keys/upload, /keys/query, /keys/claim: real ed25519 signatures, every error path changes
nothing, one-time keys go out once, fallback keys when none are left."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2ee.keys import b64, claim, login, new_device, query, upload
from tests.helpers import Client


async def test_upload_and_query_device_keys(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    dev = new_device(alice)
    keys = dev.device_keys()
    status, body = await upload(c, alice, {"device_keys": keys,
                                           "one_time_keys": dev.one_time_keys(5)})
    assert status == 200, body
    assert body == {"one_time_key_counts": {"signed_curve25519": 5}}

    got = await query(c, bob, {alice.user_id: []})
    served = got["device_keys"][alice.user_id][alice.device_id]
    assert {k: v for k, v in served.items() if k != "unsigned"} == keys
    assert got["failures"] == {}
    # a named device, an unknown device, and a user with no keys
    got = await query(c, bob, {alice.user_id: [alice.device_id, "NOPE"], bob.user_id: []})
    assert list(got["device_keys"][alice.user_id]) == [alice.device_id]
    assert got["device_keys"][bob.user_id] == {}
    got = await query(c, bob, {alice.user_id: ["NOPE"]})
    assert got["device_keys"][alice.user_id] == {}


async def test_display_name_is_in_unsigned(c: Client) -> None:
    alice = await c.register()
    dev = new_device(alice)
    assert (await upload(c, alice, {"device_keys": dev.device_keys()}))[0] == 200
    served = (await query(c, alice, {alice.user_id: []}))["device_keys"][alice.user_id]
    assert served[alice.device_id]["unsigned"] == {}
    status, _ = await c.request("PUT", f"/devices/{alice.device_id}", {"display_name": "Phone"},
                                alice.access_token)
    assert status == 200
    served = (await query(c, alice, {alice.user_id: []}))["device_keys"][alice.user_id]
    assert served[alice.device_id]["unsigned"] == {"device_display_name": "Phone"}


async def test_identical_reupload_is_fine_different_replaces(c: Client) -> None:
    """Same keys again: nothing changes. Different keys for the same device (a client that
    lost its crypto store but kept its session): they replace the old ones, as Synapse does,
    and the user's device list changes so others refetch them."""
    alice = await c.register()
    dev = new_device(alice)
    keys = dev.device_keys()
    assert (await upload(c, alice, {"device_keys": keys}))[0] == 200
    since = (await c.sync(alice))["next_batch"]
    assert (await upload(c, alice, {"device_keys": keys}))[0] == 200
    other = dev.device_keys()  # new curve25519 key, same device
    assert other != keys
    status, _ = await upload(c, alice, {"device_keys": other})
    assert status == 200
    served = (await query(c, alice, {alice.user_id: []}))["device_keys"][alice.user_id]
    assert {k: v for k, v in served[alice.device_id].items() if k != "unsigned"} == other
    status, changes = await c.request("GET", "/keys/changes", token=alice.access_token,
                                      params={"from": since, "to": (await c.sync(alice))[
                                          "next_batch"]})
    assert status == 200 and alice.user_id in changes["changed"], changes


def _bad_device_keys(kind: str, keys: dict[str, Any], user_id: str) -> Any:
    d = keys["device_id"]
    if kind == "other user":
        return {**keys, "user_id": "@someone:parley.test"}
    if kind == "other device":
        return {**keys, "device_id": "OTHER"}
    if kind == "unsigned":
        return {k: v for k, v in keys.items() if k != "signatures"}
    if kind == "bad signature":
        return {**keys, "signatures": {user_id: {f"ed25519:{d}": b64(64)}}}
    if kind == "tampered":
        return {**keys, "algorithms": ["m.olm.v1.curve25519-aes-sha2"]}
    if kind == "no ed25519":
        return {**keys, "keys": {f"curve25519:{d}": b64()}}
    if kind == "not an object":
        return ["x"]
    if kind == "algorithms not list":
        return {**keys, "algorithms": "m.megolm.v1.aes-sha2"}
    if kind == "key not string":
        return {**keys, "keys": {**keys["keys"], f"curve25519:{d}": 5}}
    if kind == "bad key id":
        return {**keys, "keys": {**keys["keys"], "nocolon": "x"}}
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["no self-signature", "bad signature", "tampered",
                                  "no ed25519"])
async def test_device_keys_whose_self_signature_fails_are_kept_as_synapse_does(
        c: Client, kind: str) -> None:
    """Keys without a valid self-signature or without an `ed25519:<device>` key (SyTest's
    uploads): stored and served as uploaded; the spec leaves the check to the clients, which
    will not trust such a device."""
    alice = await c.register()
    good = new_device(alice).device_keys()
    keys = ({**good, "signatures": {}} if kind == "no self-signature"
            else _bad_device_keys(kind, good, alice.user_id))
    status, body = await upload(c, alice, {"device_keys": keys})
    assert status == 200, body
    served = (await query(c, alice, {alice.user_id: []}))["device_keys"][alice.user_id]
    assert {k: v for k, v in served[alice.device_id].items() if k != "unsigned"} == keys


@pytest.mark.parametrize("kind,code", [
    ("other user", "M_INVALID_PARAM"), ("other device", "M_INVALID_PARAM"),
    ("unsigned", "M_BAD_JSON"), ("not an object", "M_BAD_JSON"),
    ("algorithms not list", "M_BAD_JSON"),
    ("key not string", "M_BAD_JSON"), ("bad key id", "M_INVALID_PARAM"),
])
async def test_bad_device_keys_are_refused_and_change_nothing(c: Client, kind: str,
                                                              code: str) -> None:
    alice = await c.register()
    dev = new_device(alice)
    bad = _bad_device_keys(kind, dev.device_keys(), alice.user_id)
    status, body = await upload(c, alice, {"device_keys": bad,
                                           "one_time_keys": dev.one_time_keys(3)})
    assert status == 400 and body["errcode"] == code, body
    assert (await query(c, alice, {alice.user_id: []}))["device_keys"][alice.user_id] == {}
    assert (await upload(c, alice, {}))[1] == {"one_time_key_counts": {"signed_curve25519": 0}}


@pytest.mark.parametrize("otks,code", [
    ({"nocolon": "abc"}, "M_INVALID_PARAM"),
    ({"signed_curve25519:A": 5}, "M_BAD_JSON"),
    ({"signed_curve25519:A": {"nokey": 1}}, "M_BAD_JSON"),
    ({"signed_curve25519:A": {"key": "k", "signatures": "x"}}, "M_BAD_JSON"),
    ({"signed_curve25519:A": ""}, "M_BAD_JSON"),
    ("notadict", "M_BAD_JSON"),
])
async def test_malformed_one_time_keys(c: Client, otks: Any, code: str) -> None:
    alice = await c.register()
    status, body = await upload(c, alice, {"one_time_keys": otks})
    assert status == 400 and body["errcode"] == code, body
    assert (await upload(c, alice, {}))[1] == {"one_time_key_counts": {"signed_curve25519": 0}}


async def test_too_many_one_time_keys(c: Client) -> None:
    alice = await c.register()
    otks = {f"curve25519:K{i}": b64() for i in range(1001)}
    status, body = await upload(c, alice, {"one_time_keys": otks})
    assert status == 413 and body["errcode"] == "M_TOO_LARGE"


async def test_one_time_key_id_reuse(c: Client) -> None:
    alice = await c.register()
    dev = new_device(alice)
    first = dev.one_time_keys(2)
    assert (await upload(c, alice, {"one_time_keys": first}))[1] == {
        "one_time_key_counts": {"signed_curve25519": 2}}
    # the same keys again (a retried request): fine, nothing doubles
    assert (await upload(c, alice, {"one_time_keys": first}))[1] == {
        "one_time_key_counts": {"signed_curve25519": 2}}
    # the same id with another key, beside a new one: refused as a whole
    clash = {"signed_curve25519:AAA0": dev.sign({"key": b64()}),
             **dev.one_time_keys(1, prefix="NEW")}
    status, body = await upload(c, alice, {"one_time_keys": clash})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    assert (await upload(c, alice, {}))[1] == {"one_time_key_counts": {"signed_curve25519": 2}}


async def test_old_style_and_unknown_algorithm_keys(c: Client) -> None:
    alice = await c.register()
    status, body = await upload(c, alice, {"one_time_keys": {
        "curve25519:A": b64(), "my_algorithm:my_id_1": "my+base64+key"}})
    assert status == 200
    assert body == {"one_time_key_counts": {"curve25519": 1, "my_algorithm": 1,
                                           "signed_curve25519": 0}}


async def test_claim_hands_each_key_out_once_then_the_fallback(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    dev = new_device(alice)
    otks = dev.one_time_keys(2)
    fallback = {"signed_curve25519:FB1": dev.sign({"key": b64(), "fallback": True})}
    assert (await upload(c, alice, {"device_keys": dev.device_keys(), "one_time_keys": otks,
                                    "fallback_keys": fallback}))[0] == 200
    sync = await c.sync(alice)
    assert sync["device_one_time_keys_count"] == {"signed_curve25519": 2}
    assert sync["device_unused_fallback_key_types"] == ["signed_curve25519"]

    want = {alice.user_id: {alice.device_id: "signed_curve25519"}}
    seen = []
    for _ in range(2):
        got = (await claim(c, bob, want))["one_time_keys"][alice.user_id][alice.device_id]
        ((kid, key),) = got.items()
        assert otks[kid] == key
        seen.append(kid)
    assert len(set(seen)) == 2
    # none left: the fallback key, again and again, now marked used
    for _ in range(2):
        got = (await claim(c, bob, want))["one_time_keys"][alice.user_id][alice.device_id]
        assert got == fallback
    sync = await c.sync(alice)
    assert sync["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert sync["device_unused_fallback_key_types"] == []
    # re-uploading the same fallback key does not make it unused; a new one does
    assert (await upload(c, alice, {"fallback_keys": fallback}))[0] == 200
    assert (await c.sync(alice))["device_unused_fallback_key_types"] == []
    new_fb = {"signed_curve25519:FB2": dev.sign({"key": b64(), "fallback": True})}
    assert (await upload(c, alice, {"fallback_keys": new_fb}))[0] == 200
    assert (await c.sync(alice))["device_unused_fallback_key_types"] == ["signed_curve25519"]
    got = (await claim(c, bob, want))["one_time_keys"][alice.user_id][alice.device_id]
    assert got == new_fb


async def test_claim_unknown_users_and_devices_are_absent(c: Client) -> None:
    alice = await c.register()
    got = await claim(c, alice, {"@nobody:parley.test": {"X": "signed_curve25519"},
                                 alice.user_id: {"NODEVICE": "signed_curve25519"}})
    assert got == {"one_time_keys": {}, "failures": {}}


async def test_remote_users_are_reported_as_failures(c: Client) -> None:
    alice = await c.register()
    got = await query(c, alice, {"@bob:elsewhere.example": []})
    assert "elsewhere.example" in got["failures"]
    got = await claim(c, alice, {"@bob:elsewhere.example": {"D": "signed_curve25519"}})
    assert "elsewhere.example" in got["failures"]


@pytest.mark.parametrize("path,body", [
    ("/keys/query", {}), ("/keys/query", {"device_keys": []}),
    ("/keys/query", {"device_keys": {"@a:b": "x"}}),
    ("/keys/query", {"device_keys": {"notauser": []}}),
    ("/keys/query", {"device_keys": {"@a:b": [1]}}),
    ("/keys/claim", {}), ("/keys/claim", {"one_time_keys": {"@a:b": []}}),
    ("/keys/claim", {"one_time_keys": {"@a:b": {"D": 5}}}),
    ("/keys/claim", {"one_time_keys": {"bad": {"D": "alg"}}}),
    ("/keys/upload", {"fallback_keys": {"signed_curve25519:A": "k1",
                                        "signed_curve25519:B": "k2"}}),
])
async def test_malformed_query_and_claim(c: Client, path: str, body: Any) -> None:
    alice = await c.register()
    status, got = await c.request("POST", path, body, alice.access_token)
    assert status == 400 and got["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM"), got


async def test_keys_need_an_access_token(c: Client) -> None:
    for path in ("/keys/upload", "/keys/query", "/keys/claim", "/keys/signatures/upload",
                 "/keys/device_signing/upload"):
        status, body = await c.request("POST", path, {})
        assert status == 401 and body["errcode"] == "M_MISSING_TOKEN"


async def test_logout_and_delete_remove_keys(c: Client) -> None:
    alice = await c.register()
    phone = await login(c, alice, "PHONE")
    for u in (alice, phone):
        d = new_device(u)
        assert (await upload(c, u, {"device_keys": d.device_keys(),
                                    "one_time_keys": d.one_time_keys(3)}))[0] == 200
    assert set((await query(c, alice, {alice.user_id: []}))["device_keys"][alice.user_id]) == {
        alice.device_id, "PHONE"}
    status, _ = await c.request("POST", "/logout", {}, phone.access_token)
    assert status == 200
    assert set((await query(c, alice, {alice.user_id: []}))["device_keys"][alice.user_id]) == {
        alice.device_id}
    got = await claim(c, alice, {alice.user_id: {"PHONE": "signed_curve25519"}})
    assert got["one_time_keys"] == {}
    # the same device id logging in again starts clean and may upload new keys
    phone = await login(c, alice, "PHONE")
    d = new_device(phone)
    assert (await upload(c, phone, {"device_keys": d.device_keys()}))[0] == 200


async def test_concurrent_claims_never_hand_a_key_out_twice(c: Client) -> None:
    alice = await c.register()
    dev = new_device(alice)
    otks = dev.one_time_keys(30)
    assert (await upload(c, alice, {"device_keys": dev.device_keys(),
                                    "one_time_keys": otks}))[0] == 200
    claimers = [await c.register() for _ in range(8)]
    want = {alice.user_id: {alice.device_id: "signed_curve25519"}}

    async def one(u: Any) -> list[str]:
        out = []
        for _ in range(5):
            got = (await claim(c, u, want))["one_time_keys"]
            out.extend(got.get(alice.user_id, {}).get(alice.device_id, {}))
        return out

    results = await asyncio.gather(*(one(u) for u in claimers))
    claimed = [k for r in results for k in r]
    assert len(claimed) == len(set(claimed)) == 30  # 40 claims, 30 keys, no fallback
    assert set(claimed) == set(otks)
