"""Device lists across servers (server-server spec "Device Management"): m.device_list_update
and m.signing_key_update both ways, the cache of remote users' devices, and
/user/devices/{userId}.

Out: every change of a local user's devices recorded for everyone (e2ee/device_lists.py)
becomes, in the same transaction, one durable EDU per device for each server sharing a room
with the user (and an m.signing_key_update for new master / self-signing keys). Each EDU has its
own `stream_id` (position * 1000 + the device's index in the change) and names the previous
one in `prev_id`, so the receiver can see a gap; /user/devices answers the latest of them.

In: updates are applied to the cached list (`remote_device_lists` / `remote_devices`) of a
user who shares a room with one of ours, one user at a time. An update whose prev_id is not
the last one applied (a gap), the first one of a user not yet cached, or one for a cache marked
stale, makes us fetch the whole list again (GET /user/devices/{userId}), in the background
(the inbound transaction does not wait for it; updates that come meanwhile make it fetch once
more when done); a fetch that fails
marks the cache stale (it is then not served, and fetched again, also after a restart). Each
applied update or resync is a change of that user in our own device list stream, so local
clients see the user in sync's `device_lists.changed`. Keys are kept as sent (clients check
them); an update whose keys claim another user or device makes us fetch the list instead.
When the last room we share with a remote user ends (ours leave, or they do), their list is
marked stale: their server stops sending updates, so it would go out of date unseen.
/user/devices reads the devices and the stream id in one snapshot (see `user_devices`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from e2ee.device_keys import DeviceKeyService
from e2ee.device_lists import CROSS_SIGNING, DeviceListService
from homeserver.federation.device_store import RemoteDeviceStore
from homeserver.federation.edus import EduRouter
from homeserver.federation.sender import FederationSender
from homeserver.federation.serving import domain, servers_of
from homeserver.federation.transport import RemoteError, Transport, Unreachable, fed_path
from homeserver.rooms.members import MembershipIndex
from homeserver.rooms.state import RoomData, RoomRegistry
from homeserver.rooms.writer import MembershipHook
from homeserver.storage.database import Conn, Database
from homeserver.types import JsonDict, is_valid_user_id

log = logging.getLogger(__name__)

PER_CHANGE = 1000  # EDU stream ids per device list position
MAX_DEVICES = 1000  # in one /user/devices answer
RESYNC_TIMEOUT_S = 10.0


def edu_stream_id(pos: int, index: int) -> int:
    return pos * PER_CHANGE + min(index, PER_CHANGE - 1)


def _now() -> int:
    return int(time.time() * 1000)


class RoomPeers:
    """Who shares rooms with whom, from the membership index and the rooms' current state."""

    def __init__(self, server_name: str, members: MembershipIndex, rooms: RoomRegistry) -> None:
        self.server_name = server_name
        self._members = members
        self._rooms = rooms

    async def servers_sharing(self, user_id: str) -> set[str]:
        """Servers with a joined member in a room the user is joined to."""
        servers: set[str] = set()
        for room_id in await self._members.joined_rooms(user_id):
            room = await self._rooms.get(room_id)
            if room is not None:
                servers.update(servers_of(room))
        return servers

    async def shares_with_us(self, user_id: str) -> bool:
        return self.server_name in await self.servers_sharing(user_id)


