"""A matrix-nio device with encryption on, for the E2EE tests: its own crypto store folder, and a
record of the /sync, /keys/query and /keys/claim answers nio handled (room_send makes the last two
itself), so tests can check what the server said where nio used it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    KeysClaimResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

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
