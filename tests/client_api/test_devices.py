"""/devices: list, get, rename, delete with user-interactive auth."""

from __future__ import annotations

import secrets
import time
from typing import Any

from tests.conftest import Server
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


async def _db_device(server: Server, user_id: str, device_id: str) -> Any:
    hs = server.hs
    async with hs.db.connection() as conn:
        return await hs.devices._store.device(conn, user_id, device_id)


async def test_last_seen_tracks_requests(c: Client, server: Server) -> None:
    local = "seen" + secrets.token_hex(5)
    u = await c.register(local, device_id="SEEN1")
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "user": local, "password": "pw-secret-1",
        "device_id": "SEEN2"})
    assert status == 200
    other = body["access_token"]
    # Make the stored login-time values old, so fresh in-memory ones are distinguishable.
    await server.hs.last_seen.flush()
    async with server.hs.db.connection() as conn:
        await conn.execute("UPDATE devices SET last_seen_ts = 1000, last_seen_ip = '10.0.0.1'"
                           " WHERE user_id = $1", u.user_id)
    status, _ = await c.request("GET", "/account/whoami", token=u.access_token)
    assert status == 200
    now = time.time() * 1000
    status, body = await c.request("GET", "/devices", token=u.access_token)
    assert status == 200
    devices = {d["device_id"]: d for d in body["devices"]}
    assert abs(devices["SEEN1"]["last_seen_ts"] - now) < 5_000
    assert devices["SEEN1"]["last_seen_ip"] == "127.0.0.1"
    # The second device has made no request since: its values are its own.
    assert devices["SEEN2"]["last_seen_ts"] == 1000
    assert devices["SEEN2"]["last_seen_ip"] == "10.0.0.1"
    status, body = await c.request("GET", "/devices/SEEN1", token=u.access_token)
    assert abs(body["last_seen_ts"] - now) < 5_000
    # A request from the second device updates only it.
    status, body = await c.request("GET", "/devices/SEEN2", token=other)
    assert status == 200
    assert abs(body["last_seen_ts"] - now) < 5_000
    assert body["last_seen_ip"] == "127.0.0.1"

    # The flush writes the in-memory values to the DB.
    await server.hs.last_seen.flush()
    for dev in ("SEEN1", "SEEN2"):
        row = await _db_device(server, u.user_id, dev)
        assert abs(row["last_seen_ts"] - now) < 5_000
        assert row["last_seen_ip"] == "127.0.0.1"


async def test_last_seen_flush_does_not_resurrect_deleted_device(
        c: Client, server: Server) -> None:
    local = "gone" + secrets.token_hex(5)
    u = await c.register(local, device_id="KEEP")
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "user": local, "password": "pw-secret-1",
        "device_id": "GONE"})
    assert status == 200
    gone = body["access_token"]
    status, _ = await c.request("GET", "/account/whoami", token=gone)
    assert status == 200
    # Once flushed, the device's next value waits in memory for the interval to pass.
    await server.hs.last_seen.flush()
    status, _ = await c.request("GET", "/account/whoami", token=gone)
    assert status == 200
    # Delete the device directly, as if a late flush raced the deletion: the pending value
    # stays in memory, and the flush must match no row.
    async with server.hs.db.connection() as conn:
        await server.hs.devices._store.delete_devices(conn, u.user_id, ["GONE"])
    assert (u.user_id, "GONE") in server.hs.last_seen._seen
    await server.hs.last_seen.flush()
    assert await _db_device(server, u.user_id, "GONE") is None
    status, body = await c.request("GET", "/devices", token=u.access_token)
    assert [d["device_id"] for d in body["devices"]] == ["KEEP"]
    status, _ = await c.request("GET", "/devices/GONE", token=u.access_token)
    assert status == 404
    # Deleting through the API drops the pending value too.
    status, _ = await c.request("GET", "/account/whoami", token=u.access_token)
    await server.hs.devices.delete_devices(u.user_id, ["KEEP"])
    assert (u.user_id, "KEEP") not in server.hs.last_seen._seen
    await server.hs.last_seen.flush()
    assert await _db_device(server, u.user_id, "KEEP") is None
