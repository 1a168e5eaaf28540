"""Inbound request authentication: every federation request must carry a valid X-Matrix
signature by its origin, for this server, over exactly what was sent. Anything else is
401 M_UNAUTHORIZED before the handler does anything (400 when the origin is not even a server
name)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from federation.xmatrix import BadAuthHeader, parse_header, request_json
from homeserver.errors import Codes, MatrixError
from homeserver.events.checks import KeyFetcher
from homeserver.signing import SignatureError, verify_signed_json
from homeserver.types import is_valid_server_name


def unauthorized(msg: str) -> MatrixError:
    return MatrixError(401, Codes.UNAUTHORIZED, msg)


async def authenticate(request: web.Request, content: Any, server_name: str,
                       keys: KeyFetcher) -> str:
    """The origin server of a request whose X-Matrix signature verifies.

    Raises:
        MatrixError: 401 M_UNAUTHORIZED for a missing, malformed, misaddressed or bad one;
            400 M_UNAUTHORIZED for an origin that is not a valid server name.
    """
    headers = request.headers.getall("Authorization", [])
    if not headers:
        raise unauthorized("Missing X-Matrix authorization")
    problem = "No valid X-Matrix authorization"
    status = 401
    now = int(time.time() * 1000)
    for value in headers:
        try:
            auth = parse_header(value)
        except BadAuthHeader as e:
            problem, status = str(e), 401
            continue
        if not is_valid_server_name(auth.origin):
            # Not a server name at all (e.g. a non-numeric port): a malformed request, 400
            # as Synapse answers it (and SyTest expects), not a failed signature.
            problem, status = f"Bad origin: {auth.origin!r} is not a server name", 400
            continue
        if auth.origin == server_name:
            problem, status = "Bad origin", 401
            continue
        status = 401
        if auth.destination is not None and auth.destination != server_name:
            problem = "Request is for another server"
            continue
        known = await keys.server_keys(auth.origin, [auth.key_id], now)
        verify_key = known.get(auth.key_id)
        if verify_key is None:
            problem = f"Unknown key {auth.key_id} of {auth.origin}"
            continue
        signed = request_json(request.method, request.raw_path, auth.origin, server_name,
                              content)
        signed["signatures"] = {auth.origin: {auth.key_id: auth.sig}}
        try:
            verify_signed_json(signed, auth.origin, auth.key_id, verify_key)
        except SignatureError:
            problem = "X-Matrix signature does not verify"
            continue
        return auth.origin
    raise MatrixError(status, Codes.UNAUTHORIZED, problem)
