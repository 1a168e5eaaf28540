"""Membership handshake routes: make_join/send_join, make_leave/send_leave,
make_knock/send_knock, invite (v2, and the deprecated v1);
the v1 send_join/send_leave forms answer in their older shape."""

from __future__ import annotations

from aiohttp import web

from federation.context import fed, signed
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response

routes = web.RouteTableDef()
F = "/_matrix/federation"


@routes.get(F + "/v1/make_join/{room_id}/{user_id}")
async def make_join(request: web.Request) -> web.Response:
    origin, _ = await signed(request)
    versions = request.query.getall("ver", ["1"])
    return json_response(await fed(request).rooms.make_membership(
        origin, request.match_info["room_id"], request.match_info["user_id"], "join",
        versions))


@routes.get(F + "/v1/make_leave/{room_id}/{user_id}")
async def make_leave(request: web.Request) -> web.Response:
    origin, _ = await signed(request)
    return json_response(await fed(request).rooms.make_membership(
        origin, request.match_info["room_id"], request.match_info["user_id"], "leave", None))


async def _send_join(request: web.Request) -> dict[str, object]:
    origin, body = await signed(request)
    rooms = fed(request).rooms
    entry = await rooms.send_membership(origin, request.match_info["room_id"],
                                        request.match_info["event_id"], body, "join")
    result: dict[str, object] = await rooms.join_response(entry)
    return result


@routes.put(F + "/v2/send_join/{room_id}/{event_id}")
async def send_join_v2(request: web.Request) -> web.Response:
    return json_response(await _send_join(request))


@routes.put(F + "/v1/send_join/{room_id}/{event_id}")
async def send_join_v1(request: web.Request) -> web.Response:
    return json_response([200, await _send_join(request)])


async def _send_leave(request: web.Request) -> None:
    origin, body = await signed(request)
    await fed(request).rooms.send_membership(origin, request.match_info["room_id"],
                                             request.match_info["event_id"], body, "leave")


@routes.put(F + "/v2/send_leave/{room_id}/{event_id}")
async def send_leave_v2(request: web.Request) -> web.Response:
    await _send_leave(request)
    return json_response({})


@routes.put(F + "/v1/send_leave/{room_id}/{event_id}")
async def send_leave_v1(request: web.Request) -> web.Response:
    await _send_leave(request)
    return json_response([200, {}])


@routes.get(F + "/v1/make_knock/{room_id}/{user_id}")
async def make_knock(request: web.Request) -> web.Response:
    origin, _ = await signed(request)
    versions = request.query.getall("ver", [])
    if not versions:
        raise MatrixError(400, Codes.MISSING_PARAM, "ver is required")
    return json_response(await fed(request).rooms.make_membership(
        origin, request.match_info["room_id"], request.match_info["user_id"], "knock",
        versions))


@routes.put(F + "/v1/send_knock/{room_id}/{event_id}")
async def send_knock(request: web.Request) -> web.Response:
    origin, body = await signed(request)
    rooms = fed(request).rooms
    entry = await rooms.send_membership(origin, request.match_info["room_id"],
                                        request.match_info["event_id"], body, "knock")
    return json_response(await rooms.knock_response(entry))


@routes.put(F + "/v1/invite/{room_id}/{event_id}")
async def invite_v1(request: web.Request) -> web.Response:
    """The deprecated v1 form (rooms of versions 1 and 2 only): the body is the event itself,
    its stripped room state in `unsigned.invite_room_state`; the answer is `[200, {event}]`."""
    origin, body = await signed(request)
    if not isinstance(body, dict):
        raise MatrixError(400, Codes.BAD_JSON, "The body must be the invite event")
    unsigned = body.get("unsigned")
    state = unsigned.get("invite_room_state", []) if isinstance(unsigned, dict) else []
    answer = await fed(request).rooms.receive_invite(
        origin, request.match_info["room_id"], request.match_info["event_id"],
        {"event": body, "room_version": "1", "invite_room_state": state})
    return json_response([200, answer])


@routes.put(F + "/v2/invite/{room_id}/{event_id}")
async def invite_v2(request: web.Request) -> web.Response:
    origin, body = await signed(request)
    return json_response(await fed(request).rooms.receive_invite(
        origin, request.match_info["room_id"], request.match_info["event_id"], body))
