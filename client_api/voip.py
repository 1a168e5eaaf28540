"""GET /voip/turnServer (spec "Voice over IP") from the `voip` configuration.

With a shared secret the credentials are the ones coturn's `use-auth-secret` checks (and
Synapse hands out): username "<expiry in seconds>:<user id>", password the base64 HMAC-SHA1 of
that username under the secret, valid for `turn_user_lifetime_ms`. Without one, the configured
username and password are given as they are. No TURN URIs configured: {} (spec: clients then
call without TURN)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import forbidden
from homeserver.http import json_response

routes = web.RouteTableDef()


@routes.get("/_matrix/client/{v:(v3|r0)}/voip/turnServer")
async def turn_server(request: web.Request) -> web.Response:
    requester = await auth(request)
    v = ctx(request).config.voip
    if not v.turn_uris:
        return json_response({})
    if requester.is_guest and not v.turn_allow_guests:
        raise forbidden("Guest users may not use the TURN server")
    ttl = v.turn_user_lifetime_ms // 1000
    if v.turn_shared_secret:
        expiry = (int(time.time() * 1000) + v.turn_user_lifetime_ms) // 1000
        username = f"{expiry}:{requester.user_id}"
        digest = hmac.new(v.turn_shared_secret.encode(), username.encode(), hashlib.sha1)
        password = base64.b64encode(digest.digest()).decode()
    elif v.turn_username and v.turn_password:
        username, password = v.turn_username, v.turn_password
    else:
        return json_response({})
    return json_response({"username": username, "password": password,
                          "uris": list(v.turn_uris), "ttl": ttl})
