"""POST /login/get_token (spec v1.7, "Login via an existing session"): a device that is signed
in asks for a one-use login token with which another device signs in (m.login.token), as
clients do to sign in a new device by QR code. The token is the one single sign-on hands out
(homeserver/identity/sso.py): one use, two minutes. User-interactive auth (the password) is
asked first, so a stolen access token alone cannot make new sessions."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from client_api.register import password_uia
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, read_json
from homeserver.identity.sso import LOGIN_TOKEN_TTL_MS

routes = web.RouteTableDef()


@routes.post("/_matrix/client/v1/login/get_token")
async def get_token(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    if c.sso is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Login tokens are not available")
    body = await read_json(request, allow_empty=True)
    c.limiter.check("login", requester.user_id, c.config.rate_limits.login, requester.is_admin)
    await password_uia(request, requester, body)
    token = await c.sso.login_token(requester.user_id)
    return json_response({"login_token": token, "expires_in_ms": LOGIN_TOKEN_TTL_MS})
