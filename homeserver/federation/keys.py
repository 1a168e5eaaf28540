"""Server keys: publishing our own, and fetching, verifying and caching other servers' keys.

`KeyRing` is the `KeyFetcher` the room engine verifies PDU signatures with, and what inbound
request authentication (X-Matrix) asks for an origin's key. Keys come from the origin itself
(GET /_matrix/key/v2/server) and, if that fails, from the notaries named in the config (none by
default). A response is accepted only when every key in its `verify_keys` signed it (and, from a
notary, when the notary signed it too); its `valid_until_ts` is capped at seven days, as the
spec asks of room versions 5+. Keys are kept in PostgreSQL (`server_keys`) with the signed
response they came in, so that this server can serve them again as a notary, and in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from homeserver.federation.store import FederationStore
from homeserver.signing import (
    OldVerifyKey,
    ServerSigningKey,
    SignatureError,
    verify_signed_json,
)
from homeserver.storage.database import Database
from homeserver.types import JsonDict, is_valid_server_name

log = logging.getLogger(__name__)

MAX_VALIDITY_MS = 7 * 24 * 3600 * 1000


class KeyResponseError(ValueError):
    """A key response that is malformed, for another server, or not properly signed."""


class RemoteKeySource(Protocol):
    """How the key ring reaches other servers (implemented by federation/client.py)."""

    async def fetch_server_keys(self, server_name: str) -> Any:
        """GET /_matrix/key/v2/server from `server_name` itself."""
        ...

    async def query_notary(self, notary: str, server_name: str,
                           key_ids: list[str]) -> Any:
        """POST /_matrix/key/v2/query to `notary`; the `server_keys` list it returns."""
        ...


@dataclass(frozen=True, slots=True)
class RemoteKey:
    verify_key: str
    valid_until_ts: int
    expired_ts: int | None
    key_json: JsonDict

    def valid_at(self, ts: int) -> bool:
        if self.expired_ts is not None:
            return ts < self.expired_ts
        return ts <= self.valid_until_ts


def own_key_response(key: ServerSigningKey, old: Iterable[OldVerifyKey],
                     valid_until_ts: int) -> JsonDict:
    """Our GET /_matrix/key/v2/server body, signed with the current key."""
    body: JsonDict = {
        "server_name": key.server_name,
        "valid_until_ts": valid_until_ts,
        "verify_keys": {key.key_id: {"key": key.verify_key_base64}},
        "old_verify_keys": {k.key_id: {"key": k.verify_key_base64, "expired_ts": k.expired_ts}
                            for k in old},
    }
    return key.sign_json(body)


def parse_key_response(resp: Any, server_name: str, now: int
                       ) -> dict[str, RemoteKey]:
    """Check a server's key response and return its keys (pure).

    Raises:
        KeyResponseError: malformed, for another server, or not signed by every verify key.
    """
    if not isinstance(resp, dict) or resp.get("server_name") != server_name:
        raise KeyResponseError("key response is not for the server asked")
    until = resp.get("valid_until_ts")
    verify = resp.get("verify_keys")
    old = resp.get("old_verify_keys", {})
    if not isinstance(until, int) or isinstance(until, bool) or not isinstance(verify, dict) \
            or not isinstance(old, dict) or not isinstance(resp.get("signatures"), dict):
        raise KeyResponseError("malformed key response")
    until = min(until, now + MAX_VALIDITY_MS)
    keys: dict[str, RemoteKey] = {}
    for kid, v in verify.items():
        if not isinstance(kid, str) or not kid.startswith("ed25519:") or \
                not isinstance(v, dict) or not isinstance(v.get("key"), str):
            continue
        try:
            verify_signed_json(resp, server_name, kid, v["key"])
        except SignatureError as e:
            raise KeyResponseError(f"key response not signed by {kid}: {e}") from e
        keys[kid] = RemoteKey(v["key"], until, None, resp)
    if not keys:
        raise KeyResponseError("key response has no usable verify key")
    for kid, v in old.items():
        if kid in keys or not isinstance(kid, str) or not kid.startswith("ed25519:"):
            continue
        if isinstance(v, dict) and isinstance(v.get("key"), str) and isinstance(
                v.get("expired_ts"), int) and not isinstance(v.get("expired_ts"), bool):
            keys[kid] = RemoteKey(v["key"], until, v["expired_ts"], resp)
    return keys


class KeyRing:
    def __init__(self, db: Database, store: FederationStore, key: ServerSigningKey,
                 old_keys: Iterable[OldVerifyKey], notaries: Iterable[str] = (),
                 validity_ms: int = 24 * 3600 * 1000, refetch_after_ms: int = 10_000) -> None:
        self._db = db
        self._store = store
        self.key = key
        self.old_keys = list(old_keys)
        self.notaries = [n for n in notaries if n != key.server_name]
        self.validity_ms = validity_ms
        self.refetch_after_ms = refetch_after_ms
        self.source: RemoteKeySource | None = None
        self._cache: dict[str, dict[str, RemoteKey]] = {}
        self._last_fetch: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ our own keys

    def own_response(self) -> JsonDict:
        now = int(time.time() * 1000)
        return own_key_response(self.key, self.old_keys, now + self.validity_ms)

    def _own_keys(self) -> dict[str, RemoteKey]:
        resp = self.own_response()
        keys = {self.key.key_id: RemoteKey(self.key.verify_key_base64, 2**62, None, resp)}
        for k in self.old_keys:
            keys[k.key_id] = RemoteKey(k.verify_key_base64, k.expired_ts, k.expired_ts, resp)
        return keys

    # ------------------------------------------------------------------ KeyFetcher

    async def server_keys(self, server_name: str, key_ids: Iterable[str],
                          valid_at_ts: int) -> Mapping[str, str]:
        wanted = list(key_ids)
        if server_name == self.key.server_name:
            own = self._own_keys()
            return {k: own[k].verify_key for k in wanted if k in own and own[k].valid_at(
                valid_at_ts)}
        keys = await self._known(server_name)
        if not any(k in keys and keys[k].valid_at(valid_at_ts) for k in wanted):
            keys = await self._refresh(server_name, wanted)
        return {k: keys[k].verify_key for k in wanted if k in keys and keys[k].valid_at(
            valid_at_ts)}

    async def _known(self, server_name: str) -> dict[str, RemoteKey]:
        got = self._cache.get(server_name)
        if got is not None:
            return got
        async with self._db.connection() as conn:
            rows = await self._store.keys_of(conn, server_name)
        got = {r["key_id"]: RemoteKey(r["verify_key"], r["valid_until_ts"], r["expired_ts"],
                                      orjson.loads(r["key_json"])) for r in rows}
        self._cache[server_name] = got
        return got

    async def _refresh(self, server_name: str, key_ids: list[str],
                       as_notary: bool = False) -> dict[str, RemoteKey]:
        """Fetch from the origin, then the notaries; at most once per `refetch_after_ms` per
        server, so a flood of requests signed with unknown keys cannot make us a flood. A
        notary query (`as_notary`) whose cached keys do not meet its criteria always asks the
        origin, as a notary must (the spec's minimum_valid_until_ts), one at a time per
        server."""
        if self.source is None or not is_valid_server_name(server_name):
            return await self._known(server_name)
        lock = self._locks.setdefault(server_name, asyncio.Lock())
        async with lock:
            last = self._last_fetch.get(server_name)
            now_s = time.monotonic()
            if not as_notary and last is not None and \
                    (now_s - last) * 1000 < self.refetch_after_ms:
                return await self._known(server_name)
            self._last_fetch[server_name] = now_s
            now = int(time.time() * 1000)
            try:
                resp = await self.source.fetch_server_keys(server_name)
                await self._remember(server_name, parse_key_response(resp, server_name, now), now)
            except Exception as e:  # unreachable, bad TLS, bad JSON or signatures
                log.info("fetching keys of %s directly failed: %s", server_name, e)
                for notary in self.notaries:
                    try:
                        await self._from_notary(notary, server_name, key_ids, now)
                        break
                    except Exception as e2:
                        log.info("notary %s had no keys of %s: %s", notary, server_name, e2)
        return await self._known(server_name)

    async def _from_notary(self, notary: str, server_name: str, key_ids: list[str],
                           now: int) -> None:
        assert self.source is not None
        responses = await self.source.query_notary(notary, server_name, key_ids)
        if not isinstance(responses, list):
            raise KeyResponseError("notary answer has no server_keys list")
        found = False
        for resp in responses:
            keys = parse_key_response(resp, server_name, now)
            sigs = resp["signatures"].get(notary)
            if not isinstance(sigs, dict):
                raise KeyResponseError("notary did not sign the response")
            notary_keys = await self.server_keys(notary, list(sigs), now)
            ok = False
            for kid, vk in notary_keys.items():
                try:
                    verify_signed_json(resp, notary, kid, vk)
                    ok = True
                    break
                except SignatureError:
                    continue
            if not ok:
                raise KeyResponseError("notary signature does not verify")
            await self._remember(server_name, keys, now)
            found = True
        if not found:
            raise KeyResponseError("notary returned no keys")

    async def _remember(self, server_name: str, keys: dict[str, RemoteKey], now: int) -> None:
        if not keys:
            return
        resp = next(iter(keys.values())).key_json
        async with self._db.connection() as conn:
            await self._store.save_keys(conn, server_name, [
                (kid, k.verify_key, k.valid_until_ts, k.expired_ts) for kid, k in keys.items()
            ], resp, now)
        self._cache.pop(server_name, None)  # reread: an older response may not overwrite

    # ------------------------------------------------------------------ notary

    async def notary_query(self, wanted: Mapping[str, Mapping[str, int]]) -> list[JsonDict]:
        """POST /_matrix/key/v2/query: `{server: {key_id: minimum_valid_until_ts}}` (no key
        ids: all keys). Cached responses are served when they are new enough, else the
        origin is asked; each returned response carries our signature as well."""
        out: list[JsonDict] = []
        now = int(time.time() * 1000)
        for server_name, key_min in wanted.items():
            if server_name == self.key.server_name:
                out.append(self.own_response())
                continue
            minimum = max(key_min.values(), default=now)
            keys = await self._known(server_name)
            ids = list(key_min) or list(keys)
            fresh = [keys[k] for k in ids if k in keys and keys[k].valid_until_ts >= minimum]
            if not ids or len(fresh) < len(ids):
                # (if the origin cannot be reached, what is known is served, even expired:
                # the asking server decides what to make of it, as the spec says)
                keys = await self._refresh(server_name, ids, as_notary=True)
                fresh = [keys[k] for k in (list(key_min) or list(keys)) if k in keys]
            seen: set[bytes] = set()
            for k in fresh:
                raw = orjson.dumps(k.key_json, option=orjson.OPT_SORT_KEYS)
                if raw in seen:
                    continue
                seen.add(raw)
                resp = orjson.loads(raw)
                self.key.sign_json(resp)
                out.append(resp)
        return out
