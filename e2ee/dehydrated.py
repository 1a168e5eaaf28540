"""Dehydrated devices (MSC3814, the API matrix-js-sdk and matrix-rust-sdk call): a device the
user's client creates for when none of their devices is online, so that room keys sent while all
are offline still reach the account. A later login rehydrates it from secret storage and reads
its to-device messages.

The server side is small: the dehydrated device is an ordinary device row without access tokens
(so to-device messages and key claims reach it like any other), its opaque encrypted
`device_data` is kept beside it, and each user has at most one (a new one replaces the old).
Its inbox is read without deleting anything, so an interrupted rehydration can start over.
"""

from __future__ import annotations

import time

import orjson

from e2ee.device_keys import DeviceKeyService, parse_upload
from e2ee.device_lists import DeviceListService
from e2ee.key_format import MAX_ID_LEN
from e2ee.keys_store import KeyStore
from e2ee.to_device import ToDeviceService
from homeserver.errors import Codes, MatrixError
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester
from homeserver.users.store import UserStore

MAX_DEVICE_DATA_BYTES = 262_144


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, msg)


def parse_batch(token: object) -> int:
    if token is None:
        return 0
    if not isinstance(token, str) or not token.isascii() or not token.isdigit() or \
            len(token) > 18:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid next_batch")
    return int(token)


class DehydratedDeviceService:
    def __init__(self, db: Database, store: KeyStore, users: UserStore,
                 keys: DeviceKeyService, device_lists: DeviceListService,
                 to_device: ToDeviceService) -> None:
        self._db = db
        self._store = store
        self._users = users
        self._keys = keys
        self._lists = device_lists
        self._to_device = to_device

    async def put(self, requester: Requester, body: JsonDict) -> str:
        user_id = requester.user_id
        device_id = body.get("device_id")
        if not isinstance(device_id, str) or not 0 < len(device_id) <= MAX_ID_LEN:
            raise _bad("device_id must be a string")
        data = body.get("device_data")
        if not isinstance(data, dict) or not isinstance(data.get("algorithm"), str):
            raise _bad("device_data must be an object with an algorithm")
        raw = orjson.dumps(data).decode()
        if len(raw) > MAX_DEVICE_DATA_BYTES:
            raise MatrixError(413, Codes.TOO_LARGE, "device_data is too large")
        name = body.get("initial_device_display_name")
        if name is not None and (not isinstance(name, str) or len(name) > MAX_ID_LEN):
            raise _bad("initial_device_display_name must be a string")
        if body.get("device_keys") is None:
            raise _bad("device_keys are required: a dehydrated device must be able to decrypt")
        keys = parse_upload(body, user_id, device_id)
        async with self._lists.change(user_id) as pos, self._db.transaction() as conn:
            await self._store.lock_user_dehydration(conn, user_id)
            old = await self._store.dehydrated_device(conn, user_id)
            old_id = old["device_id"] if old is not None else None
            if old_id != device_id and await self._store.device_exists(conn, user_id,
                                                                       device_id):
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  "A device with this id already exists")
            gone = await self._users.delete_devices(conn, user_id, [old_id]) if old_id else []
            await self._users.upsert_device(conn, user_id, device_id, name,
                                            int(time.time() * 1000), None)
            await self._store.set_dehydrated_device(conn, user_id, device_id, raw)
            await self._keys.store_keys(conn, pos, user_id, device_id, keys)
            await self._lists.record(conn, pos, user_id, [d for d in gone if d != device_id])
        return device_id

    async def get(self, requester: Requester) -> JsonDict:
        async with self._db.connection() as conn:
            row = await self._store.dehydrated_device(conn, requester.user_id)
        if row is None:
            raise MatrixError(404, Codes.NOT_FOUND, "No dehydrated device")
        return {"device_id": row["device_id"], "device_data": orjson.loads(row["device_data"])}

    async def delete(self, requester: Requester) -> str:
        user_id = requester.user_id
        async with self._lists.change(user_id) as pos, self._db.transaction() as conn:
            await self._store.lock_user_dehydration(conn, user_id)
            row = await self._store.dehydrated_device(conn, user_id)
            if row is None:
                raise MatrixError(404, Codes.NOT_FOUND, "No dehydrated device")
            gone = await self._users.delete_devices(conn, user_id, [row["device_id"]])
            await self._lists.record(conn, pos, user_id, gone)
        return str(row["device_id"])

    async def events(self, requester: Requester, device_id: str, next_batch: object) -> JsonDict:
        after = parse_batch(next_batch)
        async with self._db.connection() as conn:
            row = await self._store.dehydrated_device(conn, requester.user_id)
        if row is None or row["device_id"] != device_id:
            raise MatrixError(403, Codes.FORBIDDEN, "That is not your dehydrated device")
        events, pos = await self._to_device.peek(requester.user_id, device_id, after)
        return {"events": events, "next_batch": str(pos)}
