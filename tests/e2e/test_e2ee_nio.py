"""End-to-end encryption through matrix-nio's Olm/Megolm machine (vodozemac underneath): the server
only stores and hands out keys, so every assertion here is about what a real crypto client can
decrypt after talking to us. Each client keeps its crypto store in the test's temp dir.

nio drives /keys/upload, /keys/query and /keys/claim itself and shares room keys over to-device
Olm messages; the tests call those steps explicitly (as nio's sync_forever would) so each server
answer is checked where it is used."""

from __future__ import annotations

from nio import (
    DeleteDevicesAuthResponse,
    DeleteDevicesResponse,
    JoinResponse,
    LogoutResponse,
    MegolmEvent,
    RoomInviteResponse,
    RoomLeaveResponse,
)

from tests.e2e.conftest import PASSWORD
from tests.e2e.nio_crypto import MEGOLM, Crypto, CryptoFactory, encrypted_room
from tests.helpers import Client


async def test_messages_decrypt_both_ways_and_the_server_keeps_only_ciphertext(
        e2ee: CryptoFactory, raw: Client) -> None:
    alice, bob = await e2ee("alice"), await e2ee("bob")
    room_id = await encrypted_room(alice, bob)
    bob_keys_before = bob.syncs[-1].device_key_count.signed_curve25519
    assert bob_keys_before == bob.c.olm.account.max_one_time_keys

    event_id = await alice.send(room_id, "the eagle lands at noon")
    # room_send queried bob's device keys and claimed one of his one-time keys for the Olm
    # session that carried the room key.
    assert alice.queries and bob.device_id in alice.queries[-1].device_keys[bob.user_id]
    claimed = [r.one_time_keys.get(bob.user_id, {}).get(bob.device_id) for r in alice.claims]
    assert len(claimed) == 1 and claimed[0], alice.claims
    (key_id,) = claimed[0]
    assert key_id.startswith("signed_curve25519:")

    got = await bob.decrypted(room_id, "the eagle lands at noon")
    assert got.event_id == event_id and got.sender == alice.user_id
    # The claim used up exactly one of bob's keys, as his next sync counts.
    assert bob.syncs[-1].device_key_count.signed_curve25519 == bob_keys_before - 1

    status, stored = await raw.request("GET", f"/rooms/{room_id}/event/{event_id}",
                                       token=bob.c.access_token)
    assert status == 200, stored
    assert stored["type"] == "m.room.encrypted" and stored["content"]["algorithm"] == MEGOLM
    assert "noon" not in str(stored)

    await bob.send(room_id, "copy that")
    assert (await alice.decrypted(room_id, "copy that")).sender == bob.user_id


async def test_a_device_that_logs_in_later_gets_the_next_room_key(
        e2ee: CryptoFactory, raw: Client) -> None:
    alice, bob = await e2ee("alice"), await e2ee("bob")
    room_id = await encrypted_room(alice, bob)
    await alice.send(room_id, "before the second device")
    await bob.decrypted(room_id, "before the second device")
    before = (await alice.sync()).next_batch

    bob_syncs_before = len(bob.syncs)
    bob2 = await e2ee(user_id=bob.user_id)
    assert bob2.device_id != bob.device_id
    # Alice's next sync says bob's device list changed, so nio asks for his keys again.
    resp = await alice.sync()
    assert bob.user_id in resp.device_list.changed, resp.device_list
    status, changes = await raw.request("GET", "/keys/changes", token=alice.c.access_token,
                                        params={"from": before, "to": resp.next_batch})
    assert status == 200 and bob.user_id in changes["changed"], changes
    query = await alice.query_keys()
    assert set(query.device_keys[bob.user_id]) == {bob.device_id, bob2.device_id}
    assert {d.id for d in alice.c.device_store.active_user_devices(bob.user_id)} == {
        bob.device_id, bob2.device_id}

    await bob2.sync()
    await alice.send(room_id, "after the second device")
    got = await bob2.decrypted(room_id, "after the second device")
    assert got.sender == alice.user_id
    await bob.decrypted(room_id, "after the second device")
    # The second device's history from before it existed stays unreadable to it: a megolm
    # event it cannot decrypt, not cleartext.
    hist = await bob2.c.room_messages(room_id, start=bob2.c.next_batch or "", limit=20)
    bodies = [getattr(e, "body", None) for e in hist.chunk]
    assert "before the second device" not in bodies
    assert any(isinstance(e, MegolmEvent) for e in hist.chunk)

    # Bob's first device learns of his new one the same way (his own user is in
    # device_lists.changed) and shares its own room key with it.
    later = bob.syncs[bob_syncs_before:]
    assert any(bob.user_id in r.device_list.changed for r in later), [
        r.device_list for r in later]
    await bob.query_keys()
    assert bob2.device_id in bob.c.device_store[bob.user_id]
    await bob.send(room_id, "from bob's first device")
    await bob2.decrypted(room_id, "from bob's first device")
    await alice.decrypted(room_id, "from bob's first device")


