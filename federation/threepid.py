"""Third-party invites over the server-server API (spec "Third-party invites"):
/3pid/onbind, which an identity server calls (unsigned: the invites it carries are signed by
the identity server, and that is what is checked), and exchange_third_party_invite, by which
the invitee's server asks the room's server to redeem one."""

from __future__ import annotations

from aiohttp import web

from federation.context import fed, signed
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, read_json
from homeserver.identity.invites import ThirdPartyInvites

routes = web.RouteTableDef()


def _invites(request: web.Request) -> ThirdPartyInvites:
    invites = fed(request).third_party_invites
    if invites is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Third-party invites are not available")
    return invites


@routes.post("/_matrix/federation/v1/3pid/onbind")
async def onbind(request: web.Request) -> web.Response:
    body = await read_json(request)
    await _invites(request).on_bind(body)
    return json_response({})


@routes.put("/_matrix/federation/v1/exchange_third_party_invite/{room_id}")
async def exchange(request: web.Request) -> web.Response:
    _origin, event = await signed(request)
    room_id = request.match_info["room_id"]
    if not isinstance(event, dict) or event.get("room_id") != room_id or event.get(
            "type") != "m.room.member":
        raise MatrixError(400, Codes.BAD_JSON, "Body must be the room's m.room.member event")
    content = event.get("content")
    tpi = content.get("third_party_invite") if isinstance(content, dict) else None
    sender, target = event.get("sender"), event.get("state_key")
    if not isinstance(tpi, dict) or not isinstance(sender, str) or not isinstance(target, str):
        raise MatrixError(400, Codes.BAD_JSON, "The event needs a third_party_invite")
    await _invites(request).accept_exchange(room_id, sender, target, tpi.get("signed"))
    return json_response({})
