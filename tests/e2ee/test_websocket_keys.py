"""The WebSocket sync carries the same e2ee fields as /sync: device_lists pushed when a room
member's keys change, and the syncing device's one-time key counts."""

from __future__ import annotations

from typing import Any

from tests.client_api.test_websocket import Socket, ws_url
from tests.conftest import Server
from tests.e2ee.keys import new_device, upload
from tests.helpers import Client


async def test_socket_pushes_device_list_changes_and_counts(c: Client, server: Server) -> None:
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    dev = new_device(alice)
    assert (await upload(c, alice, {"one_time_keys": dev.one_time_keys(7)}))[0] == 200
    ws = await c.session.ws_connect(ws_url(server),
                                    headers={"Authorization": f"Bearer {alice.access_token}"})
    try:
        sock = Socket(ws)
        first = await sock.batch()
        assert first["device_one_time_keys_count"] == {"signed_curve25519": 7}
        assert (await upload(c, bob, {"device_keys": new_device(bob).device_keys()}))[0] == 200

        def changed(b: dict[str, Any]) -> bool:
            return bob.user_id in b.get("device_lists", {}).get("changed", [])

        pushed = await sock.until(changed)
        assert pushed["device_one_time_keys_count"] == {"signed_curve25519": 7}
        assert "device_unused_fallback_key_types" in pushed
    finally:
        await ws.close()
