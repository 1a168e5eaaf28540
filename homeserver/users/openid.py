"""OpenID tokens (client-server spec "OpenID", server-server spec "OpenID"): a short-lived
token a user hands to a third party (an integration manager, a widget), which asks this
server's /openid/userinfo whose it is. Tokens are random, kept only as a SHA-256 hash, and
valid for an hour; expired ones are deleted when new ones are made."""

from __future__ import annotations

import hashlib
import secrets
import time

from homeserver.errors import Codes, MatrixError, forbidden
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester
from homeserver.users.openid_store import OpenIdStore

VALID_S = 3600


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class OpenIdService:
    def __init__(self, db: Database, store: OpenIdStore, server_name: str) -> None:
        self._db = db
        self._store = store
        self._server_name = server_name

    async def request_token(self, requester: Requester, user_id: str) -> JsonDict:
        if requester.user_id != user_id:
            raise forbidden("You may only ask for your own OpenID token")
        token = secrets.token_urlsafe(32)
        now = int(time.time() * 1000)
        async with self._db.transaction() as conn:
            await self._store.delete_expired(conn, now)
            await self._store.add(conn, _hash(token), user_id, now + VALID_S * 1000)
        return {"access_token": token, "token_type": "Bearer",
                "matrix_server_name": self._server_name, "expires_in": VALID_S}

    async def userinfo(self, token: str) -> JsonDict:
        """{"sub": user_id} for a valid token; 401 M_UNKNOWN_TOKEN otherwise."""
        async with self._db.connection() as conn:
            user_id = await self._store.user_of(conn, _hash(token), int(time.time() * 1000))
        if user_id is None:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown or expired OpenID token")
        return {"sub": user_id}