class DeviceListFederation:
    def __init__(self, server_name: str, db: Database, store: RemoteDeviceStore,
                 sender: FederationSender, lists: DeviceListService, keys: DeviceKeyService,
                 peers: RoomPeers, transport: Transport) -> None:
        self.server_name = server_name
        self._db = db
        self._store = store
        self._sender = sender
        self._lists = lists
        self._keys = keys
        self._peers = peers
        self._t = transport
        self._pending: dict[int, set[str]] = {}  # position -> destinations to wake
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._resyncing: set[str] = set()  # users whose list is being fetched
        self._again: set[str] = set()  # ... and who had an update meanwhile

    def register(self, router: EduRouter,
                 membership_hooks: list[MembershipHook] | None = None) -> None:
        router.handlers["m.device_list_update"] = self.receive_device_update
        router.handlers["m.signing_key_update"] = self.receive_signing_key_update
        self._lists.on_record.append(self.on_record)
        self._lists.on_finish.append(self.on_finish)
        if membership_hooks is not None:
            membership_hooks.append(self.on_membership)

    def on_membership(self, room: RoomData, user_id: str, membership: str) -> None:
        """A membership change that may end the last room we share with other servers' users
        (ours leaving, or theirs): their cached lists are no longer kept current by their
        updates (their servers stop sending them), so they are marked stale and fetched again
        if we share a room again (SyTest "Server correctly resyncs when server leaves and
        rejoins a room")."""
        if membership == "join":
            return
        if domain(user_id) == self.server_name:
            others = [u for u in room.joined_members() if domain(u) != self.server_name]
        else:
            others = [user_id]
        if others:
            self._spawn(self._forget_unshared(others))

    async def _forget_unshared(self, user_ids: list[str]) -> None:
        for user_id in user_ids:
            if not await self._peers.shares_with_us(user_id):
                async with self._lock(user_id):
                    await self._forget(user_id)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Lists left stale (by a failed fetch, or a restart in the middle of one) are
        fetched again."""
        async with self._db.connection() as conn:
            stale = await self._store.stale_users(conn, 1000)
        for user_id in stale:
            self._resync_soon(user_id)

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ outbound

    async def on_record(self, conn: Conn, pos: int, user_id: str, device_ids: list[str],
                        only_for: str | None) -> None:
        if only_for is not None or domain(user_id) != self.server_name:
            return
        destinations = await self._peers.servers_sharing(user_id)
        destinations.discard(self.server_name)
        if not destinations:
            return
        served = await self._keys.served_keys(conn, None, {user_id: None})
        devices = served["device_keys"].get(user_id, {})
        names = await self._store.device_names(conn, user_id)
        edus: list[tuple[str, JsonDict]] = []
        real = sorted(d for d in device_ids if d != CROSS_SIGNING)
        if real:
            last = await self._store.last_change(conn, user_id, pos)
            prev = [] if last is None else [edu_stream_id(last[0], last[1] - 1)]
            for i, device_id in enumerate(real):
                sid = edu_stream_id(pos, i)
                content: JsonDict = {"user_id": user_id, "device_id": device_id,
                                     "stream_id": sid, "prev_id": prev,
                                     "deleted": device_id not in names}
                if device_id in names and names[device_id] is not None:
                    content["device_display_name"] = names[device_id]
                if device_id in devices:
                    content["keys"] = devices[device_id]
                edus.append(("m.device_list_update", content))
                prev = [sid]
        if CROSS_SIGNING in device_ids:
            content = {"user_id": user_id}
            if user_id in served["master_keys"]:
                content["master_key"] = served["master_keys"][user_id]
            if user_id in served["self_signing_keys"]:
                content["self_signing_key"] = served["self_signing_keys"][user_id]
            edus.append(("m.signing_key_update", content))
        await self._sender.enqueue_durable(
            conn, [(d, t, c) for d in sorted(destinations) for t, c in edus])
        self._pending.setdefault(pos, set()).update(destinations)

    def on_finish(self, pos: int) -> None:
        destinations = self._pending.pop(pos, None)
        if destinations:
            self._sender.wake(destinations)

    async def user_devices(self, user_id: str) -> JsonDict:
        """GET /user/devices/{userId} for a local user. The devices and the stream id are
        read in one snapshot: read apart, a change committing in between could be named by
        the stream id but missing from the devices, and the receiver, taking the list as
        current up to that id, would then drop that change's own EDU as seen already."""
        async with self._db.connection() as conn, conn.transaction(
                isolation="repeatable_read", readonly=True):
            last = await self._store.last_change(conn, user_id, None)
            served = await self._keys.served_keys(conn, None, {user_id: None})
            names = await self._store.device_names(conn, user_id)
        keys = served["device_keys"].get(user_id, {})
        devices = []
        for device_id in sorted(names)[:MAX_DEVICES]:
            d: JsonDict = {"device_id": device_id}
            if device_id in keys:
                d["keys"] = keys[device_id]
            if names[device_id] is not None:
                d["device_display_name"] = names[device_id]
            devices.append(d)
        out: JsonDict = {"user_id": user_id, "devices": devices,
                         "stream_id": 0 if last is None else edu_stream_id(last[0], last[1] - 1)}
        if user_id in served["master_keys"]:
            out["master_key"] = served["master_keys"][user_id]
        if user_id in served["self_signing_keys"]:
            out["self_signing_key"] = served["self_signing_keys"][user_id]
        return out

    # ------------------------------------------------------------------ inbound

    def _lock(self, user_id: str) -> asyncio.Lock:
        lock = self._locks.get(user_id)
        if lock is None:
            if len(self._locks) > 10_000:
                self._locks = {u: lk for u, lk in self._locks.items() if lk.locked()}
            lock = self._locks[user_id] = asyncio.Lock()
        return lock

    async def receive_device_update(self, origin: str, content: Any) -> None:
        if not isinstance(content, dict):
            return
        user_id, device_id = content.get("user_id"), content.get("device_id")
        stream_id, prev_id = content.get("stream_id"), content.get("prev_id", [])
        if not isinstance(user_id, str) or not is_valid_user_id(user_id) \
                or domain(user_id) != origin or not isinstance(device_id, str) \
                or not device_id or not isinstance(stream_id, int) \
                or isinstance(stream_id, bool) or not isinstance(prev_id, list):
            return
        if not await self._peers.shares_with_us(user_id):
            await self._forget(user_id)  # nobody here needs their devices now
            return
        keys = content.get("keys")
        unusable = keys is not None and not _device_keys_ok(keys, user_id, device_id)
        name = content.get("device_display_name")
        if self._resync_pending(user_id):
            return
        async with self._lock(user_id):
            async with self._db.connection() as conn:
                row = await self._store.list_of(conn, user_id)
                if row is not None and not row["stale"] and stream_id > row["stream_id"] \
                        and (unusable or not prev_id
                             or any(p != row["stream_id"] for p in prev_id)):
                    # A gap, or keys we cannot apply: the list is fetched whole.
                    await self._store.mark_stale(conn, user_id, _now())
                    row = None
            if row is None or row["stale"]:
                self._resync_soon(user_id)
                return
            if stream_id <= row["stream_id"]:
                return  # seen already
            async with self._lists.change(user_id) as pos, self._db.transaction() as conn:
                await self._store.update_device(
                    conn, user_id, stream_id, device_id,
                    name if isinstance(name, str) else None, keys,
                    content.get("deleted") is True, _now())
                await self._lists.record(conn, pos, user_id, [device_id])

    async def receive_signing_key_update(self, origin: str, content: Any) -> None:
        if not isinstance(content, dict):
            return
        user_id = content.get("user_id")
        if not isinstance(user_id, str) or domain(user_id) != origin:
            return
        master, ssk = content.get("master_key"), content.get("self_signing_key")
        if not _cross_signing_ok(master, user_id) or not _cross_signing_ok(ssk, user_id):
            return
        if not await self._peers.shares_with_us(user_id):
            await self._forget(user_id)
            return
        if self._resync_pending(user_id):
            return
        async with self._lock(user_id):
            async with self._db.connection() as conn:
                row = await self._store.list_of(conn, user_id)
            if row is None or row["stale"]:
                self._resync_soon(user_id)
                return
            async with self._lists.change(user_id) as pos, self._db.transaction() as conn:
                await self._store.set_cross_signing(conn, user_id, master, ssk, _now())
                await self._lists.record(conn, pos, user_id, [CROSS_SIGNING])

    def _resync_pending(self, user_id: str) -> bool:
        """A fetch of the user's list is under way: it (or the one after it, which this
        asks for) covers the update."""
        if user_id in self._resyncing:
            self._again.add(user_id)
            return True
        return False

    def _resync_soon(self, user_id: str) -> None:
        """Fetch the list in the background: the inbound transaction (and the origin's other
        transactions, which wait for it) does not wait for a request back to the origin."""
        if not self._resync_pending(user_id):
            self._resyncing.add(user_id)
            self._spawn(self._resync_until_current(user_id))

    async def _resync_until_current(self, user_id: str) -> None:
        try:
            while True:
                self._again.discard(user_id)
                await self.resync(user_id)
                if user_id not in self._again:
                    return
        finally:
            self._resyncing.discard(user_id)
            self._again.discard(user_id)

    async def _forget(self, user_id: str) -> None:
        """An update not applied (the user shares no room with ours): a cached list would
        miss it, so it is no longer served (and fetched again if it is needed again)."""
        async with self._db.connection() as conn:
            if await self._store.list_of(conn, user_id) is not None:
                await self._store.mark_stale(conn, user_id, _now())

    async def resync(self, user_id: str) -> bool:
        async with self._lock(user_id):
            return await self._resync_locked(user_id)

    async def resync_many(self, user_ids: Iterable[str]) -> None:
        """Fetch the lists of users not cached (or stale) now; one a fetch already under way
        (for an update) made current while this waited for it is not fetched again: its
        server may answer a second /user/devices differently, or not at all."""
        await asyncio.gather(*(self._resync_if_needed(u) for u in user_ids))

    async def _resync_if_needed(self, user_id: str) -> bool:
        async with self._lock(user_id):
            async with self._db.connection() as conn:
                row = await self._store.list_of(conn, user_id)
            if row is not None and not row["stale"]:
                return True
            return await self._resync_locked(user_id)

    async def _resync_locked(self, user_id: str) -> bool:
        """Fetch the user's whole list from their server; False (and the cache marked
        stale) if that fails."""
        try:
            resp = await self._t.request(domain(user_id), "GET", fed_path(
                "/_matrix/federation/v1/user/devices/%s", user_id), timeout=RESYNC_TIMEOUT_S)
            parsed = _parse_user_devices(resp, user_id)
        except (RemoteError, Unreachable, ValueError) as e:
            log.info("device list of %s could not be fetched: %s", user_id, e)
            async with self._db.connection() as conn:
                await self._store.mark_stale(conn, user_id, _now())
            return False
        stream_id, devices, master, ssk = parsed
        async with self._lists.change(user_id) as pos, self._db.transaction() as conn:
            await self._store.replace(conn, user_id, stream_id, master, ssk, devices, _now())
            await self._lists.record(conn, pos, user_id,
                                     [d for d, _, _ in devices] + [CROSS_SIGNING])
        return True


