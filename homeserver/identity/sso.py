"""Single sign-on through CAS and the m.login.token logins it ends in.

A validated CAS user is the account linked to it (user_external_ids), else the account of the
same mapped localpart (CAS was the identity of those accounts: Synapse's "grandfathered" users
too), else a new account without a password. The browser is then handed a login token: one
use, LOGIN_TOKEN_TTL_MS, exchanged at POST /login with m.login.token.
"""

from __future__ import annotations

import secrets
import time

from homeserver.config import CasConfig
from homeserver.errors import Codes, MatrixError
from homeserver.identity import cas
from homeserver.identity.http import ExternalError, ExternalHttp
from homeserver.identity.store import ThreepidStore
from homeserver.storage.database import Database
from homeserver.users.accounts import AccountService

LOGIN_TOKEN_TTL_MS = 120_000
PROVIDER_CAS = "cas"


def _now() -> int:
    return int(time.time() * 1000)


class SsoService:
    def __init__(self, db: Database, store: ThreepidStore, accounts: AccountService,
                 config: CasConfig, base_url: str, http: ExternalHttp) -> None:
        self._db = db
        self._store = store
        self._accounts = accounts
        self.config = config
        self._base = (config.service_url or base_url).rstrip("/")
        self._http = http

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def login_service(self, redirect_url: str) -> str:
        """The ticket URL CAS sends a login back to (it carries the client's redirectUrl)."""
        return cas.service_url(self._base, redirect_url)

    def ui_auth_service(self, session_id: str) -> str:
        """The ticket URL CAS sends a user-interactive auth stage back to."""
        return cas.ui_auth_service_url(self._base, session_id)

    def redirect(self, service: str) -> str:
        """Where /login/sso/redirect (or the m.login.sso fallback) sends the browser."""
        return cas.login_url(self.config.server_url, service)

    async def cas_ticket(self, ticket: str, service: str, create: bool = True) -> str | None:
        """Validate a CAS ticket for `service`; the account it names: linked, else of the same
        mapped localpart, else (when `create`, i.e. a login) a new one; None when there is
        none and `create` is off.

        Raises:
            MatrixError: 403 M_FORBIDDEN for a ticket CAS does not confirm, 502 if CAS cannot
                be asked.
        """
        try:
            reply = await self._http.request(
                "GET", cas.validate_url(self.config.server_url, ticket, service))
        except ExternalError as e:
            raise MatrixError(502, Codes.UNKNOWN, f"CAS server unreachable: {e}") from None
        parsed = cas.parse_validation(reply.body) if reply.status == 200 else None
        if parsed is None:
            raise MatrixError(403, Codes.FORBIDDEN, "CAS did not confirm the ticket")
        username, _attributes = parsed
        async with self._db.connection() as conn:
            user_id = await self._store.external_user(conn, PROVIDER_CAS, username)
        if user_id is None:
            localpart = cas.localpart_for(username)
            user_id = self._accounts.user_id_for(localpart)
            if await self._accounts.get_user(user_id) is None:
                if not create:
                    return None
                try:
                    user_id = await self._accounts.register(localpart, None)
                except MatrixError as e:
                    if e.errcode != Codes.USER_IN_USE:  # a concurrent first login made it
                        raise
            async with self._db.connection() as conn:
                await self._store.link_external(conn, PROVIDER_CAS, username, user_id)
        user = await self._accounts.get_user(user_id)
        if user is None or user.get("deactivated"):
            raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
        return user_id

    async def login_token(self, user_id: str) -> str:
        token = "plt_" + secrets.token_urlsafe(24)
        async with self._db.connection() as conn:
            await self._store.add_login_token(conn, token, user_id, _now() + LOGIN_TOKEN_TTL_MS)
        return token

    async def redeem(self, token: str) -> str:
        """The user a login token was made for, using it up; 403 if unknown or expired."""
        async with self._db.connection() as conn:
            user_id = await self._store.take_login_token(conn, token, _now())
        if user_id is None:
            raise MatrixError(403, Codes.FORBIDDEN, "Invalid or expired login token")
        return user_id
