"""Pushers (spec "Client behaviour": GET /pushers, POST /pushers/set).

Only `http` pushers exist here (no email). A pusher's `data.url` is user input that this server
will later connect to: it must be an http(s) URL whose path is /_matrix/push/v1/notify, and the
sender only connects to addresses the outbound policy permits. The spec asks for HTTPS; plain
http is accepted too (as Synapse does), for gateways on a private network the operator allows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from homeserver.errors import Codes, MatrixError
from homeserver.push.notify_store import NotificationStore
from homeserver.storage.database import Database
from homeserver.types import JsonDict

NOTIFY_PATH = "/_matrix/push/v1/notify"
MAX_PUSHKEY_BYTES = 512
MAX_APP_ID = 64
MAX_TEXT = 1024
MAX_DATA_BYTES = 8192


def _missing(names: list[str]) -> MatrixError:
    return MatrixError(400, Codes.MISSING_PARAM, "Missing parameters: " + ", ".join(names))


def _text(body: JsonDict, name: str, limit: int = MAX_TEXT) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise MatrixError(400, Codes.BAD_JSON, f"{name} must be a string")
    if len(value) > limit:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} is too long")
    return value


def check_url(url: Any) -> str:
    if not isinstance(url, str):
        raise MatrixError(400, Codes.INVALID_PARAM, "data.url must be a string")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise MatrixError(400, Codes.INVALID_PARAM, f"data.url is not a valid URL: {e}") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MatrixError(400, Codes.INVALID_PARAM, "data.url must be an http(s) URL")
    if parts.path != NOTIFY_PATH:
        raise MatrixError(400, Codes.INVALID_PARAM, f"data.url must have the path {NOTIFY_PATH}")
    if parts.username or parts.password or port == 0:
        raise MatrixError(400, Codes.INVALID_PARAM, "data.url may not carry credentials")
    return url


def validate_set(body: JsonDict) -> JsonDict | None:
    """The checked pusher from a POST /pushers/set body, or None for a deletion (kind null)."""
    missing = [n for n in ("kind", "app_id", "pushkey") if n not in body]
    if missing:
        raise _missing(missing)
    app_id = _text(body, "app_id", MAX_APP_ID)
    pushkey = _text(body, "pushkey")
    if not app_id or not pushkey:
        raise MatrixError(400, Codes.INVALID_PARAM, "app_id and pushkey may not be empty")
    if len(pushkey.encode()) > MAX_PUSHKEY_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, "pushkey is longer than 512 bytes")
    kind = body["kind"]
    if kind is None:
        return {"kind": None, "app_id": app_id, "pushkey": pushkey}
    if not isinstance(kind, str):
        raise MatrixError(400, Codes.BAD_JSON, "kind must be a string or null")
    if kind != "http":
        raise MatrixError(400, Codes.INVALID_PARAM, f"Unsupported pusher kind {kind!r}")
    missing = [n for n in ("app_display_name", "device_display_name", "lang", "data")
               if n not in body]
    if missing:
        raise _missing(missing)
    data = body["data"]
    if not isinstance(data, dict):
        raise MatrixError(400, Codes.BAD_JSON, "data must be an object")
    if "url" not in data:
        raise _missing(["data.url"])
    check_url(data["url"])
    fmt = data.get("format")
    # The spec names one format, event_id_only; anything else gets the full notification (as
    # Synapse does), and is kept as given.
    if fmt is not None and not isinstance(fmt, str):
        raise MatrixError(400, Codes.BAD_JSON, "data.format must be a string")
    raw = orjson.dumps(data)
    if len(raw) > MAX_DATA_BYTES:
        raise MatrixError(400, Codes.TOO_LARGE, "data is too large")
    append = body.get("append", False)
    if not isinstance(append, bool):
        raise MatrixError(400, Codes.BAD_JSON, "append must be a boolean")
    profile_tag = body.get("profile_tag")
    if profile_tag is not None:
        profile_tag = _text(body, "profile_tag")
    return {"kind": kind, "app_id": app_id, "pushkey": pushkey,
            "app_display_name": _text(body, "app_display_name"),
            "device_display_name": _text(body, "device_display_name"),
            "lang": _text(body, "lang", 64), "data": raw.decode(), "append": append,
            "profile_tag": profile_tag}


def pusher_json(row: Any) -> JsonDict:
    out: JsonDict = {
        "pushkey": row["pushkey"], "kind": row["kind"], "app_id": row["app_id"],
        "app_display_name": row["app_display_name"],
        "device_display_name": row["device_display_name"], "lang": row["lang"],
        "data": orjson.loads(row["data"]),
    }
    if row["profile_tag"] is not None:
        out["profile_tag"] = row["profile_tag"]
    return out


class PusherService:
    def __init__(self, db: Database, store: NotificationStore) -> None:
        self._db = db
        self._store = store
        self.on_change: list[Callable[[], None]] = []  # the sender reloads its pushers

    async def list(self, user_id: str) -> list[JsonDict]:
        async with self._db.connection() as conn:
            return [pusher_json(r) for r in await self._store.pushers(conn, user_id)]

    async def set(self, user_id: str, body: JsonDict, device_id: str | None = None) -> None:
        """Set (or with `kind: null` delete) a pusher, owned by `device_id`, the session
        setting it: the pusher is deleted with that device (migrations/0015_pusher_devices.sql).

        Raises MatrixError (M_MISSING_PARAM, M_INVALID_PARAM, M_BAD_JSON, M_TOO_LARGE)
        with nothing changed."""
        p = validate_set(body)
        assert p is not None or body.get("kind") is None
        async with self._db.transaction() as conn:
            if p is None or p["kind"] is None:
                await self._store.delete_pusher(conn, user_id, body["app_id"], body["pushkey"])
            else:
                # A new pusher delivers what notifies from now on, not the user's history.
                start = await self._store.newest(conn, user_id)
                await self._store.upsert_pusher(
                    conn, user_id, p["app_id"], p["pushkey"], p["app_display_name"],
                    p["device_display_name"], p["profile_tag"], p["lang"], p["data"],
                    int(time.time() * 1000), start, device_id or None)
                if not p["append"]:
                    await self._store.delete_others(conn, user_id, p["app_id"], p["pushkey"])
        for cb in self.on_change:
            cb()
