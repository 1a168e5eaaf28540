"""End-to-end keys across servers (server-server spec "End-to-End Encryption"):
/user/keys/query and /user/keys/claim, served for our users and used for theirs.

A local /keys/query or /keys/claim naming other servers' users asks each of those servers
once, all in parallel, within the client's timeout; a server that fails or does not answer in
time is named in `failures` and the others' answers are kept. A query for a user whose device
list is cached (homeserver/federation/devices.py) and not stale is answered from the cache;
a user who shares a room with ours but is not cached (or whose cache is stale) has the list
fetched first (/user/devices, within the timeout) and is answered from the cache; for the
others (and if that fetch fails) the server is asked with /user/keys/query.
Answers are checked: only keys of the users asked for, on the server asked, are kept.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from e2ee.device_keys import DeviceKeyService, check_user_id
from homeserver.errors import Codes, MatrixError, bad_json
from homeserver.federation.device_store import RemoteDeviceStore
from homeserver.federation.devices import DeviceListFederation, RoomPeers
from homeserver.federation.serving import domain
from homeserver.federation.transport import RemoteError, Transport, Unreachable
from homeserver.storage.database import Database
from homeserver.types import JsonDict

log = logging.getLogger(__name__)

MAX_USERS = 1000  # users in one /user/keys/query or /user/keys/claim served
MAX_CLAIMS = 10_000


def _failure(e: Exception) -> JsonDict:
    if isinstance(e, RemoteError):
        return {"errcode": e.errcode or Codes.UNKNOWN, "error": f"{e.status} from the server"}
    return {"errcode": Codes.UNKNOWN, "error": "The server could not be reached in time"}


class RemoteKeyQueries:
    """e2ee/device_keys.py `RemoteKeys`, and the served side of the two endpoints."""

    def __init__(self, server_name: str, db: Database, store: RemoteDeviceStore,
                 keys: DeviceKeyService, devices: DeviceListFederation, peers: RoomPeers,
                 transport: Transport) -> None:
        self.server_name = server_name
        self._db = db
        self._store = store
        self._keys = keys
        self._devices = devices
        self._peers = peers
        self._t = transport
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ used (RemoteKeys)

    async def query(self, wanted: dict[str, list[str]], timeout_s: float) -> JsonDict:
        out: JsonDict = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {},
                         "failures": {}}
        async with self._db.connection() as conn:
            fresh = {r["user_id"]: r for r in await self._store.fresh(conn, list(wanted))}
        # Users who share a room with ours but are not cached: their list is fetched now
        # (/user/devices, within the client's timeout), so this answer and the next ones
        # come from the cache, which their updates then keep current (as Synapse does).
        uncached = [u for u in wanted if u not in fresh]
        shared = [u for u in uncached if await self._peers.shares_with_us(u)]
        if shared:
            task = asyncio.get_running_loop().create_task(self._devices.resync_many(shared))
            self._tasks.add(task)  # (it goes on if the client's timeout comes first)
            task.add_done_callback(self._tasks.discard)
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout_s)
            except TimeoutError:
                pass
            except Exception:
                log.exception("fetching device lists failed")
            async with self._db.connection() as conn:
                fresh.update({r["user_id"]: r for r in await self._store.fresh(conn, shared)})
        async with self._db.connection() as conn:
            rows = await self._store.devices_of(conn, list(fresh))
        for user_id, r in fresh.items():
            out["device_keys"][user_id] = {}
            if r["master_key"] is not None:
                out["master_keys"][user_id] = orjson.loads(r["master_key"])
            if r["self_signing_key"] is not None:
                out["self_signing_keys"][user_id] = orjson.loads(r["self_signing_key"])
        for d in rows:
            if not wanted[d["user_id"]] or d["device_id"] in set(wanted[d["user_id"]]):
                keys = orjson.loads(d["keys"])
                keys["unsigned"] = ({"device_display_name": d["display_name"]}
                                    if d["display_name"] is not None else {})
                out["device_keys"][d["user_id"]][d["device_id"]] = keys
        by_server: dict[str, dict[str, list[str]]] = {}
        for user_id, devices in wanted.items():
            if user_id not in fresh:
                by_server.setdefault(domain(user_id), {})[user_id] = devices
        results = await asyncio.gather(*(
            self._ask(server, "/_matrix/federation/v1/user/keys/query",
                      {"device_keys": users}, timeout_s)
            for server, users in by_server.items()), return_exceptions=True)
        for (server, users), got in zip(by_server.items(), results, strict=True):
            if isinstance(got, BaseException):
                out["failures"][server] = _failure(got)  # type: ignore[arg-type]
                continue
            _merge_query(out, got, users)
        return out

    async def claim(self, wanted: dict[str, dict[str, str]], timeout_s: float) -> JsonDict:
        out: JsonDict = {"one_time_keys": {}, "failures": {}}
        by_server: dict[str, dict[str, dict[str, str]]] = {}
        for user_id, devices in wanted.items():
            by_server.setdefault(domain(user_id), {})[user_id] = devices
        results = await asyncio.gather(*(
            self._ask(server, "/_matrix/federation/v1/user/keys/claim",
                      {"one_time_keys": users}, timeout_s)
            for server, users in by_server.items()), return_exceptions=True)
        for (server, users), got in zip(by_server.items(), results, strict=True):
            if isinstance(got, BaseException):
                out["failures"][server] = _failure(got)  # type: ignore[arg-type]
                continue
            keys = got.get("one_time_keys") if isinstance(got, dict) else None
            if not isinstance(keys, dict):
                continue
            for user_id, by_device in keys.items():
                if user_id in users and isinstance(by_device, dict):
                    out["one_time_keys"][user_id] = {
                        d: k for d, k in by_device.items()
                        if d in users[user_id] and isinstance(k, dict)}
        return out

    async def _ask(self, server: str, path: str, body: JsonDict, timeout_s: float) -> Any:
        try:
            return await asyncio.wait_for(
                self._t.request(server, "POST", path, body=body, timeout=timeout_s),
                timeout_s)
        except TimeoutError as e:
            raise Unreachable(f"{server} did not answer in time") from e

    # ------------------------------------------------------------------ served

    async def serve_query(self, body: Any) -> JsonDict:
        wanted = body.get("device_keys") if isinstance(body, dict) else None
        if not isinstance(wanted, dict):
            raise bad_json("device_keys must be an object")
        if len(wanted) > MAX_USERS:
            raise MatrixError(413, Codes.TOO_LARGE, "Too many users in one query")
        local: dict[str, set[str] | None] = {}
        for user_id, devices in wanted.items():
            check_user_id(user_id, "device_keys")
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise bad_json("device_keys values must be lists of device ids")
            if domain(user_id) == self.server_name:
                local[user_id] = set(devices) if devices else None
        async with self._db.connection() as conn:
            served = await self._keys.served_keys(conn, None, local)
        served.pop("user_signing_keys", None)
        return served

    async def serve_claim(self, body: Any) -> JsonDict:
        wanted = body.get("one_time_keys") if isinstance(body, dict) else None
        if not isinstance(wanted, dict):
            raise bad_json("one_time_keys must be an object")
        users: list[str] = []
        devices: list[str] = []
        algs: list[str] = []
        for user_id, by_device in wanted.items():
            check_user_id(user_id, "one_time_keys")
            if not isinstance(by_device, dict) or not all(
                    isinstance(a, str) and a for a in by_device.values()):
                raise bad_json("one_time_keys values must map device ids to algorithms")
            if domain(user_id) != self.server_name:
                continue
            for device_id, alg in by_device.items():
                users.append(user_id)
                devices.append(device_id)
                algs.append(alg)
        if len(users) > MAX_CLAIMS:
            raise MatrixError(413, Codes.TOO_LARGE, "Too many devices in one claim")
        return {"one_time_keys": await self._keys.claim_local(users, devices, algs)}


def _merge_query(out: JsonDict, got: Any, users: dict[str, list[str]]) -> None:
    """Keep from a server's /user/keys/query answer only what was asked of it."""
    if not isinstance(got, dict):
        return
    devices = got.get("device_keys")
    if isinstance(devices, dict):
        for user_id, by_device in devices.items():
            if user_id not in users or not isinstance(by_device, dict):
                continue
            only = set(users[user_id])
            out["device_keys"][user_id] = {
                d: k for d, k in by_device.items()
                if isinstance(k, dict) and k.get("user_id") == user_id
                and k.get("device_id") == d and (not only or d in only)}
    for kind in ("master_keys", "self_signing_keys"):
        keys = got.get(kind)
        if isinstance(keys, dict):
            for user_id, key in keys.items():
                if user_id in users and isinstance(key, dict) \
                        and key.get("user_id") == user_id:
                    out[kind][user_id] = key
