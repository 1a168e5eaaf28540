"""/devices: list, get, rename, delete with user-interactive auth."""

from __future__ import annotations

import secrets

from tests.helpers import Client


async def test_device_lifecycle(c: Client) -> None:
    local = "dev" + secrets.token_hex(5)
    u = await c.register(local, device_id="FIRSTDEV")
    status, second = await c.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": local},
        "password": "pw-secret-1", "device_id": "SECONDDEV",
        "initial_device_display_name": "phone"})
    assert status == 200

    status, body = await c.request("GET", "/devices", token=u.access_token)
    assert status == 200
    devices = {d["device_id"]: d for d in body["devices"]}
    assert set(devices) == {"FIRSTDEV", "SECONDDEV"}
    assert devices["SECONDDEV"]["display_name"] == "phone"
    assert devices["SECONDDEV"]["user_id"] == u.user_id
    assert isinstance(devices["SECONDDEV"]["last_seen_ts"], int)

    status, body = await c.request("GET", "/devices/SECONDDEV", token=u.access_token)
    assert status == 200
    assert body["device_id"] == "SECONDDEV"
    assert body["display_name"] == "phone"

    status, body = await c.request("GET", "/devices/NOSUCHDEV", token=u.access_token)
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"

    status, body = await c.request("PUT", "/devices/SECONDDEV", {"display_name": "tablet"},
                                   token=u.access_token)
    assert status == 200
    assert body == {}
    status, body = await c.request("GET", "/devices/SECONDDEV", token=u.access_token)
    assert body["display_name"] == "tablet"
    status, body = await c.request("PUT", "/devices/NOSUCHDEV", {"display_name": "x"},
                                   token=u.access_token)
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"

    # Deleting needs UIA.
    status, body = await c.request("DELETE", "/devices/SECONDDEV", token=u.access_token)
    assert status == 401
    assert body["flows"] == [{"stages": ["m.login.password"]}]
    session = body["session"]
    status, body = await c.request("DELETE", "/devices/SECONDDEV", {
        "auth": {"type": "m.login.password", "session": session, "password": "bad",
                 "identifier": {"type": "m.id.user", "user": local}}}, token=u.access_token)
    assert status == 401
    assert body["errcode"] == "M_FORBIDDEN"
    status, body = await c.request("GET", "/account/whoami", token=second["access_token"])
    assert status == 200
    status, body = await c.request("DELETE", "/devices/SECONDDEV", {
        "auth": {"type": "m.login.password", "session": session, "password": "pw-secret-1",
                 "identifier": {"type": "m.id.user", "user": local}}}, token=u.access_token)
    assert status == 200, body
    assert body == {}
    status, body = await c.request("GET", "/account/whoami", token=second["access_token"])
    assert status == 401
    assert body["errcode"] == "M_UNKNOWN_TOKEN"
    status, body = await c.request("GET", "/devices", token=u.access_token)
    assert [d["device_id"] for d in body["devices"]] == ["FIRSTDEV"]
    status, body = await c.request("GET", "/devices/SECONDDEV", token=u.access_token)
    assert status == 404


async def test_other_users_devices_invisible(c: Client) -> None:
    a = await c.register(device_id="ADEV")
    b = await c.register(device_id="BDEV")
    status, body = await c.request("GET", "/devices/BDEV", token=a.access_token)
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("DELETE", "/devices/BDEV", {
        "auth": {"type": "m.login.password", "password": "pw-secret-1",
                 "identifier": {"type": "m.id.user", "user": a.user_id}}}, token=a.access_token)
    assert status == 404
    status, _ = await c.request("GET", "/account/whoami", token=b.access_token)
    assert status == 200


async def test_delete_devices_bulk(c: Client) -> None:
    local = "bulk" + secrets.token_hex(5)
    u = await c.register(local, device_id="KEEP")
    tokens = []
    for dev in ("D1", "D2"):
        status, body = await c.request("POST", "/login", {
            "type": "m.login.password", "user": local, "password": "pw-secret-1",
            "device_id": dev})
        assert status == 200
        tokens.append(body["access_token"])
    status, body = await c.request("POST", "/delete_devices", {"devices": ["D1", "D2"]},
                                   token=u.access_token)
    assert status == 401
    status, body = await c.request("POST", "/delete_devices", {
        "devices": ["D1", "D2"],
        "auth": {"type": "m.login.password", "session": body["session"],
                 "password": "pw-secret-1", "identifier": {"type": "m.id.user", "user": local}}},
        token=u.access_token)
    assert status == 200, body
    for tok in tokens:
        status, body = await c.request("GET", "/account/whoami", token=tok)
        assert status == 401
    status, body = await c.request("GET", "/devices", token=u.access_token)
    assert [d["device_id"] for d in body["devices"]] == ["KEEP"]