def _device_keys_ok(keys: Any, user_id: str, device_id: str) -> bool:
    """Device keys from another server are kept as sent (as Synapse keeps them), unless they
    claim another user or device: clients check them (signatures included) before use, and a
    server that dropped keys it finds odd would leave its clients without a device the others
    see. SyTest's fake servers send such keys."""
    return isinstance(keys, dict) and keys.get("user_id", user_id) == user_id \
        and keys.get("device_id", device_id) == device_id \
        and isinstance(keys.get("keys", {}), dict)


def _cross_signing_ok(key: Any, user_id: str) -> bool:
    return key is None or (isinstance(key, dict) and key.get("user_id") == user_id
                           and isinstance(key.get("keys"), dict))


def _parse_user_devices(resp: Any, user_id: str
                        ) -> tuple[int, list[tuple[str, str | None, Any]], Any, Any]:
    if not isinstance(resp, dict) or resp.get("user_id") != user_id:
        raise ValueError("answer for another user")
    stream_id = resp.get("stream_id", 0)
    devices = resp.get("devices", [])
    if not isinstance(stream_id, int) or isinstance(stream_id, bool) \
            or not isinstance(devices, list):
        raise ValueError("malformed /user/devices answer")
    out: list[tuple[str, str | None, Any]] = []
    for d in devices[:MAX_DEVICES]:
        if not isinstance(d, dict) or not isinstance(d.get("device_id"), str) \
                or not d["device_id"]:
            continue
        keys = d.get("keys")
        if keys is not None and not _device_keys_ok(keys, user_id, d["device_id"]):
            keys = None
        name = d.get("device_display_name")
        out.append((d["device_id"], name if isinstance(name, str) else None, keys))
    master, ssk = resp.get("master_key"), resp.get("self_signing_key")
    return (stream_id, out, master if _cross_signing_ok(master, user_id) else None,
            ssk if _cross_signing_ok(ssk, user_id) else None)
