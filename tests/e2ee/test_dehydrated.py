"""Dehydrated devices (MSC3814): put, get, replace, delete; the device gets to-device messages
and one-time key claims like any other, and its inbox is read without being consumed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2ee.keys import claim, new_device, query
from tests.helpers import Client, User

U = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"


def body_for(user: User, device_id: str, **extra: Any) -> dict[str, Any]:
    dev = new_device(User(user.user_id, "", device_id))
    return {"device_id": device_id, "initial_device_display_name": "Backup device",
            "device_data": {"algorithm": "org.matrix.msc3814.v1.olm", "device_pickle": "abc"},
            "device_keys": dev.device_keys(), "one_time_keys": dev.one_time_keys(3),
            "fallback_keys": {"signed_curve25519:FB": dev.sign({"key": "k", "fallback": True})},
            **extra}


async def test_lifecycle(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    status, body = await c.request("GET", U, token=alice.access_token)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("PUT", U, body_for(alice, "DEHYD1"), alice.access_token)
    assert status == 200 and body == {"device_id": "DEHYD1"}
    status, body = await c.request("GET", U, token=alice.access_token)
    assert status == 200 and body == {
        "device_id": "DEHYD1",
        "device_data": {"algorithm": "org.matrix.msc3814.v1.olm", "device_pickle": "abc"}}
    # others see its keys and can claim its one-time keys
    q = await query(c, bob, {alice.user_id: []})
    assert "DEHYD1" in q["device_keys"][alice.user_id]
    got = await claim(c, bob, {alice.user_id: {"DEHYD1": "signed_curve25519"}})
    assert len(got["one_time_keys"][alice.user_id]["DEHYD1"]) == 1
    # not listed among the user's sessions
    status, devs = await c.request("GET", "/devices", token=alice.access_token)
    assert "DEHYD1" not in {d["device_id"] for d in devs["devices"]}

    # a new one replaces it
    status, body = await c.request("PUT", U, body_for(alice, "DEHYD2"), alice.access_token)
    assert status == 200
    q = await query(c, bob, {alice.user_id: []})
    assert "DEHYD1" not in q["device_keys"][alice.user_id]
    assert "DEHYD2" in q["device_keys"][alice.user_id]
    status, body = await c.request("DELETE", U, token=alice.access_token)
    assert status == 200 and body == {"device_id": "DEHYD2"}
    assert (await c.request("GET", U, token=alice.access_token))[0] == 404
    assert (await c.request("DELETE", U, token=alice.access_token))[0] == 404
    q = await query(c, bob, {alice.user_id: []})
    assert q["device_keys"][alice.user_id] == {}


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_events_are_read_in_batches_and_not_consumed(c: Client, method: str) -> None:
    alice, bob = await c.register(), await c.register()
    assert (await c.request("PUT", U, body_for(alice, "DH"), alice.access_token))[0] == 200
    for i in range(3):
        status, _ = await c.request(
            "PUT", f"/sendToDevice/m.room_key_test/t{i}",
            {"messages": {alice.user_id: {"DH": {"i": i}}}}, bob.access_token)
        assert status == 200

    async def read(next_batch: str | None) -> dict[str, Any]:
        if method == "POST":
            body = {"next_batch": next_batch} if next_batch else {}
            status, got = await c.request("POST", f"{U}/DH/events", body, alice.access_token)
        else:
            params = {"next_batch": next_batch} if next_batch else None
            status, got = await c.request("GET", f"{U}/DH/events", token=alice.access_token,
                                          params=params)
        assert status == 200, got
        return dict(got)

    first = await read(None)
    assert [e["content"]["i"] for e in first["events"]] == [0, 1, 2]
    assert first["events"][0]["sender"] == bob.user_id
    last = await read(first["next_batch"])
    assert last["events"] == []
    # reading again from the start gives them again (an interrupted rehydration restarts)
    assert len((await read(None))["events"]) == 3


async def test_errors(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    assert (await c.request("PUT", U, body_for(alice, "DH"), alice.access_token))[0] == 200
    status, body = await c.request("POST", f"{U}/OTHER/events", {}, alice.access_token)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    status, body = await c.request("POST", f"{U}/DH/events", {}, bob.access_token)
    assert status == 403
    status, body = await c.request("POST", f"{U}/DH/events", {"next_batch": "x"},
                                   alice.access_token)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    bad_bodies = [
        {k: v for k, v in body_for(alice, "D3").items() if k != "device_keys"},
        {**body_for(alice, "D4"), "device_data": "x"},
        {**body_for(alice, "D5"), "device_id": 5},
        {**body_for(alice, "D6"), "device_keys": body_for(alice, "OTHER")["device_keys"]},
        body_for(alice, alice.device_id),  # an existing, real device
    ]
    for bad in bad_bodies:
        status, body = await c.request("PUT", U, bad, alice.access_token)
        assert status == 400, body
    # nothing changed: the first one is still there
    status, body = await c.request("GET", U, token=alice.access_token)
    assert body["device_id"] == "DH"
