"""To-device messages: an inbox per device and the stream that delivers it through /sync.

Sending (PUT /sendToDevice) writes one row per target device, all under one stream position, in a
single transaction together with the sender's txn id (so a resend stores nothing), then wakes the
recipients. A device's sync returns its messages after `since` and, because presenting `since`
acknowledges everything at or below it, deletes those first: a response lost in transit is simply
sent again to a client that retries with the same token. At most `LIMIT` messages go out per
sync; the next_batch then stops at the last one delivered and the next sync continues from there.

Remote recipients (other server names) go to `remote` (homeserver/federation/to_device.py):
one m.direct_to_device EDU per server, queued in the same transaction as the txn id, so a
resend queues nothing and a crash loses nothing. Messages from other servers come in through
`deliver_remote`, de-duplicated by the EDU's message_id in the transaction that stores them.

A device with nothing pending is remembered (`_clean`: "no rows for it at or below this
position"), so the common sync with nothing new for this device costs no query.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import orjson

from e2ee.store import ToDeviceStore
from homeserver.errors import Codes, MatrixError
from homeserver.storage.database import Conn, Database
from homeserver.storage.streams import Stream
from homeserver.streams.notifier import Notifier
from homeserver.types import JsonDict, Requester

log = logging.getLogger(__name__)

LIMIT = 100  # messages per sync response
MAX_TARGETS = 10_000  # (user, device) entries in one request
MAX_CONTENT_BYTES = 65_536  # one message's content, serialised
TXN_MAX_AGE_MS = 24 * 3600 * 1000  # txn ids older than this are pruned (clients retry sooner)
PRUNE_EVERY = 1_000  # sends between two prunes (one indexed DELETE)


def _server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


# {server: {user_id: {device_id or "*": content}}}
ByServer = dict[str, dict[str, dict[str, JsonDict]]]


class RemoteToDevice(Protocol):
    async def queue(self, conn: Conn, sender: str, event_type: str, message_id: str,
                    by_server: ByServer) -> None:
        """Queue the messages for other servers in the caller's transaction."""
        ...

    def wake(self, servers: Iterable[str]) -> None:
        """The transaction committed: send them."""
        ...


