"""device_lists in /sync and /keys/changes: a change of someone's devices or keys reaches
exactly the users who share a room with them; joins and leaves of shared rooms count too."""

from __future__ import annotations

from typing import Any

from tests.e2ee.keys import login, new_cross_signing, new_device, upload
from tests.helpers import Client, User


def lists(sync: dict[str, Any]) -> tuple[list[str], list[str]]:
    dl = sync.get("device_lists", {})
    return dl.get("changed", []), dl.get("left", [])


async def shared_room(c: Client, *users: User) -> str:
    room = await c.create_room(users[0], preset="public_chat")
    for u in users[1:]:
        await c.join(u, room)
    return room


async def test_key_upload_reaches_room_members_only(c: Client) -> None:
    alice, bob, stranger = await c.register(), await c.register(), await c.register()
    await shared_room(c, alice, bob)
    a0 = (await c.sync(alice))["next_batch"]
    s0 = (await c.sync(stranger))["next_batch"]
    b0 = (await c.sync(bob))["next_batch"]
    dev = new_device(bob)
    assert (await upload(c, bob, {"device_keys": dev.device_keys()}))[0] == 200
    got = await c.sync(alice, since=a0, timeout=5000)
    assert lists(got) == ([bob.user_id], [])
    # an empty list is left out, as the reference server does (SyTest relies on it)
    assert got["device_lists"] == {"changed": [bob.user_id]}, got["device_lists"]
    assert lists(await c.sync(stranger, since=s0)) == ([], [])
    # the user's own other devices learn of it too
    assert bob.user_id in lists(await c.sync(bob, since=b0))[0]
    # and /keys/changes between the same tokens says the same
    status, body = await c.request("GET", "/keys/changes", token=alice.access_token,
                                   params={"from": a0, "to": got["next_batch"]})
    assert status == 200 and body == {"changed": [bob.user_id], "left": []}
    # one-time keys alone are not a device list change
    a1 = got["next_batch"]
    assert (await upload(c, bob, {"one_time_keys": dev.one_time_keys(2)}))[0] == 200
    assert lists(await c.sync(alice, since=a1)) == ([], [])


async def test_a_long_poll_wakes_on_a_device_change(c: Client) -> None:
    import asyncio
    import time
    alice, bob = await c.register(), await c.register()
    await shared_room(c, alice, bob)
    a0 = (await c.sync(alice))["next_batch"]
    poll = asyncio.create_task(c.sync(alice, since=a0, timeout=10000))
    await asyncio.sleep(0.2)
    start = time.monotonic()
    assert (await upload(c, bob, {"device_keys": new_device(bob).device_keys()}))[0] == 200
    got = await poll
    assert time.monotonic() - start < 5
    assert lists(got)[0] == [bob.user_id]


async def test_new_and_deleted_devices(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    await shared_room(c, alice, bob)
    a0 = (await c.sync(alice))["next_batch"]
    laptop = await login(c, bob, "LAPTOP")
    assert (await upload(c, laptop, {"device_keys": new_device(laptop).device_keys()}))[0] == 200
    a1 = (await c.sync(alice, since=a0))
    assert lists(a1)[0] == [bob.user_id]
    status, _ = await c.request("POST", "/logout", {}, laptop.access_token)
    assert status == 200
    assert lists(await c.sync(alice, since=a1["next_batch"]))[0] == [bob.user_id]
    # deleting a device through /devices (with auth) is a change too
    phone = await login(c, bob, "PHONE")
    a2 = (await c.sync(alice))["next_batch"]
    status, body = await c.request("DELETE", "/devices/PHONE", {
        "auth": {"type": "m.login.password", "password": "pw-secret-1",
                 "identifier": {"type": "m.id.user", "user": bob.user_id}}},
        bob.access_token)
    assert status == 200, body
    assert lists(await c.sync(alice, since=a2))[0] == [bob.user_id]
    del phone


async def test_joins_and_leaves_of_shared_rooms(c: Client) -> None:
    alice, bob, carol = await c.register(), await c.register(), await c.register()
    room = await shared_room(c, alice, bob)
    a0 = (await c.sync(alice))["next_batch"]
    await c.join(carol, room)
    got = await c.sync(alice, since=a0)
    assert lists(got) == ([carol.user_id], [])
    # carol, newly in the room, hears of everyone there
    c0 = (await c.sync(carol))["next_batch"]
    room2 = await c.create_room(alice, preset="public_chat")
    await c.join(carol, room2)  # carol joins a second room with alice: changed for both
    changed, _ = lists(await c.sync(carol, since=c0))
    assert alice.user_id in changed
    a1 = got["next_batch"]
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, carol.access_token)
    assert status == 200
    # carol still shares room2 with alice: not "left"
    assert carol.user_id not in lists(await c.sync(alice, since=a1))[1]
    a2 = (await c.sync(alice))["next_batch"]
    status, _ = await c.request("POST", f"/rooms/{room2}/leave", {}, carol.access_token)
    assert status == 200
    assert lists(await c.sync(alice, since=a2)) == ([], [carol.user_id])


