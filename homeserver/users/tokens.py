"""Access and refresh tokens: random strings stored only as SHA-256 digests, and the in-memory map
from digest to requester that keeps the per-request auth check off the database.

The cache is its own object because three services change who a token belongs to: sessions fill
it and refresh tokens, devices drop a deleted device's tokens, accounts drop every token on
deactivation or a password change. Each of them gets this one instance from homeserver/app.py.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict

from homeserver.types import Requester

MAX_CACHED = 100_000


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_access_token() -> str:
    return "pa_" + secrets.token_urlsafe(32)


def new_refresh_token() -> str:
    return "pr_" + secrets.token_urlsafe(32)


PEER_MAX_AGE_S = 2.0


class TokenCache:
    """Digest -> (requester, valid_until_ms or None); the oldest entry goes when full."""

    def __init__(self, max_entries: int = MAX_CACHED) -> None:
        self._max = max_entries
        self._tokens: OrderedDict[bytes, tuple[Requester, int | None, float]] = OrderedDict()
        # Alone, every logout goes through this process and forgets its tokens here, so an
        # entry is good until then. With other processes on the database (which can end a
        # session we have cached) an entry is trusted only this long before the database is
        # asked again.
        self.max_age_s: float | None = None

    def on_peers(self, peers: list[str]) -> None:
        self.max_age_s = PEER_MAX_AGE_S if peers else None

    def get(self, digest: bytes) -> tuple[Requester, int | None] | None:
        got = self._tokens.get(digest)
        if got is None:
            return None
        if self.max_age_s is not None and time.monotonic() - got[2] > self.max_age_s:
            del self._tokens[digest]
            return None
        return got[0], got[1]

    def put(self, digest: bytes, requester: Requester, valid_until_ms: int | None) -> None:
        self._tokens[digest] = (requester, valid_until_ms, time.monotonic())
        if len(self._tokens) > self._max:
            self._tokens.popitem(last=False)

    def forget_devices(self, user_id: str, device_ids: list[str] | None) -> None:
        """Drop the tokens of these devices of the user (None: of all their devices)."""
        for h, (req, _, _) in list(self._tokens.items()):
            if req.user_id == user_id and (device_ids is None or req.device_id in device_ids):
                del self._tokens[h]

    def forget_all_but(self, user_id: str, keep_token_id: int) -> None:
        """Drop every token of the user except the one with id `keep_token_id`."""
        for h, (req, _, _) in list(self._tokens.items()):
            if req.user_id == user_id and req.access_token_id != keep_token_id:
                del self._tokens[h]