async def test_a_deleted_device_disappears_from_key_queries(e2ee: CryptoFactory,
                                                            raw: Client) -> None:
    alice, bob = await e2ee("alice"), await e2ee("bob")
    room_id = await encrypted_room(alice, bob)
    bob2 = await e2ee(user_id=bob.user_id)
    await alice.sync()
    await alice.query_keys()
    assert bob2.device_id in alice.c.device_store[bob.user_id]

    first = await bob.c.delete_devices([bob2.device_id])
    assert isinstance(first, DeleteDevicesAuthResponse), first
    auth = {"type": "m.login.password", "session": first.session,
            "identifier": {"type": "m.id.user", "user": bob.user_id}, "password": PASSWORD}
    deleted = await bob.c.delete_devices([bob2.device_id], auth)
    assert isinstance(deleted, DeleteDevicesResponse), deleted

    resp = await alice.sync()
    assert bob.user_id in resp.device_list.changed, resp.device_list
    query = await alice.query_keys()
    assert list(query.device_keys[bob.user_id]) == [bob.device_id]
    assert [d.id for d in alice.c.device_store.active_user_devices(bob.user_id)] == [
        bob.device_id]
    status, body = await raw.request("POST", "/keys/claim",
                                     {"one_time_keys": {bob.user_id: {
                                         bob2.device_id: "signed_curve25519"}}},
                                     token=alice.c.access_token)
    assert status == 200 and body["one_time_keys"] == {}, body

    # The next room key goes to the device that is left, and it still decrypts.
    await alice.send(room_id, "only one device now")
    await bob.decrypted(room_id, "only one device now")


async def test_a_device_that_logs_out_disappears_from_key_queries(e2ee: CryptoFactory) -> None:
    alice, bob = await e2ee("alice"), await e2ee("bob")
    room_id = await encrypted_room(alice, bob)
    bob2 = await e2ee(user_id=bob.user_id)
    await alice.sync()
    await alice.query_keys()
    assert bob2.device_id in alice.c.device_store[bob.user_id]

    assert isinstance(await bob2.c.logout(), LogoutResponse)
    resp = await alice.sync()
    assert bob.user_id in resp.device_list.changed, resp.device_list
    query = await alice.query_keys()
    assert list(query.device_keys[bob.user_id]) == [bob.device_id]
    await alice.send(room_id, "after the logout")
    await bob.decrypted(room_id, "after the logout")


async def test_one_time_keys_are_topped_up_and_never_handed_out_twice(
        e2ee: CryptoFactory) -> None:
    """nio uploads fresh one-time keys when sync reports fewer than it wants: the count the
    server reports is back to the maximum, and the next claim gets a key not handed out before."""
    alice, bob, carol = await e2ee("alice"), await e2ee("bob"), await e2ee("carol")
    room_id = await encrypted_room(alice, bob)
    await alice.send(room_id, "one")
    await bob.decrypted(room_id, "one")
    count = bob.syncs[-1].device_key_count.signed_curve25519
    assert count == bob.c.olm.account.max_one_time_keys - 1
    up = await bob.upload_keys()
    assert up.signed_curve25519_count == bob.c.olm.account.max_one_time_keys
    assert (await bob.sync()).device_key_count.signed_curve25519 == up.signed_curve25519_count

    invited = await alice.c.room_invite(room_id, carol.user_id)
    assert isinstance(invited, RoomInviteResponse), invited
    assert isinstance(await carol.c.join(room_id), JoinResponse)
    await carol.sync()
    await carol.send(room_id, "two")
    assert (await bob.decrypted(room_id, "two")).sender == carol.user_id

    def bobs_keys(d: Crypto) -> list[str]:
        return [k for r in d.claims
                for k in r.one_time_keys.get(bob.user_id, {}).get(bob.device_id, {})]

    assert len(bobs_keys(alice)) == 1 and len(bobs_keys(carol)) == 1
    assert bobs_keys(alice) != bobs_keys(carol)


async def test_device_lists_follow_who_shares_an_encrypted_room(e2ee: CryptoFactory) -> None:
    """A user who starts sharing a room shows up in device_lists.changed (so nio fetches the
    keys before its next room key goes out), one who no longer shares any room in .left."""
    alice, bob = await e2ee("alice"), await e2ee("bob")
    carol = await e2ee("carol")
    room_id = await encrypted_room(alice, bob)
    await alice.sync()
    invited = await alice.c.room_invite(room_id, carol.user_id)
    assert isinstance(invited, RoomInviteResponse), invited
    assert isinstance(await carol.c.join(room_id), JoinResponse)
    resp = await alice.sync()
    assert carol.user_id in resp.device_list.changed, resp.device_list
    await carol.sync()
    await alice.send(room_id, "hello carol")
    await carol.decrypted(room_id, "hello carol")

    assert isinstance(await carol.c.room_leave(room_id), RoomLeaveResponse)
    resp = await alice.sync()
    assert carol.user_id in resp.device_list.left, resp.device_list
    assert bob.user_id not in resp.device_list.left
    await alice.send(room_id, "carol has gone")
    await bob.decrypted(room_id, "carol has gone")
