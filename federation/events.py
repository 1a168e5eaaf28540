"""Event and state reads for other servers (/event, /state, /state_ids, /event_auth,
/get_missing_events, /backfill) and inbound transactions (/send)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from federation.context import fed, signed
from homeserver.errors import Codes, MatrixError, bad_json
from homeserver.http import json_response, query_int
from homeserver.types import is_valid_event_id

routes = web.RouteTableDef()
F = "/_matrix/federation/v1"


def _now() -> int:
    return int(time.time() * 1000)


def _event_id_param(request: web.Request) -> str:
    event_id = request.query.get("event_id")
    if event_id is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing event_id")
    if not is_valid_event_id(event_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Bad event_id")
    return event_id


@routes.put(F + "/send/{txn_id}")
async def send(request: web.Request) -> web.Response:
    origin, body = await signed(request)
    return json_response(await fed(request).inbound.transaction(
        origin, request.match_info["txn_id"], body))


@routes.get(F + "/event/{event_id}")
async def event(request: web.Request) -> web.Response:
    origin, _ = await signed(request)
    pdu = await fed(request).rooms.event(origin, request.match_info["event_id"])
    return json_response({"origin": fed(request).server_name, "origin_server_ts": _now(),
                          "pdus": [pdu]})


@routes.get(F + "/state/{room_id}")
async def state(request: web.Request) -> web.Response:
    origin, _ = await signed(request)
    st, chain = await fed(request).rooms.state(origin, request.match_info["room_id"],
                                               _event_id_param(request))
    return json_response({"pdus": [e.pdu for e in st], "auth_chain": [e.pdu for e in chain]})


@routes.get(F + "/state_ids/{room_id}")
async def state_ids(request: web.Request) -> web.Response:
    origin, _ = await signed(request)
    st, chain = await fed(request).rooms.state(origin, request.match_info["room_id"],
                                               _event_id_param(request))
    return json_response({"pdu_ids": [e.event_id for e in st],
                          "auth_chain_ids": [e.event_id for e in chain]})


@routes.get(F + "/event_auth/{room_id}/{event_id}")
async def event_auth(request: web.Request) -> web.Response:
    origin, _ = await signed(request)
    chain = await fed(request).rooms.event_auth(origin, request.match_info["room_id"],
                                                request.match_info["event_id"])
    return json_response({"auth_chain": [e.pdu for e in chain]})


def _ids(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or len(value) > 100 or not all(
            isinstance(v, str) for v in value):
        raise bad_json(f"{name} must be a list of at most 100 event ids")
    return list(value)


@routes.post(F + "/get_missing_events/{room_id}")
async def get_missing_events(request: web.Request) -> web.Response:
    origin, body = await signed(request)
    if not isinstance(body, dict):
        raise bad_json("Body must be an object")
    limit, min_depth = body.get("limit", 10), body.get("min_depth", 0)
    if not isinstance(limit, int) or not isinstance(min_depth, int) or isinstance(
            limit, bool) or isinstance(min_depth, bool):
        raise bad_json("limit and min_depth must be integers")
    events = await fed(request).rooms.missing_events(
        origin, request.match_info["room_id"], _ids(body.get("earliest_events", []),
                                                    "earliest_events"),
        # (absent lists are empty, as Synapse reads them: the answer is then empty too)
        _ids(body.get("latest_events", []), "latest_events"), max(0, min(limit, 20)),
        min_depth)
    return json_response({"events": events})


@routes.get(F + "/backfill/{room_id}")
async def backfill(request: web.Request) -> web.Response:
    origin, _ = await signed(request)
    start = request.query.getall("v", [])
    if not start or len(start) > 20 or not all(is_valid_event_id(v) for v in start):
        raise MatrixError(400, Codes.INVALID_PARAM, "v must name 1 to 20 event ids")
    limit = query_int(request, "limit", 10, minimum=1, maximum=100)
    events = await fed(request).rooms.backfill(origin, request.match_info["room_id"], start,
                                               limit)
    return json_response({"origin": fed(request).server_name, "origin_server_ts": _now(),
                          "pdus": events})