async def test_own_join_and_leave(c: Client) -> None:
    alice, bob, carol = await c.register(), await c.register(), await c.register()
    room = await shared_room(c, bob, carol)
    a0 = (await c.sync(alice))["next_batch"]
    await c.join(alice, room)
    changed, left = lists(await c.sync(alice, since=a0))
    assert {bob.user_id, carol.user_id} <= set(changed) and left == []
    a1 = (await c.sync(alice))["next_batch"]
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, alice.access_token)
    assert status == 200
    changed, left = lists(await c.sync(alice, since=a1))
    assert set(left) == {bob.user_id, carol.user_id}


async def test_cross_signing_upload_is_a_change(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    await shared_room(c, alice, bob)
    a0 = (await c.sync(alice))["next_batch"]
    cs = new_cross_signing(bob.user_id)
    status, body = await c.request("POST", "/keys/device_signing/upload", cs.upload_body(),
                                   bob.access_token)
    assert status == 200, body
    assert lists(await c.sync(alice, since=a0))[0] == [bob.user_id]


async def test_keys_changes_validates_tokens(c: Client) -> None:
    alice = await c.register()
    status, body = await c.request("GET", "/keys/changes", token=alice.access_token,
                                   params={"from": "s0"})
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"
    status, body = await c.request("GET", "/keys/changes", token=alice.access_token,
                                   params={"from": "bogus", "to": "s1"})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"


async def test_sync_carries_key_counts_for_the_syncing_device(c: Client) -> None:
    alice = await c.register()
    phone = await login(c, alice, "PHONE2")
    dev = new_device(alice)
    assert (await upload(c, alice, {"one_time_keys": dev.one_time_keys(4)}))[0] == 200
    assert (await c.sync(alice))["device_one_time_keys_count"] == {"signed_curve25519": 4}
    assert (await c.sync(phone))["device_one_time_keys_count"] == {"signed_curve25519": 0}


async def test_a_new_login_is_a_change_for_own_devices_and_room_members(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    await shared_room(c, alice, bob)
    a0 = (await c.sync(alice))["next_batch"]
    b0 = (await c.sync(bob))["next_batch"]
    await login(c, bob, "TABLET")
    assert lists(await c.sync(alice, since=a0))[0] == [bob.user_id]
    assert bob.user_id in lists(await c.sync(bob, since=b0))[0]
    # logging in again on the same device is no change
    a1 = (await c.sync(alice))["next_batch"]
    await login(c, bob, "TABLET")
    assert lists(await c.sync(alice, since=a1)) == ([], [])


async def test_user_signing_changes_reach_only_the_users_own_devices(c: Client) -> None:
    from tests.e2ee.keys import sign_with
    alice, bob = await c.register(), await c.register()
    alice_phone = await login(c, alice, "APHONE")
    await shared_room(c, alice, bob)
    a_cs, b_cs = new_cross_signing(alice.user_id), new_cross_signing(bob.user_id)
    body = a_cs.upload_body()
    usk = body.pop("user_signing_key")
    for u, b in ((alice, body), (bob, b_cs.upload_body())):
        status, got = await c.request("POST", "/keys/device_signing/upload", b, u.access_token)
        assert status == 200, got
    b0 = (await c.sync(bob))["next_batch"]
    p0 = (await c.sync(alice_phone))["next_batch"]
    status, got = await c.request("POST", "/keys/device_signing/upload", {
        "user_signing_key": usk,
        "auth": {"type": "m.login.password", "password": "pw-secret-1",
                 "identifier": {"type": "m.id.user", "user": alice.user_id}}},
        alice.access_token)
    assert status == 200, got
    signed = sign_with(b_cs.key_obj("master"), alice.user_id, a_cs.user_signing)
    status, got = await c.request("POST", "/keys/signatures/upload", {
        bob.user_id: {b_cs.pub(b_cs.master): signed}}, alice.access_token)
    assert status == 200 and got == {"failures": {}}, got
    # alice's devices hear of her new user-signing key and of bob, whom she verified
    assert {alice.user_id, bob.user_id} <= set(lists(await c.sync(alice_phone, since=p0))[0])
    # bob hears of neither
    assert lists(await c.sync(bob, since=b0))[0] == []


async def test_an_invitee_appears_in_changed(c: Client) -> None:
    """Someone invited into a room the user is in comes in device_lists.changed (clients
    encrypt to invited members too), before they join."""
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(alice, preset="private_chat")
    a0 = (await c.sync(alice))["next_batch"]
    status, body = await c.request("POST", f"/rooms/{room}/invite", {"user_id": bob.user_id},
                                   alice.access_token)
    assert status == 200, body
    got = await c.sync(alice, since=a0, timeout=5000)
    assert lists(got) == ([bob.user_id], [])
    status, body = await c.request("GET", "/keys/changes", token=alice.access_token,
                                   params={"from": a0, "to": got["next_batch"]})
    assert status == 200 and body["changed"] == [bob.user_id], body
