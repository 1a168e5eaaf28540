"""m.direct_to_device (server-server spec "Send-to-device messaging"): to-device messages
between servers, exactly once and in order per sender.

Out: `ToDeviceService.send` hands the messages for other servers to `queue`, in the
transaction that records the sender's txn id; each server gets one durable EDU in
`federation_edu_outbox`, whose ids keep a sender's messages in order. In: the EDU is checked
(the sender belongs to the origin; only this server's users are delivered to) and delivered
through `ToDeviceService.deliver_remote`, which records (origin, message_id) in the same
transaction, so an EDU seen twice (a retried transaction) is delivered once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from e2ee.to_device import ByServer, ToDeviceService
from homeserver.federation.edus import EduRouter
from homeserver.federation.sender import FederationSender
from homeserver.federation.serving import domain
from homeserver.federation.store import FederationStore
from homeserver.storage.database import Conn, Database
from homeserver.types import JsonDict, is_valid_user_id

MAX_MESSAGE_ID = 255
KEEP_IDS_MS = 7 * 24 * 3600 * 1000  # message ids remembered this long (retries come sooner)
PRUNE_EVERY = 1000  # received EDUs between two prunes


class FederatedToDevice:
    def __init__(self, server_name: str, db: Database, store: FederationStore,
                 sender: FederationSender, to_device: ToDeviceService) -> None:
        self.server_name = server_name
        self._db = db
        self._store = store
        self._sender = sender
        self._to_device = to_device
        self._received = 0

    def register(self, router: EduRouter) -> None:
        router.handlers["m.direct_to_device"] = self.receive
        self._to_device.remote = self

    async def queue(self, conn: Conn, sender: str, event_type: str, message_id: str,
                    by_server: ByServer) -> None:
        await self._sender.enqueue_durable(conn, [
            (server, "m.direct_to_device", {"sender": sender, "type": event_type,
                                            "message_id": message_id, "messages": messages})
            for server, messages in by_server.items()])

    def wake(self, servers: Iterable[str]) -> None:
        self._sender.wake(servers)

    async def receive(self, origin: str, content: Any) -> None:
        if not isinstance(content, dict):
            return
        sender, event_type = content.get("sender"), content.get("type")
        message_id, messages = content.get("message_id"), content.get("messages")
        if not isinstance(sender, str) or not is_valid_user_id(sender) \
                or domain(sender) != origin or not isinstance(event_type, str) \
                or not event_type or not isinstance(message_id, str) or not message_id \
                or len(message_id) > MAX_MESSAGE_ID or not isinstance(messages, dict):
            return
        mine: dict[str, dict[str, JsonDict]] = {}
        for user_id, by_device in messages.items():
            if not isinstance(user_id, str) or domain(user_id) != self.server_name \
                    or not isinstance(by_device, dict):
                continue
            ok = {d: c for d, c in by_device.items()
                  if isinstance(d, str) and d and isinstance(c, dict)}
            if ok:
                mine[user_id] = ok
        now = int(time.time() * 1000)

        async def first(conn: Conn) -> bool:
            return await self._store.first_to_device(conn, origin, message_id, now)

        await self._to_device.deliver_remote(sender, event_type, mine, first)
        self._received += 1
        if self._received >= PRUNE_EVERY:
            self._received = 0
            async with self._db.connection() as conn:
                await self._store.prune_inbound_to_device(conn, now - KEEP_IDS_MS)
