"""Cross-signing (spec "Cross-signing"): a user's master, self-signing and user-signing keys, and
the signatures that tie devices and other users to them.

The server checks every signature before storing it: a client that trusts a device because the
server said its self-signing key signed it must not be misled by a forged upload. Replacing
existing keys needs user-interactive auth (someone holding a stolen access token must not be
able to swap the keys everyone verified); the first upload, and a repeat of exactly the stored
keys, do not (spec v1.11).
"""

from __future__ import annotations

import orjson

from e2ee.device_lists import CROSS_SIGNING, DeviceListService
from e2ee.key_format import (
    CROSS_SIGNING_USAGES,
    check_signatures_shape,
    check_signed_by_master,
    cross_signing_public_key,
    has_valid_signature,
)
from e2ee.keys_store import KeyStore
from homeserver.errors import Codes, MatrixError
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester

MAX_SIGNATURE_TARGETS = 1_000


def _strip(obj: JsonDict) -> JsonDict:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def _failure(code: str, msg: str) -> JsonDict:
    return {"errcode": code, "error": msg}


class CrossSigningService:
    def __init__(self, db: Database, store: KeyStore, device_lists: DeviceListService) -> None:
        self._db = db
        self._store = store
        self._lists = device_lists

    async def upload_keys(self, requester: Requester, body: JsonDict, authed: bool) -> bool:
        """Store the uploaded keys. Returns False, changing nothing, when the upload replaces
        existing keys and `authed` is False (the caller then runs user-interactive auth)."""
        user_id = requester.user_id
        new: dict[str, tuple[str, JsonDict]] = {}
        for usage in CROSS_SIGNING_USAGES:
            key = body.get(f"{usage}_key")
            if key is not None:
                new[usage] = (cross_signing_public_key(key, user_id, usage), key)
        if not new:
            raise MatrixError(400, Codes.MISSING_PARAM, "No cross-signing keys were given")
        # A new user-signing key alone concerns only the user's own devices (it signs whom
        # they verified); others are told of master and self-signing keys.
        only_self = set(new) == {"user_signing"}
        async with self._lists.change(user_id, only_self) as pos, \
                self._db.transaction() as conn:
            existing = await self._store.lock_cross_signing_keys(conn, user_id)
            changed = {u: v for u, v in new.items()
                       if u not in existing
                       or orjson.loads(existing[u]["key_json"]) != v[1]}
            if not changed:
                return True  # the same keys again: idempotent, no auth needed
            if "master" in existing and not authed:
                return False
            master_pub = new["master"][0] if "master" in new else (
                existing["master"]["public_key"] if "master" in existing else None)
            if master_pub is None:
                raise MatrixError(400, Codes.MISSING_PARAM, "No master key is available")
            for usage in ("self_signing", "user_signing"):
                if usage in new:
                    check_signed_by_master(new[usage][1], user_id, master_pub, usage)
            device_ids = {r["device_id"] for r in await self._store.query_device_keys(
                conn, [user_id])}
            for pub, _ in new.values():
                if pub in device_ids:
                    raise MatrixError(403, Codes.FORBIDDEN,
                                      "A cross-signing public key equals one of your device ids")
            for usage, (pub, key) in changed.items():
                old = existing.get(usage)
                if old is not None and old["public_key"] != pub:
                    # Signatures by the replaced key (or of a replaced master key) are void.
                    await self._store.delete_signatures_by(conn, user_id,
                                                           f"ed25519:{old['public_key']}")
                    if usage == "master":
                        await self._store.delete_signatures_of(conn, user_id,
                                                               [old["public_key"]])
                await self._store.set_cross_signing_key(conn, user_id, usage, pub,
                                                        orjson.dumps(key).decode(), pos)
            await self._lists.record(
                conn, pos, user_id, [CROSS_SIGNING],
                only_for=user_id if set(changed) == {"user_signing"} else None)
        return True

    async def forget_user(self, user_id: str) -> None:
        """A deactivated account's cross-signing keys go, and its signatures with them; users
        sharing a room are told (their clients stop trusting the old identity)."""
        async with self._lists.change(user_id) as pos, self._db.transaction() as conn:
            await self._store.delete_cross_signing(conn, user_id)
            await self._lists.record(conn, pos, user_id, [CROSS_SIGNING])

    async def upload_signatures(self, requester: Requester, body: JsonDict) -> JsonDict:
        """Verify and store each signature; what fails is reported per key, not raised."""
        me = requester.user_id
        if sum(len(v) if isinstance(v, dict) else 1 for v in body.values()) > \
                MAX_SIGNATURE_TARGETS:
            raise MatrixError(413, Codes.TOO_LARGE, "Too many signatures in one request")
        for by_key in body.values():
            if not isinstance(by_key, dict) or \
                    not all(isinstance(v, dict) for v in by_key.values()):
                raise MatrixError(400, Codes.BAD_JSON,
                                  "Expected {user_id: {key_id: signed object}}")
        failures: dict[str, JsonDict] = {}
        rows: list[tuple[str, str, str, str, str]] = []
        changed_devices: set[str] = set()  # of ours that others are told about
        signed_others: set[str] = set()  # users we verified: a change only we hear of

        def fail(user_id: str, key_id: str, code: str, msg: str) -> None:
            failures.setdefault(user_id, {})[key_id] = _failure(code, msg)

        async with self._db.connection() as conn:
            targets = list(body)
            cs = {(r["user_id"], r["key_type"]): r
                  for r in await self._store.cross_signing_keys(conn, list({me, *targets}))}
            dev_rows = await self._store.query_device_keys(conn, [me])
        my_devices = {r["device_id"]: orjson.loads(r["key_json"]) for r in dev_rows}
        my_ssk = cs.get((me, "self_signing"))
        my_usk = cs.get((me, "user_signing"))
        for user_id, by_key in body.items():
            for key_id, obj in by_key.items():
                try:
                    check_signatures_shape(obj, f"{user_id[:80]}/{key_id[:80]}")
                except MatrixError as e:
                    fail(user_id, key_id, e.errcode, e.error)
                    continue
                mine = obj.get("signatures", {}).get(me, {})
                target_master = cs.get((user_id, "master"))
                if user_id == me and key_id in my_devices:
                    stored = my_devices[key_id]
                    signer = my_ssk
                    what = "self-signing key"
                elif target_master is not None and key_id == target_master["public_key"]:
                    stored = orjson.loads(target_master["key_json"])
                    signer = my_usk if user_id != me else None
                    what = "user-signing key" if user_id != me else "devices"
                else:
                    fail(user_id, key_id, Codes.NOT_FOUND, "No such device or master key")
                    continue
                if _strip(obj) != _strip(stored):
                    fail(user_id, key_id, Codes.INVALID_SIGNATURE,
                         "The signed object differs from the stored key")
                    continue
                good: list[tuple[str, str]] = []
                if signer is not None:
                    kid = f"ed25519:{signer['public_key']}"
                    if kid in mine and has_valid_signature(obj, me, kid, signer["public_key"]):
                        good.append((kid, mine[kid]))
                elif user_id == me:
                    # Our own master key, signed by one of our devices.
                    for kid, sig in mine.items():
                        dev = kid.partition(":")[2]
                        dev_key = my_devices.get(dev, {}).get("keys", {}).get(kid)
                        if kid.startswith("ed25519:") and isinstance(dev_key, str) and \
                                has_valid_signature(obj, me, kid, dev_key):
                            good.append((kid, sig))
                if not good:
                    fail(user_id, key_id, Codes.INVALID_SIGNATURE,
                         f"No valid signature by your {what}")
                    continue
                for kid, sig in good:
                    rows.append((me, kid, user_id, key_id, sig))
                if user_id != me:
                    signed_others.add(user_id)
                else:
                    changed_devices.add(key_id if key_id in my_devices else CROSS_SIGNING)
        if rows:
            async with self._lists.change(me, only_self=not changed_devices) as pos, \
                    self._db.transaction() as conn:
                await self._store.add_signatures(conn, rows)
                if changed_devices:
                    await self._lists.record(conn, pos, me, sorted(changed_devices))
                for other in sorted(signed_others):
                    await self._lists.record(conn, pos, other, [CROSS_SIGNING], only_for=me)
        return {"failures": failures}

