"""End-to-end encryption through matrix-nio's Olm/Megolm machine (vodozemac underneath): the server
only stores and hands out keys, so every assertion here is about what a real crypto client can
decrypt after talking to us. Each client keeps its crypto store in the test's temp dir.

nio drives /keys/upload, /keys/query and /keys/claim itself and shares room keys over to-device
Olm messages; the tests call those steps explicitly (as nio's sync_forever would) so each server
answer is checked where it is used."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    DeleteDevicesAuthResponse,
    DeleteDevicesResponse,
    JoinResponse,
    KeysClaimResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    LoginResponse,
    MegolmEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

from tests.conftest import Server
from tests.e2e.conftest import PASSWORD, new_name
from tests.helpers import Client

MEGOLM = "m.megolm.v1.aes-sha2"
ENCRYPTION = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}


def e2ee_config() -> AsyncClientConfig:
    return AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False, max_timeouts=1,
                             max_limit_exceeded=0, request_timeout=30)


class Crypto:
    """One nio device with its own store folder, plus what the server told it along the way."""

    def __init__(self, client: AsyncClient) -> None:
        self.c = client
        self.syncs: list[SyncResponse] = []
        self.claims: list[KeysClaimResponse] = []
        self.queries: list[KeysQueryResponse] = []
        # nio runs its response callbacks only inside sync_forever, so watch receive_response,
        # which sees every answer, including those of room_send's own /keys calls.
        handle = client.receive_response

        async def watch(resp: Any) -> None:
            if isinstance(resp, KeysClaimResponse):
                self.claims.append(resp)
            elif isinstance(resp, KeysQueryResponse):
                self.queries.append(resp)
            await handle(resp)

        client.receive_response = watch

    @property
    def user_id(self) -> str:
        return str(self.c.user_id)

    @property
    def device_id(self) -> str:
        return str(self.c.device_id)

    async def upload_keys(self) -> KeysUploadResponse:
        assert self.c.should_upload_keys
        resp = await self.c.keys_upload()
        assert isinstance(resp, KeysUploadResponse), resp
        return resp

    async def sync(self, timeout: int = 0) -> SyncResponse:
        resp = await self.c.sync(timeout=timeout)
        assert isinstance(resp, SyncResponse), resp
        self.syncs.append(resp)
        return resp

    async def query_keys(self) -> KeysQueryResponse:
        assert self.c.should_query_keys, "nio sees no reason to query keys"
        resp = await self.c.keys_query()
        assert isinstance(resp, KeysQueryResponse), resp
        return resp

    async def send(self, room_id: str, text: str) -> str:
        # Nobody is verified in these tests; nio still shares the room key with unverified
        # devices when told to ignore (not blacklist) them.
        resp = await self.c.room_send(room_id, "m.room.message", {"msgtype": "m.text",
                                                                   "body": text},
                                      ignore_unverified_devices=True)
        assert isinstance(resp, RoomSendResponse), resp
        return str(resp.event_id)

    async def decrypted(self, room_id: str, text: str, tries: int = 8) -> RoomMessageText:
        """Syncs until `text` arrives in the room and nio decrypted it (it arrives as a megolm
        event; nio replaces it with the cleartext event only when it holds the session)."""
        seen: list[Any] = []
        for _ in range(tries):
            resp = await self.sync(timeout=2000)
            room = resp.rooms.join.get(room_id)
            for ev in room.timeline.events if room else []:
                if isinstance(ev, RoomMessageText) and ev.body == text:
                    assert ev.decrypted, f"{text!r} arrived in clear text"
                    return ev
                seen.append(ev)
        raise AssertionError(f"{self.user_id}/{self.device_id} never decrypted {text!r}; "
                             f"timeline had {seen}")


CryptoFactory = Callable[..., Awaitable[Crypto]]


@pytest.fixture
async def e2ee(server: Server, tmp_path: Path) -> AsyncIterator[CryptoFactory]:
    """Makes nio devices with encryption on: a new user (register) or a new device of an existing
    user (login); each uploads its device and one-time keys before it is handed out."""
    clients: list[AsyncClient] = []

    async def make(prefix: str = "e", user_id: str = "") -> Crypto:
        store = tmp_path / f"store{len(clients)}"
        store.mkdir()
        c = AsyncClient(server.url, user_id, store_path=str(store), config=e2ee_config())
        clients.append(c)
        if user_id:
            resp: Any = await c.login(PASSWORD, device_name="second device")
            assert isinstance(resp, LoginResponse), resp
        else:
            resp = await c.register(new_name(prefix), PASSWORD)
            assert isinstance(resp, RegisterResponse), resp
        assert c.olm is not None, "nio did not load its crypto store"
        d = Crypto(c)
        up = await d.upload_keys()
        assert up.signed_curve25519_count == c.olm.account.max_one_time_keys, up
        return d

    yield make
    for c in clients:
        await c.close()


async def encrypted_room(alice: Crypto, bob: Crypto) -> str:
    created = await alice.c.room_create(name="secret", invite=[bob.user_id],
                                        initial_state=[ENCRYPTION])
    assert isinstance(created, RoomCreateResponse), created
    joined = await bob.c.join(created.room_id)
    assert isinstance(joined, JoinResponse), joined
    await alice.sync()
    await bob.sync()
    for d in (alice, bob):
        assert d.c.rooms[created.room_id].encrypted
    return created.room_id


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
        e2ee: CryptoFactory) -> None:
    alice, bob = await e2ee("alice"), await e2ee("bob")
    room_id = await encrypted_room(alice, bob)
    await alice.send(room_id, "before the second device")
    await bob.decrypted(room_id, "before the second device")
    await alice.sync()

    bob2 = await e2ee(user_id=bob.user_id)
    assert bob2.device_id != bob.device_id
    # Alice's next sync says bob's device list changed, so nio asks for his keys again.
    resp = await alice.sync()
    assert bob.user_id in resp.device_list.changed, resp.device_list
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
