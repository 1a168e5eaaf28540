"""A deactivated account leaves no keys behind: devices and their keys, cross-signing keys and
key backups go, and users sharing a room are told."""

from __future__ import annotations

from tests.conftest import Server
from tests.e2ee.keys import new_cross_signing, new_device, query, upload
from tests.e2ee.test_device_lists import lists, shared_room
from tests.helpers import Client


async def test_deactivation_removes_keys_and_backups(c: Client, server: Server) -> None:
    alice, bob = await c.register(), await c.register()
    await shared_room(c, alice, bob)
    assert (await upload(c, alice, {"device_keys": new_device(alice).device_keys()}))[0] == 200
    status, _ = await c.request("POST", "/keys/device_signing/upload",
                                new_cross_signing(alice.user_id).upload_body(),
                                alice.access_token)
    assert status == 200
    status, body = await c.request("POST", "/room_keys/version", {
        "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
        "auth_data": {"public_key": "A" * 42 + "E"}}, alice.access_token)
    assert status == 200, body
    b0 = (await c.sync(bob))["next_batch"]
    status, body = await c.request("POST", "/account/deactivate", {
        "auth": {"type": "m.login.password", "password": "pw-secret-1",
                 "identifier": {"type": "m.id.user", "user": alice.user_id}}},
        alice.access_token)
    assert status == 200, body
    q = await query(c, bob, {alice.user_id: []})
    assert q["device_keys"][alice.user_id] == {}
    assert q["master_keys"] == {} and q["self_signing_keys"] == {}
    assert alice.user_id in lists(await c.sync(bob, since=b0))[0] + \
        lists(await c.sync(bob, since=b0))[1]
    live = await server.hs.db.fetchval(
        "SELECT count(*) FROM room_key_backup_versions WHERE user_id = $1 AND NOT deleted",
        alice.user_id)
    assert live == 0
