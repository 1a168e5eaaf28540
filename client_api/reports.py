"""Reporting content (spec "Reporting content"): an event, a room or a user, for the server's
admins to read through the admin API (admin_api/server.py)."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import bad_json
from homeserver.http import json_response, read_json
from homeserver.types import JsonDict

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"


def _reason(body: JsonDict, required: bool) -> str | None:
    reason = body.get("reason")
    if reason is None and not required:
        return None
    if not isinstance(reason, str):
        raise bad_json("reason must be a string")
    return reason


@routes.post(V + "/rooms/{room_id}/report/{event_id}")
async def report_event(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request, allow_empty=True)
    score = body.get("score")  # removed from the spec in v1.13; kept when a client sends it
    if isinstance(score, bool) or not isinstance(score, int) or not -100 <= score <= 0:
        score = None
    reports = ctx(request).reports
    assert reports is not None
    await reports.report_event(requester, request.match_info["room_id"],
                               request.match_info["event_id"], _reason(body, False), score)
    return json_response({})


@routes.post(V + "/rooms/{room_id}/report")
async def report_room(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    reports = ctx(request).reports
    assert reports is not None
    await reports.report_room(requester, request.match_info["room_id"],
                              _reason(body, True) or "")
    return json_response({})


@routes.post(V + "/users/{user_id}/report")
async def report_user(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    reports = ctx(request).reports
    assert reports is not None
    await reports.report_user(requester, request.match_info["user_id"],
                              _reason(body, True) or "")
    return json_response({})