class ToDeviceService:
    def __init__(self, db: Database, store: ToDeviceStore, notifier: Notifier,
                 stream: Stream) -> None:
        self._db = db
        self._store = store
        self._notifier = notifier
        self._stream = stream
        self._clean: dict[tuple[str, str], int] = {}
        self.prune_every = PRUNE_EVERY
        self._sends = 0
        self.remote: RemoteToDevice | None = None

    def current(self) -> int:
        return self._stream.current

    async def send(self, requester: Requester, event_type: str,
                   messages: dict[str, dict[str, JsonDict]], txn_id: str) -> None:
        """Store `messages` ({user_id: {device_id or "*": content}}) for their devices.

        Idempotent per (sender, sender's device, txn_id); unknown local users and devices are
        ignored, as the spec says; remote users' go to their servers (without federation,
        they are dropped).
        """
        user_ids: list[str] = []
        device_ids: list[str] = []
        contents: list[str] = []
        remote: ByServer = {}
        local_server = _server_of(requester.user_id)
        for user_id, by_device in messages.items():
            for device_id, content in by_device.items():
                raw = orjson.dumps(content).decode()
                if len(raw) > MAX_CONTENT_BYTES:
                    raise MatrixError(413, Codes.TOO_LARGE, "To-device message too large")
                if _server_of(user_id) != local_server:
                    remote.setdefault(_server_of(user_id), {}).setdefault(
                        user_id, {})[device_id] = content
                    continue
                user_ids.append(user_id)
                device_ids.append(device_id)
                contents.append(raw)
        if len(user_ids) > MAX_TARGETS:
            raise MatrixError(413, Codes.TOO_LARGE, "Too many to-device recipients")

        pos = await self._stream.allocate()
        recipients: set[str] = set()
        queued = False
        try:
            async with self._db.transaction() as conn:
                if await self._store.add_txn(conn, requester.user_id, requester.device_id,
                                             txn_id, pos, int(time.time() * 1000)):
                    if user_ids:
                        recipients = await self._store.insert_messages(
                            conn, pos, requester.user_id, event_type, user_ids, device_ids,
                            contents)
                    if remote and self.remote is not None:
                        message_id = f"{pos}-{secrets.token_urlsafe(8)}"
                        await self.remote.queue(conn, requester.user_id, event_type,
                                                message_id, remote)
                        queued = True
        finally:
            self._stream.finish(pos, wake=recipients)
        if queued and self.remote is not None:
            self.remote.wake(remote)
        self._sends += 1
        if self._sends >= self.prune_every:
            self._sends = 0
            try:
                await self.prune_txns()
            except Exception:  # housekeeping never fails a send
                log.exception("pruning to-device txn ids failed")

    async def deliver_remote(self, sender: str, event_type: str,
                             messages: dict[str, dict[str, JsonDict]],
                             first: Callable[[Conn], Awaitable[bool]]) -> None:
        """Messages for local devices from another server's user (the caller checked the
        sender and dropped other servers' recipients); `first` records the EDU's message id
        in the same transaction and says whether it is new (False: delivered already)."""
        user_ids, device_ids, contents = [], [], []
        for user_id, by_device in messages.items():
            for device_id, content in by_device.items():
                user_ids.append(user_id)
                device_ids.append(device_id)
                contents.append(orjson.dumps(content).decode())
        if len(user_ids) > MAX_TARGETS:
            return
        pos = await self._stream.allocate()
        recipients: set[str] = set()
        try:
            async with self._db.transaction() as conn:
                if await first(conn) and user_ids:
                    recipients = await self._store.insert_messages(
                        conn, pos, sender, event_type, user_ids, device_ids, contents)
        finally:
            self._stream.finish(pos, wake=recipients)

    async def prune_txns(self, now_ms: int | None = None) -> int:
        """Forget txn ids older than TXN_MAX_AGE_MS (a resend that late is a new message)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        async with self._db.connection() as conn:
            return await self._store.prune_txns(conn, now_ms - TXN_MAX_AGE_MS)

    async def for_device(self, user_id: str, device_id: str, since: int | None,
                         upto: int) -> tuple[list[JsonDict], int]:
        """Messages for this device in (since, upto], oldest first, after deleting those at or
        below `since` (acknowledged); with since None (initial sync) pending messages are
        returned and nothing is deleted. Returns the position next_batch must carry."""
        key = (user_id, device_id)
        if self._clean.get(key, -1) >= upto:
            return [], upto
        async with self._db.connection() as conn:
            if since is None:
                rows = await self._store.fetch(conn, user_id, device_id, upto, LIMIT + 1)
            else:
                rows = await self._store.ack_and_fetch(conn, user_id, device_id, since, upto,
                                                       LIMIT + 1)
        if not rows:
            # Nothing at or below `upto` is left, and new rows get positions above it.
            if self._clean.get(key, -1) < upto:
                self._clean[key] = upto
            return [], upto
        self._clean.pop(key, None)
        more = len(rows) > LIMIT
        rows = rows[:LIMIT]
        events = [{"type": r["type"], "sender": r["sender"],
                   "content": orjson.loads(r["content"])} for r in rows]
        return events, (rows[-1]["stream_id"] if more else upto)

    async def peek(self, user_id: str, device_id: str, after: int,
                   limit: int = LIMIT) -> tuple[list[JsonDict], int, bool]:
        """Messages for a device after `after`, deleting none (a dehydrated device's inbox is
        read by another device, which may fail half way and start again). Returns them, the
        position to continue from and whether more may follow; only positions below which
        everything committed are read."""
        upto = self._stream.current
        async with self._db.connection() as conn:
            rows = await self._store.fetch_after(conn, user_id, device_id, after, limit + 1)
        rows = [r for r in rows if r["stream_id"] <= upto]
        more = len(rows) > limit
        rows = rows[:limit]
        events = [{"type": r["type"], "sender": r["sender"],
                   "content": orjson.loads(r["content"])} for r in rows]
        return events, (rows[-1]["stream_id"] if rows else max(after, 0)), more
