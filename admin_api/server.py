"""The server's own admin endpoints: version, registration tokens, event reports, server
notices (Synapse's docs/admin_api/ version_api.md, registration_tokens.md, event_reports.md,
server_notices.md)."""

from __future__ import annotations

from aiohttp import web

from admin_api.context import admin_ctx, paging, require_admin
from homeserver.errors import bad_json, invalid_param, missing_param
from homeserver.http import json_response, query_bool, query_choice, read_json

routes = web.RouteTableDef()
A = "/_synapse/admin"


@routes.get(A + "/v1/server_version")
async def server_version(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response({"server_version": admin_ctx(request).server_version})


# -- registration tokens -------------------------------------------------------------------

@routes.get(A + "/v1/registration_tokens")
async def list_tokens(request: web.Request) -> web.Response:
    await require_admin(request)
    valid = None if "valid" not in request.query else query_bool(request, "valid", True)
    return json_response({"registration_tokens": await admin_ctx(request).tokens.list(valid)})


@routes.post(A + "/v1/registration_tokens/new")
async def new_token(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json(request, allow_empty=True)
    return json_response(await admin_ctx(request).tokens.create(body))


@routes.get(A + "/v1/registration_tokens/{token}")
async def get_token(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_ctx(request).tokens.get(request.match_info["token"]))


@routes.put(A + "/v1/registration_tokens/{token}")
async def update_token(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json(request, allow_empty=True)
    return json_response(await admin_ctx(request).tokens.update(request.match_info["token"],
                                                                body))


@routes.delete(A + "/v1/registration_tokens/{token}")
async def delete_token(request: web.Request) -> web.Response:
    await require_admin(request)
    await admin_ctx(request).tokens.delete(request.match_info["token"])
    return json_response({})


# -- event reports -------------------------------------------------------------------------

@routes.get(A + "/v1/event_reports")
async def event_reports(request: web.Request) -> web.Response:
    await require_admin(request)
    offset, limit = paging(request)
    reports, total = await admin_ctx(request).reports.event_reports(
        request.query.get("user_id"), request.query.get("room_id"),
        request.query.get("event_sender_user_id"),
        query_choice(request, "dir", ("f", "b"), "b") == "b", limit, offset)
    body: dict[str, object] = {"event_reports": reports, "total": total}
    if offset + len(reports) < total:
        body["next_token"] = offset + len(reports)
    return json_response(body)


def _report_id(request: web.Request) -> int:
    raw = request.match_info["report_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise invalid_param("The report_id parameter must be a string representing a "
                            "positive integer.")
    return int(raw)


@routes.get(A + "/v1/event_reports/{report_id}")
async def event_report(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_ctx(request).reports.event_report(_report_id(request)))


@routes.delete(A + "/v1/event_reports/{report_id}")
async def delete_event_report(request: web.Request) -> web.Response:
    await require_admin(request)
    await admin_ctx(request).reports.delete_event_report(_report_id(request))
    return json_response({})


# -- server notices ------------------------------------------------------------------------

@routes.post(A + "/v1/send_server_notice")
async def send_server_notice(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json(request)
    user_id, content = body.get("user_id"), body.get("content")
    if not isinstance(user_id, str):
        raise missing_param("user_id is required")
    if not isinstance(content, dict):
        raise missing_param("content is required")
    etype = body.get("type", "m.room.message")
    state_key = body.get("state_key")
    if not isinstance(etype, str) or (state_key is not None and not isinstance(state_key, str)):
        raise bad_json("type and state_key must be strings")
    event_id = await admin_ctx(request).notices.send(user_id, etype, content, state_key)
    return json_response({"event_id": event_id})

