"""What the homeserver asks an identity server (Identity Service API v2).

Lookups use the hashed form (`/hash_details`, then `/lookup` with sha256 of
"address medium pepper", or the plain "address medium" when the server offers only "none").
Store-invite, bind and the validated-3PID query carry the identity server access token the
client obtained (its `id_access_token`, from the IS's OpenID `/account/register`); unbind,
which the homeserver asks on its own behalf, is signed with the server key as an X-Matrix
request, as the spec asks of homeservers.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import urlsplit

from federation.xmatrix import sign_request
from homeserver.errors import Codes, MatrixError
from homeserver.identity.http import ExternalError, ExternalHttp
from homeserver.signing import ServerSigningKey
from homeserver.types import JsonDict, is_valid_server_name

V2 = "/_matrix/identity/v2"


def lookup_hash(address: str, medium: str, pepper: str) -> str:
    """The sha256 lookup form of one 3PID: unpadded URL-safe base64 (identity service API,
    "Client behaviour" of hashed lookups)."""
    digest = hashlib.sha256(f"{address} {medium} {pepper}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def identity_server_base(id_server: str) -> str:
    """https://<id_server>: the spec names identity servers by host[:port]; a client that
    sends a URL instead gets its https host:port used."""
    name = id_server
    if name.startswith("https://"):
        name = urlsplit(name).netloc
    if not is_valid_server_name(name):
        raise MatrixError(400, Codes.INVALID_PARAM, "id_server must be a host[:port]")
    return f"https://{name}"


def _unreachable(id_server: str, e: Exception) -> MatrixError:
    return MatrixError(502, Codes.UNKNOWN, f"Identity server {id_server} unreachable: {e}")


class IdentityClient:
    def __init__(self, http: ExternalHttp, key: ServerSigningKey) -> None:
        self._http = http
        self._key = key

    async def _call(self, id_server: str, method: str, path: str, token: str | None,
                    body: JsonDict | None = None, params: dict[str, str] | None = None,
                    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            reply = await self._http.request(method, identity_server_base(id_server) + path,
                                             json=body, headers=headers, params=params)
        except ExternalError as e:
            raise _unreachable(id_server, e) from None
        return reply.status, reply.json()

    @staticmethod
    def _fail(id_server: str, what: str, status: int, body: Any) -> MatrixError:
        errcode = body.get("errcode") if isinstance(body, dict) else None
        message = body.get("error") if isinstance(body, dict) else None
        code = errcode if isinstance(errcode, str) and errcode.startswith("M_") else Codes.UNKNOWN
        return MatrixError(400 if 400 <= status < 500 else 502, code,
                           f"{what} at {id_server} failed ({status}): {message or ''}".strip())

    async def lookup(self, id_server: str, token: str, medium: str, address: str) -> str | None:
        """The Matrix ID bound to the 3PID at this identity server, if any."""
        status, details = await self._call(id_server, "GET", V2 + "/hash_details", token)
        if status != 200 or not isinstance(details, dict):
            raise self._fail(id_server, "hash_details", status, details)
        algorithms = details.get("algorithms")
        pepper = details.get("lookup_pepper")
        algorithms = algorithms if isinstance(algorithms, list) else []
        if "sha256" in algorithms and isinstance(pepper, str):
            key, algorithm = lookup_hash(address, medium, pepper), "sha256"
        elif "none" in algorithms:
            key, algorithm = f"{address} {medium}", "none"
        else:
            raise MatrixError(400, Codes.UNKNOWN,
                              f"{id_server} offers no lookup algorithm Parley knows")
        status, body = await self._call(id_server, "POST", V2 + "/lookup", token, {
            "addresses": [key], "algorithm": algorithm, "pepper": pepper or ""})
        if status != 200 or not isinstance(body, dict):
            raise self._fail(id_server, "lookup", status, body)
        mappings = body.get("mappings")
        mxid = mappings.get(key) if isinstance(mappings, dict) else None
        return mxid if isinstance(mxid, str) else None

    async def store_invite(self, id_server: str, token: str, params: JsonDict) -> JsonDict:
        """Ask the identity server to hold a third-party invite; its answer (token,
        public_keys, display_name) as it gave it, checked for the fields an invite needs."""
        status, body = await self._call(id_server, "POST", V2 + "/store-invite", token, params)
        if status != 200 or not isinstance(body, dict):
            raise self._fail(id_server, "store-invite", status, body)
        if not isinstance(body.get("token"), str) or not body["token"]:
            raise MatrixError(502, Codes.UNKNOWN, f"{id_server} gave no invite token")
        return body

    async def bind(self, id_server: str, token: str, sid: str, client_secret: str,
                   mxid: str) -> tuple[str, str]:
        """Bind the 3PID the identity server validated in session `sid` to `mxid`; returns
        its (medium, address)."""
        status, body = await self._call(id_server, "POST", V2 + "/3pid/bind", token, {
            "sid": sid, "client_secret": client_secret, "mxid": mxid})
        if status != 200 or not isinstance(body, dict):
            raise self._fail(id_server, "bind", status, body)
        medium, address = body.get("medium"), body.get("address")
        if not isinstance(medium, str) or not isinstance(address, str):
            raise MatrixError(502, Codes.UNKNOWN, f"{id_server} bound no medium and address")
        return medium, address

    async def unbind(self, id_server: str, mxid: str, medium: str, address: str) -> bool:
        """Remove the binding; False if the identity server does not support or know it
        (4xx, 501), so the caller reports `no-support` rather than failing."""
        body: JsonDict = {"mxid": mxid, "threepid": {"medium": medium, "address": address}}
        base = identity_server_base(id_server)
        destination = urlsplit(base).netloc
        path = V2 + "/3pid/unbind"
        auth = sign_request(self._key, "POST", path, destination, body)
        try:
            reply = await self._http.request("POST", base + path, json=body,
                                             headers={"Authorization": auth})
        except ExternalError as e:
            raise _unreachable(id_server, e) from None
        if 200 <= reply.status < 300:
            return True
        if 400 <= reply.status < 500 or reply.status == 501:
            return False
        raise self._fail(id_server, "unbind", reply.status, reply.json())

    async def validated_threepid(self, id_server: str, token: str, sid: str,
                                 client_secret: str) -> tuple[str, str] | None:
        """The (medium, address) the identity server validated in session `sid`, or None."""
        status, body = await self._call(id_server, "GET", V2 + "/3pid/getValidated3pid", token,
                                        params={"sid": sid, "client_secret": client_secret})
        if status != 200 or not isinstance(body, dict):
            return None
        medium, address = body.get("medium"), body.get("address")
        if not isinstance(medium, str) or not isinstance(address, str):
            return None
        return medium, address

    async def key_is_valid(self, url: str, public_key: str) -> bool:
        """Whether the identity server still vouches for `public_key` (its key_validity_url);
        False when it cannot be asked: an unverifiable invite is not accepted."""
        if not url.startswith("https://"):
            return False
        try:
            reply = await self._http.request("GET", url, params={"public_key": public_key})
        except ExternalError:
            return False
        body = reply.json()
        return reply.status == 200 and isinstance(body, dict) and body.get("valid") is True
