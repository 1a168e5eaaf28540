"""Typing notifications, receipts and read markers (spec modules of the same names)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from client_api.context import ClientContext, auth, ctx
from homeserver.errors import Codes, MatrixError, forbidden, invalid_param
from homeserver.http import json_response, read_json
from homeserver.receipts.service import FULLY_READ, ReceiptService, set_read_markers
from homeserver.rooms.typing import DEFAULT_TIMEOUT_MS, TypingService
from homeserver.types import is_valid_event_id, is_valid_room_id

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not is_valid_room_id(room_id):
        raise invalid_param("Invalid room id")
    return room_id


def _typing(c: ClientContext) -> TypingService:
    if c.typing is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Typing notifications are not enabled")
    return c.typing


def _receipts(c: ClientContext) -> ReceiptService:
    if c.receipts is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Receipts are not enabled")
    return c.receipts


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@routes.put(V + "/rooms/{room_id}/typing/{user_id}")
async def typing(request: web.Request) -> web.Response:
    requester = await auth(request)
    if request.match_info["user_id"] != requester.user_id:
        raise forbidden("You may only set your own typing state")
    room_id = _room_id(request)
    body = await read_json(request)
    is_typing = body.get("typing")
    if not isinstance(is_typing, bool):
        raise MatrixError(400, Codes.BAD_JSON, "typing must be a boolean")
    timeout = body.get("timeout", DEFAULT_TIMEOUT_MS)
    if not _is_int(timeout):
        raise MatrixError(400, Codes.BAD_JSON, "timeout must be an integer")
    if timeout < 0:
        raise invalid_param("timeout must not be negative")
    await _typing(ctx(request)).set_typing(room_id, requester.user_id, is_typing, timeout)
    return json_response({})


@routes.post(V + "/rooms/{room_id}/receipt/{receipt_type}/{event_id}")
async def receipt(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    room_id = _room_id(request)
    receipt_type = request.match_info["receipt_type"]
    event_id = request.match_info["event_id"]
    if not is_valid_event_id(event_id):
        raise invalid_param("Invalid event id")
    body = await read_json(request, allow_empty=True)
    thread_id = body.get("thread_id")
    if "thread_id" in body and (not isinstance(thread_id, str) or not thread_id):
        raise invalid_param("thread_id field must be a non-empty string")
    if receipt_type == FULLY_READ:
        if thread_id is not None:
            raise invalid_param("thread_id is not allowed for m.fully_read")
        await set_read_markers(_receipts(c), c.account_data, requester, room_id, event_id,
                               None, None)
    else:
        await _receipts(c).post_receipt(requester, room_id, receipt_type, event_id, thread_id)
    return json_response({})


@routes.post(V + "/rooms/{room_id}/read_markers")
async def read_markers(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    room_id = _room_id(request)
    body = await read_json(request)
    ids: dict[str, str | None] = {}
    for key in (FULLY_READ, "m.read", "m.read.private"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise MatrixError(400, Codes.BAD_JSON, f"{key} must be an event id")
        if value is not None and not is_valid_event_id(value):
            raise invalid_param(f"{key} is not a valid event id")
        ids[key] = value
    await set_read_markers(_receipts(c), c.account_data, requester, room_id, ids[FULLY_READ],
                           ids["m.read"], ids["m.read.private"])
    return json_response({})
