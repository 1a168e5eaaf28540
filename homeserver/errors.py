"""Matrix errors as exceptions, so any layer can fail a request with the spec's errcode.

One aiohttp middleware (homeserver/http.py) turns these into `{"errcode", "error", ...}` bodies;
nothing else in the code base needs to know about HTTP status codes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Codes(StrEnum):
    FORBIDDEN = "M_FORBIDDEN"
    UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"
    MISSING_TOKEN = "M_MISSING_TOKEN"
    BAD_JSON = "M_BAD_JSON"
    NOT_JSON = "M_NOT_JSON"
    NOT_FOUND = "M_NOT_FOUND"
    LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"
    UNRECOGNIZED = "M_UNRECOGNIZED"
    UNKNOWN = "M_UNKNOWN"
    USER_IN_USE = "M_USER_IN_USE"
    INVALID_USERNAME = "M_INVALID_USERNAME"
    ROOM_IN_USE = "M_ROOM_IN_USE"
    INVALID_ROOM_STATE = "M_INVALID_ROOM_STATE"
    UNSUPPORTED_ROOM_VERSION = "M_UNSUPPORTED_ROOM_VERSION"
    INCOMPATIBLE_ROOM_VERSION = "M_INCOMPATIBLE_ROOM_VERSION"
    BAD_STATE = "M_BAD_STATE"
    GUEST_ACCESS_FORBIDDEN = "M_GUEST_ACCESS_FORBIDDEN"
    MISSING_PARAM = "M_MISSING_PARAM"
    INVALID_PARAM = "M_INVALID_PARAM"
    TOO_LARGE = "M_TOO_LARGE"
    EXCLUSIVE = "M_EXCLUSIVE"
    WEAK_PASSWORD = "M_WEAK_PASSWORD"
    USER_DEACTIVATED = "M_USER_DEACTIVATED"
    UNAUTHORIZED = "M_UNAUTHORIZED"
    NOT_JOINED = "M_NOT_JOINED"
    BAD_ALIAS = "M_BAD_ALIAS"
    INVALID_SIGNATURE = "M_INVALID_SIGNATURE"
    WRONG_ROOM_KEYS_VERSION = "M_WRONG_ROOM_KEYS_VERSION"
    CANNOT_OVERWRITE_MEDIA = "M_CANNOT_OVERWRITE_MEDIA"
    NOT_YET_UPLOADED = "M_NOT_YET_UPLOADED"
    USER_LOCKED = "M_USER_LOCKED"
    USER_SUSPENDED = "M_USER_SUSPENDED"
    CANNOT_LEAVE_SERVER_NOTICE_ROOM = "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM"
    UNKNOWN_POS = "M_UNKNOWN_POS"  # sliding sync (MSC4186): start a new connection
    UNKNOWN_DEVICE = "M_UNKNOWN_DEVICE"
    URL_NOT_SET = "M_URL_NOT_SET"  # application service ping (spec v1.7)
    BAD_STATUS = "M_BAD_STATUS"
    CONNECTION_FAILED = "M_CONNECTION_FAILED"
    CONNECTION_TIMEOUT = "M_CONNECTION_TIMEOUT"
    THREEPID_IN_USE = "M_THREEPID_IN_USE"
    THREEPID_NOT_FOUND = "M_THREEPID_NOT_FOUND"
    THREEPID_AUTH_FAILED = "M_THREEPID_AUTH_FAILED"
    THREEPID_MEDIUM_NOT_SUPPORTED = "M_THREEPID_MEDIUM_NOT_SUPPORTED"
    UNSTABLE = "M_UNKNOWN"


class MatrixError(Exception):
    """A failure the client should see as a Matrix error body."""

    def __init__(self, status: int, errcode: str, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.errcode = errcode
        self.error = error
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errcode": self.errcode, "error": self.error}
        body.update(self.extra)
        return body


class UIARequired(Exception):
    """User-interactive auth needs another stage: rendered as 401 with the flows body."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("user-interactive auth required")
        self.body = body


def forbidden(msg: str = "Forbidden") -> MatrixError:
    return MatrixError(403, Codes.FORBIDDEN, msg)


def not_found(msg: str = "Not found") -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, msg)


def bad_json(msg: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, msg)


def invalid_param(msg: str) -> MatrixError:
    return MatrixError(400, Codes.INVALID_PARAM, msg)


def missing_param(msg: str) -> MatrixError:
    return MatrixError(400, Codes.MISSING_PARAM, msg)


def suspended() -> MatrixError:
    """What a suspended account gets for an action it may not take (spec "Account suspension")."""
    return MatrixError(403, Codes.USER_SUSPENDED, "You cannot perform this action while suspended.")
