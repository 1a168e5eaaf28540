"""Third-party identifiers of accounts (spec "Adding Account Administrative Contact
Information"): the homeserver's own e-mail validation, the 3PIDs an account has, and the
identity servers they were bound to through this homeserver.

E-mail is validated here, not delegated: `requestToken` mails a link to this server, following
it marks the session validated, and registration (m.login.email.identity), POST /account/3pid
and /account/3pid/add then accept the session's (sid, client_secret). A session whose sid the
homeserver does not know may still have been validated by an identity server (the deprecated
POST /account/3pid with an id_server): that server is asked. Binding is always the identity
server's business (POST /account/3pid/bind); the homeserver records where it bound what, so that
/unbind, /delete and deactivation can undo it without the client naming the server again.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from homeserver.errors import Codes, MatrixError
from homeserver.identity.client import IdentityClient
from homeserver.identity.mailer import Mailer, MailError
from homeserver.identity.store import ThreepidStore
from homeserver.storage.database import Database
from homeserver.types import JsonDict

SESSION_TTL_MS = 24 * 3600 * 1000
SUBMIT_PATH = "/_matrix/client/unstable/parley/email/submit_token"
_SECRET = re.compile(r"[0-9a-zA-Z.=_-]{1,255}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
PURPOSES = ("register", "add", "password")


def _now() -> int:
    return int(time.time() * 1000)


def check_client_secret(value: object, name: str = "client_secret") -> str:
    """A client secret or session id as the spec allows them: [0-9a-zA-Z.=_-], 1-255."""
    if not isinstance(value, str) or not _SECRET.fullmatch(value):
        raise MatrixError(400, Codes.INVALID_PARAM,
                          f"{name} must be 1-255 characters of [0-9a-zA-Z.=_-]")
    return value


def canonical_email(value: object) -> str:
    """The address as accounts are looked up by: trimmed and lower-cased (so that Bob@x and
    bob@x are one 3PID, as Synapse has it)."""
    if not isinstance(value, str) or not _EMAIL.fullmatch(value.strip()):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid e-mail address")
    return value.strip().lower()


def canonical_address(medium: object, address: object) -> tuple[str, str]:
    if medium == "email":
        return "email", canonical_email(address)
    if medium == "msisdn" and isinstance(address, str) and address.isdigit():
        return "msisdn", address
    if not isinstance(medium, str) or not isinstance(address, str) or not address:
        raise MatrixError(400, Codes.INVALID_PARAM, "medium and address are required")
    raise MatrixError(400, Codes.INVALID_PARAM, f"Unsupported medium {medium}")


class ThreepidService:
    def __init__(self, db: Database, store: ThreepidStore, mailer: Mailer,
                 identity: IdentityClient, base_url: str) -> None:
        self._db = db
        self._store = store
        self._mailer = mailer
        self.identity = identity
        self._base = base_url.rstrip("/")

    @property
    def email_enabled(self) -> bool:
        return self._mailer.enabled

    # ------------------------------------------------------------------ e-mail validation

    async def request_email_token(self, purpose: str, body: JsonDict) -> JsonDict:
        """Start (or repeat) an e-mail validation for `purpose` (register, add, password).

        Raises:
            MatrixError: 400 M_THREEPID_MEDIUM_NOT_SUPPORTED without e-mail, M_THREEPID_IN_USE
                (register, add) or M_THREEPID_NOT_FOUND (password), M_INVALID_PARAM for a bad
                secret, address or send_attempt.
        """
        assert purpose in PURPOSES
        if not self._mailer.enabled:
            raise MatrixError(400, Codes.THREEPID_MEDIUM_NOT_SUPPORTED,
                              "This server does not send e-mail")
        client_secret = check_client_secret(body.get("client_secret"))
        address = canonical_email(body.get("email"))
        attempt = body.get("send_attempt")
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
            raise MatrixError(400, Codes.INVALID_PARAM, "send_attempt must be an integer")
        next_link = body.get("next_link")
        if next_link is not None and (not isinstance(next_link, str)
                                      or not next_link.startswith(("https://", "http://"))):
            raise MatrixError(400, Codes.INVALID_PARAM, "next_link must be an http(s) URL")
        owner = await self.user_for("email", address)
        if purpose in ("register", "add") and owner is not None:
            raise MatrixError(400, Codes.THREEPID_IN_USE, "Email is already in use")
        if purpose == "password" and owner is None:
            raise MatrixError(400, Codes.THREEPID_NOT_FOUND, "Email not found")
        token = secrets.token_urlsafe(24)
        now = _now()
        async with self._db.transaction() as conn:
            await self._store.delete_sessions_before(conn, now - SESSION_TTL_MS)
            row = await self._store.upsert_session(
                conn, secrets.token_urlsafe(16), "email", address, client_secret, token,
                attempt, next_link, now)
        sid = str(row["session_id"])
        if row["token"] == token:  # new, or a higher send_attempt: (re)send
            link = self._base + SUBMIT_PATH + "?" + urlencode(
                {"token": token, "client_secret": client_secret, "sid": sid})
            try:
                await self._mailer.send(address, "Confirm your e-mail address",
                                        "To confirm this address for your Matrix account, "
                                        f"follow this link:\n\n{link}\n\n"
                                        "If you did not ask for this, ignore this message.\n")
            except MailError as e:
                raise MatrixError(502, Codes.UNKNOWN, f"Could not send the e-mail: {e}") from None
        return {"sid": sid, "submit_url": self._base + SUBMIT_PATH}

    async def submit_token(self, sid: object, client_secret: object, token: object) -> str | None:
        """Mark the session validated; returns its next_link (None if it has none).

        Raises:
            MatrixError: 400 M_THREEPID_AUTH_FAILED for an unknown session or a wrong token.
        """
        sid = check_client_secret(sid, "sid")
        client_secret = check_client_secret(client_secret)
        async with self._db.connection() as conn:
            row = await self._store.session(conn, sid)
            if (row is None or row["client_secret"] != client_secret
                    or not isinstance(token, str)
                    or not secrets.compare_digest(row["token"], token)
                    or row["created_ts"] < _now() - SESSION_TTL_MS):
                raise MatrixError(400, Codes.THREEPID_AUTH_FAILED,
                                  "Unknown session or wrong token")
            await self._store.mark_validated(conn, sid, _now())
        return row["next_link"]

    async def validated_session(self, sid: object, client_secret: object
                                ) -> tuple[str, str, int] | None:
        """(medium, address, validated_at) of a session this server validated, or None."""
        if not isinstance(sid, str) or not isinstance(client_secret, str):
            return None
        async with self._db.connection() as conn:
            row = await self._store.session(conn, sid)
        if (row is None or row["client_secret"] != client_secret or row["validated_at"] is None
                or row["created_ts"] < _now() - SESSION_TTL_MS):
            return None
        return row["medium"], row["address"], int(row["validated_at"])

    # ------------------------------------------------------------------ account 3PIDs

    async def user_for(self, medium: object, address: object) -> str | None:
        medium, address = canonical_address(medium, address)
        async with self._db.connection() as conn:
            return await self._store.owner(conn, medium, address)

    async def threepids(self, user_id: str) -> list[JsonDict]:
        async with self._db.connection() as conn:
            rows = await self._store.of_user(conn, user_id)
        return [{"medium": r["medium"], "address": r["address"],
                 "validated_at": r["validated_at"], "added_at": r["added_at"]} for r in rows]

    @staticmethod
    def parse_list(value: object) -> list[tuple[str, str]]:
        """An admin's `threepids` list ([{"medium", "address"}, ...]) as canonical pairs, in
        order and without repeats; 400 for anything else (before anything is changed)."""
        if not isinstance(value, list) or len(value) > 100:
            raise MatrixError(400, Codes.BAD_JSON, "threepids must be a list (at most 100)")
        out: list[tuple[str, str]] = []
        for item in value:
            if not isinstance(item, dict) or "medium" not in item or "address" not in item:
                raise MatrixError(400, Codes.MISSING_PARAM,
                                  "Each threepid needs a medium and an address")
            pair = canonical_address(item["medium"], item["address"])
            if pair not in out:
                out.append(pair)
        return out

    async def conflicts(self, user_id: str, threepids: list[tuple[str, str]]) -> None:
        """409 M_THREEPID_IN_USE if another account holds one of them."""
        async with self._db.connection() as conn:
            for medium, address in threepids:
                owner = await self._store.owner(conn, medium, address)
                if owner is not None and owner != user_id:
                    raise MatrixError(409, Codes.THREEPID_IN_USE,
                                      f"{address} is already in use by another account")

    async def replace(self, user_id: str, threepids: list[tuple[str, str]]) -> None:
        """The admin API's PUT /v2/users `threepids`: the account's 3PIDs become exactly
        these (new ones validated now). Those taken off are unbound first at the identity
        servers this homeserver bound them to, as the client API's delete does."""
        await self.conflicts(user_id, threepids)
        async with self._db.connection() as conn:
            current = {(r["medium"], r["address"]) for r in await self._store.of_user(
                conn, user_id)}
        for medium, address in sorted(current - set(threepids)):
            await self.unbind(user_id, medium, address)
        async with self._db.transaction() as conn:
            taken = await self._store.replace_threepids(conn, user_id, threepids, _now())
            if taken:  # another account took one since the check: nothing is changed
                raise MatrixError(409, Codes.THREEPID_IN_USE,
                                  f"{taken[0]} is already in use by another account")

    async def add(self, user_id: str, medium: str, address: str, validated_at: int) -> None:
        """Give the account this 3PID; 400 M_THREEPID_IN_USE if another account has it."""
        medium, address = canonical_address(medium, address)
        async with self._db.connection() as conn:
            owner = await self._store.add(conn, user_id, medium, address, validated_at, _now())
        if owner != user_id:
            raise MatrixError(400, Codes.THREEPID_IN_USE, "3PID is already in use")

    async def add_validated(self, user_id: str, sid: object, client_secret: object) -> None:
        """POST /account/3pid/add: a session this server validated."""
        check_client_secret(sid, "sid")
        check_client_secret(client_secret)
        session = await self.validated_session(sid, client_secret)
        if session is None:
            raise MatrixError(400, Codes.THREEPID_AUTH_FAILED, "No validated 3PID session")
        await self.add(user_id, *session)

    async def add_from_creds(self, user_id: str, creds: Any, bind: bool) -> None:
        """The deprecated POST /account/3pid: a session validated here, or else by the
        identity server the credentials name; bound there too when `bind`."""
        if not isinstance(creds, dict):
            raise MatrixError(400, Codes.BAD_JSON, "three_pid_creds is required")
        sid = check_client_secret(creds.get("sid"), "sid")
        client_secret = check_client_secret(creds.get("client_secret"))
        id_server, token = creds.get("id_server"), creds.get("id_access_token")
        session = await self.validated_session(sid, client_secret)
        if session is None and isinstance(id_server, str) and isinstance(token, str):
            found = await self.identity.validated_threepid(id_server, token, sid, client_secret)
            if found is not None:
                session = (*canonical_address(*found), _now())
        if session is None:
            raise MatrixError(400, Codes.THREEPID_AUTH_FAILED, "No validated 3PID session")
        await self.add(user_id, *session)
        if bind:
            if not isinstance(id_server, str) or not isinstance(token, str):
                raise MatrixError(400, Codes.MISSING_PARAM,
                                  "bind needs id_server and id_access_token")
            await self.bind(user_id, id_server, token, sid, client_secret)

    async def bind(self, user_id: str, id_server: str, token: str, sid: str,
                   client_secret: str) -> None:
        medium, address = await self.identity.bind(id_server, token, sid, client_secret, user_id)
        medium, address = canonical_address(medium, address)
        async with self._db.connection() as conn:
            await self._store.add_binding(conn, user_id, medium, address, id_server)

    async def unbind(self, user_id: str, medium: object, address: object,
                     id_server: object = None) -> str:
        """Unbind at `id_server`, or at every server this homeserver bound it to;
        "success" if each of them removed it, "no-support" if there was none or one could
        not (the spec's id_server_unbind_result)."""
        medium, address = canonical_address(medium, address)
        if id_server is not None and not isinstance(id_server, str):
            raise MatrixError(400, Codes.INVALID_PARAM, "id_server must be a string")
        async with self._db.connection() as conn:
            servers = ([id_server] if id_server else
                       await self._store.binding_servers(conn, user_id, medium, address))
        if not servers:
            return "no-support"
        result = "success"
        for server in servers:
            if not await self.identity.unbind(server, user_id, medium, address):
                result = "no-support"
            async with self._db.connection() as conn:
                await self._store.remove_binding(conn, user_id, medium, address, server)
        return result

    async def delete(self, user_id: str, medium: object, address: object,
                     id_server: object = None) -> str:
        """Unbind (as `unbind`) and take the 3PID off the account."""
        result = await self.unbind(user_id, medium, address, id_server)
        medium, address = canonical_address(medium, address)
        async with self._db.connection() as conn:
            await self._store.remove(conn, user_id, medium, address)
        return result

    async def unbind_all(self, user_id: str) -> str:
        """Deactivation: unbind every binding this homeserver made, and the account's 3PIDs
        at the servers it knows for them; the combined id_server_unbind_result."""
        async with self._db.connection() as conn:
            bound = {(r["medium"], r["address"]) for r in await self._store.bindings(
                conn, user_id)}
        if not bound:
            return "no-support"  # no identity server known to unbind from (the spec's case)
        result = "success"
        for medium, address in sorted(bound):
            try:
                if await self.unbind(user_id, medium, address) != "success":
                    result = "no-support"
            except MatrixError:
                result = "no-support"
        return result

    async def forget_user(self, user_id: str) -> None:
        """After deactivation: the account has no 3PIDs (they may be registered again)."""
        async with self._db.transaction() as conn:
            await self._store.remove_all(conn, user_id)
            for r in await self._store.bindings(conn, user_id):
                await self._store.remove_binding(conn, user_id, r["medium"], r["address"],
                                                 r["id_server"])
