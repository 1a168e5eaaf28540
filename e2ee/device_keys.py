"""Device keys, one-time keys and fallback keys: /keys/upload, /keys/query, /keys/claim, and the
key counts every sync reports to the syncing device.

Claims must never hand a one-time key out twice (two Olm sessions on one key break
decryption for both senders), so a claim deletes the key in the statement that picks it, and
concurrent claims skip each other's locked rows instead of blocking on them.

The counts are read on every sync, so they are cached per device and dropped whenever an upload or
a claim in this process changes them. With other processes on the same database (whose claims this
one would not see) the cache is not used.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from e2ee.device_lists import DeviceListService
from e2ee.key_format import (
    MAX_ID_LEN,
    check_device_keys,
    check_one_time_keys,
)
from e2ee.keys_store import KeyStore
from homeserver.errors import Codes, MatrixError
from homeserver.storage.database import Conn, Database
from homeserver.types import JsonDict, Requester

MAX_QUERY_USERS = 5_000  # users in one /keys/query
DEFAULT_TIMEOUT_MS = 10_000  # for other servers' answers (the spec's default)
MAX_CLAIM_DEVICES = 10_000  # devices in one /keys/claim
COUNTS_CACHE_MAX = 100_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


def check_user_id(user_id: Any, where: str) -> str:
    if not isinstance(user_id, str) or not user_id.startswith("@") or ":" not in user_id \
            or len(user_id) > MAX_ID_LEN:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{where}: invalid user id")
    return user_id


def _timeout_s(body: JsonDict) -> float:
    t = body.get("timeout", DEFAULT_TIMEOUT_MS)
    if not isinstance(t, int) or isinstance(t, bool):
        raise MatrixError(400, Codes.BAD_JSON, "timeout must be an integer")
    return min(max(t, 100), 60_000) / 1000


class RemoteKeys(Protocol):
    """Other servers' users' keys (homeserver/federation/e2ee_keys.py)."""

    async def query(self, wanted: dict[str, list[str]], timeout_s: float) -> JsonDict:
        """device_keys, master_keys, self_signing_keys and failures (by server)."""
        ...

    async def claim(self, wanted: dict[str, dict[str, str]], timeout_s: float) -> JsonDict:
        """one_time_keys and failures (by server)."""
        ...


@dataclass(frozen=True, slots=True)
class UploadedKeys:
    device_keys: JsonDict | None
    one_time_keys: list[tuple[str, str, Any]]
    fallback_keys: list[tuple[str, str, Any]]


def parse_upload(body: JsonDict, user_id: str, device_id: str) -> UploadedKeys:
    """The keys of a /keys/upload body (or a dehydrated device's), each checked."""
    device_keys = body.get("device_keys")
    if device_keys is not None:
        device_keys = check_device_keys(device_keys, user_id, device_id)
    otks = check_one_time_keys(body.get("one_time_keys"), "one_time_keys")
    fallback_field = "fallback_keys" if "fallback_keys" in body else \
        "org.matrix.msc2732.fallback_keys"
    fallbacks = check_one_time_keys(body.get(fallback_field), fallback_field)
    if len({alg for alg, _, _ in fallbacks}) != len(fallbacks):
        raise MatrixError(400, Codes.INVALID_PARAM,
                          "At most one fallback key per algorithm may be uploaded")
    return UploadedKeys(device_keys, otks, fallbacks)


class DeviceKeyService:
    def __init__(self, db: Database, store: KeyStore, device_lists: DeviceListService,
                 server_name: str) -> None:
        self._db = db
        self._store = store
        self._lists = device_lists
        self._server_name = server_name
        self._counts: dict[tuple[str, str], tuple[dict[str, int], list[str]]] = {}
        self._cache_counts = True
        self.remote: RemoteKeys | None = None
        # (user_id, device_id) whose one-time or fallback keys were uploaded or claimed
        # (application services with MSC3202 hear of their users' key counts).
        self.on_keys_changed: list[Callable[[str, str], None]] = []

    def _keys_changed(self, user_id: str, device_id: str) -> None:
        for hook in self.on_keys_changed:
            hook(user_id, device_id)

    def on_peers(self, peers: list[str]) -> None:
        self._cache_counts = not peers
        if peers:
            self._counts.clear()

    # ------------------------------------------------------------------ upload
    async def upload(self, requester: Requester, body: JsonDict) -> dict[str, int]:
        user_id, device_id = requester.user_id, requester.device_id
        keys = parse_upload(body, user_id, device_id)
        try:
            # Only new device keys take a device-list position (0: none, never recorded).
            position = self._lists.change(user_id) if keys.device_keys is not None \
                else nullcontext(0)
            async with position as pos, self._db.transaction() as conn:
                if not await self._store.device_exists(conn, user_id, device_id):
                    raise MatrixError(401, Codes.UNKNOWN_TOKEN, "This device no longer exists",
                                      soft_logout=False)
                await self.store_keys(conn, pos, user_id, device_id, keys)
                counts = await self._store.one_time_key_counts(conn, user_id, device_id)
        finally:
            self._counts.pop((user_id, device_id), None)
        if keys.one_time_keys or keys.fallback_keys:
            self._keys_changed(user_id, device_id)
        counts.setdefault("signed_curve25519", 0)  # as in sync: the Olm algorithm is always there
        return counts

    async def store_keys(self, conn: Conn, pos: int, user_id: str, device_id: str,
                         keys: UploadedKeys) -> None:
        """Store an upload's keys for an existing device in the caller's transaction; `pos` is
        the device-list position announcing new device keys (unused if there are none)."""
        if keys.device_keys is not None:
            old = await self._store.device_keys(conn, user_id, device_id)
            if old is None:
                await self._store.set_device_keys(conn, user_id, device_id,
                                                  _dumps(keys.device_keys), _now_ms())
                await self._lists.record(conn, pos, user_id, [device_id])
            elif orjson.loads(old) != keys.device_keys:
                # New identity keys for the same device (a client that lost its crypto store
                # but kept its session, as Synapse allows): they replace the old ones, the
                # signatures others made of the old keys go, and everyone who shares a room
                # hears of the change, so their clients see the keys changed.
                await self._store.set_device_keys(conn, user_id, device_id,
                                                  _dumps(keys.device_keys), _now_ms())
                await self._store.delete_signatures_of(conn, user_id, [device_id])
                await self._lists.record(conn, pos, user_id, [device_id])
        if keys.one_time_keys:
            await self._add_one_time_keys(conn, user_id, device_id, keys.one_time_keys)
        for alg, kid, key in keys.fallback_keys:
            await self._store.set_fallback_key(conn, user_id, device_id, alg, kid, _dumps(key))
        self._counts.pop((user_id, device_id), None)

    async def _add_one_time_keys(self, conn: Conn, user_id: str, device_id: str,
                                 otks: list[tuple[str, str, Any]]) -> None:
        algs = [a for a, _, _ in otks]
        kids = [k for _, k, _ in otks]
        jsons = [_dumps(v) for _, _, v in otks]
        existing = await self._store.existing_one_time_keys(conn, user_id, device_id, algs, kids)
        for alg, kid, key in otks:
            old = existing.get((alg, kid))
            if old is not None and orjson.loads(old) != key:
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  f"One-time key {alg}:{kid} already exists with another value")
        await self._store.add_one_time_keys(conn, user_id, device_id, algs, kids, jsons,
                                            _now_ms())

    # ------------------------------------------------------------------ counts (sync)
    async def counts(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """(device_one_time_keys_count, device_unused_fallback_key_types) for sync."""
        key = (user_id, device_id)
        got = self._counts.get(key)
        if got is not None:
            return got
        async with self._db.connection() as conn:
            counts = await self._store.one_time_key_counts(conn, user_id, device_id)
            fallback = await self._store.unused_fallback_algorithms(conn, user_id, device_id)
        # Clients expect the count of the Olm key algorithm even when it is zero.
        counts.setdefault("signed_curve25519", 0)
        got = (counts, fallback)
        if self._cache_counts:
            if len(self._counts) >= COUNTS_CACHE_MAX:
                self._counts.clear()
            self._counts[key] = got
        return got

    # ------------------------------------------------------------------ query
    async def query(self, requester: Requester, body: JsonDict) -> JsonDict:
        """/keys/query: local users from the database, other servers' users through `remote`
        (each server asked in parallel, within the request's `timeout`; a server that fails
        is named in `failures`)."""
        wanted = body.get("device_keys")
        if not isinstance(wanted, dict):
            raise MatrixError(400, Codes.BAD_JSON, "device_keys must be an object")
        if len(wanted) > MAX_QUERY_USERS:
            raise MatrixError(413, Codes.TOO_LARGE, "Too many users in one query")
        local: dict[str, set[str] | None] = {}
        remote: dict[str, list[str]] = {}
        failures: JsonDict = {}
        for user_id, devices in wanted.items():
            check_user_id(user_id, "device_keys")
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise MatrixError(400, Codes.BAD_JSON,
                                  "device_keys values must be lists of device ids")
            if server_of(user_id) != self._server_name:
                remote[user_id] = list(devices)
                continue
            local[user_id] = set(devices) if devices else None
        timeout_s = _timeout_s(body)
        async with self._db.connection() as conn:
            resp = await self.served_keys(conn, requester.user_id, local)
        resp["failures"] = failures
        if remote:
            if self.remote is None:
                for user_id in remote:
                    failures[server_of(user_id)] = {
                        "errcode": Codes.UNKNOWN, "error": "Federation is off"}
            else:
                got = await self.remote.query(remote, timeout_s)
                for k in ("device_keys", "master_keys", "self_signing_keys"):
                    resp[k].update(got.get(k, {}))
                failures.update(got.get("failures", {}))
        if not resp["user_signing_keys"]:
            del resp["user_signing_keys"]
        return resp

    async def served_keys(self, conn: Conn, viewer: str | None,
                          local: dict[str, set[str] | None]) -> JsonDict:
        """What /keys/query serves about these local users (None: every device): device
        keys with their uploaded signatures, master and self-signing keys, and the viewer's
        own user-signing key (`viewer` None: another server asks, and sees no one's)."""
        users = list(local)
        out_devices: JsonDict = {u: {} for u in users}
        master: JsonDict = {}
        self_signing: JsonDict = {}
        user_signing: JsonDict = {}
        if users:
            rows = await self._store.query_keys(conn, users)
            sigs: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
            for r in rows:
                if r["kind"] == 2:
                    sigs[(r["user_id"], r["a"])].append((r["b"], r["c"], r["d"]))
            for r in rows:
                kind, uid = r["kind"], r["user_id"]
                if kind == 0:
                    only = local[uid]
                    if only is None or r["a"] in only:
                        out_devices[uid][r["a"]] = _served_device(r["c"], r["b"],
                                                                  sigs.get((uid, r["a"])))
                elif kind == 1:
                    obj = orjson.loads(r["c"])
                    if r["a"] == "master":
                        # Others' signatures of a master key are shown only to their signer
                        # (each user's verification of someone is their own business).
                        _merge_signatures(obj, [s for s in sigs.get((uid, r["b"]), ())
                                                if s[0] in (uid, viewer)])
                        master[uid] = obj
                    elif r["a"] == "self_signing":
                        self_signing[uid] = obj
                    elif uid == viewer:
                        user_signing[uid] = obj
        return {"device_keys": out_devices, "master_keys": master,
                "self_signing_keys": self_signing, "user_signing_keys": user_signing}

    # ------------------------------------------------------------------ claim
    async def claim(self, requester: Requester, body: JsonDict) -> JsonDict:
        wanted = body.get("one_time_keys")
        if not isinstance(wanted, dict):
            raise MatrixError(400, Codes.BAD_JSON, "one_time_keys must be an object")
        users: list[str] = []
        devices: list[str] = []
        algs: list[str] = []
        failures: JsonDict = {}
        remote: dict[str, dict[str, str]] = {}
        for user_id, by_device in wanted.items():
            check_user_id(user_id, "one_time_keys")
            if not isinstance(by_device, dict):
                raise MatrixError(400, Codes.BAD_JSON,
                                  "one_time_keys values must map device ids to algorithms")
            for alg in by_device.values():
                if not isinstance(alg, str) or not alg or len(alg) > MAX_ID_LEN:
                    raise MatrixError(400, Codes.BAD_JSON, "algorithms must be strings")
            if server_of(user_id) != self._server_name:
                remote[user_id] = dict(by_device)
                continue
            for device_id, alg in by_device.items():
                users.append(user_id)
                devices.append(device_id)
                algs.append(alg)
        if len(users) > MAX_CLAIM_DEVICES:
            raise MatrixError(413, Codes.TOO_LARGE, "Too many devices in one claim")
        out = await self.claim_local(users, devices, algs)
        if remote:
            if self.remote is None:
                for user_id in remote:
                    failures[server_of(user_id)] = {
                        "errcode": Codes.UNKNOWN, "error": "Federation is off"}
            else:
                got = await self.remote.claim(remote, _timeout_s(body))
                out.update(got.get("one_time_keys", {}))
                failures.update(got.get("failures", {}))
        return {"one_time_keys": out, "failures": failures}

    async def claim_local(self, users: list[str], devices: list[str],
                          algs: list[str]) -> JsonDict:
        """One key per (user, device, algorithm) of local users, each handed out once."""
        out: JsonDict = {}
        if users:
            async with self._db.connection() as conn:
                got = await self._store.claim_keys(conn, users, devices, algs)
            for r in got:
                out.setdefault(r["user_id"], {}).setdefault(r["device_id"], {})[
                    f"{r['algorithm']}:{r['key_id']}"] = orjson.Fragment(r["key_json"])
                self._counts.pop((r["user_id"], r["device_id"]), None)
                self._keys_changed(r["user_id"], r["device_id"])
        return out


def _merge_signatures(obj: JsonDict, rows: Any) -> None:
    """Add uploaded (signer, signer's key id, signature) rows to an object's signatures."""
    if not rows:
        return
    sigs = obj.setdefault("signatures", {})
    for signer, key_id, signature in rows:
        sigs.setdefault(signer, {})[key_id] = signature


def _served_device(key_json: str, display_name: str | None, signatures: Any) -> Any:
    """A device's keys as /keys/query serves them. Without uploaded signatures to merge, the
    stored JSON text is spliced in as it is (parsing and re-encoding hundreds of devices per
    query was most of the query's CPU): it is an object without `unsigned`, which is added."""
    unsigned = {"device_display_name": display_name} if display_name is not None else {}
    if signatures:
        obj = orjson.loads(key_json)
        _merge_signatures(obj, signatures)
        obj["unsigned"] = unsigned
        return obj
    return orjson.Fragment(key_json[:-1] + ',"unsigned":' + orjson.dumps(unsigned).decode() + "}")
