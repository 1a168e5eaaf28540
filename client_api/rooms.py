"""Room endpoints: create, send, state, redact, membership, and reading events."""

from __future__ import annotations

import secrets

from aiohttp import web

from client_api.context import ClientContext, auth, ctx
from homeserver.errors import Codes, MatrixError, bad_json, invalid_param
from homeserver.events.filter import EventFilter
from homeserver.events.model import EventEntry
from homeserver.http import (
    json_response,
    parse_json_object,
    query_choice,
    query_int,
    read_json,
    validate,
)
from homeserver.rooms.reader import MEMBERSHIPS
from homeserver.rooms.state import RoomData
from homeserver.rooms.state_checks import check_initial_canonical_alias
from homeserver.types import (
    JsonDict,
    Requester,
    is_valid_event_id,
    is_valid_room_alias,
    is_valid_room_id,
    is_valid_server_name,
)

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"


def room_id_param(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not is_valid_room_id(room_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room id")
    return room_id


async def room_or_404(c: ClientContext, room_id: str) -> RoomData:
    if not is_valid_room_id(room_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room id")
    return await c.rooms.get_room(room_id)


def event_id_param(request: web.Request) -> str:
    event_id = request.match_info["event_id"]
    if not is_valid_event_id(event_id):
        raise invalid_param("Invalid event id")
    return event_id


def reason_param(body: JsonDict) -> str | None:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise bad_json("reason must be a string")
    return reason


@routes.post(V + "/createRoom")
async def create_room(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    body = await read_json(request, "create_room", allow_empty=True)
    own_alias = (f"#{body['room_alias_name']}:{c.config.server_name}"
                 if body.get("room_alias_name") is not None else None)
    if own_alias is not None and not is_valid_room_alias(own_alias):
        raise invalid_param("room_alias_name does not make a valid room alias")
    for s in body.get("initial_state", []):
        if s["type"] == "m.room.canonical_alias" and s.get("state_key", "") == "":
            check_initial_canonical_alias(s["content"], own_alias)
    c.limiter.check("create_room", requester.user_id, c.config.rate_limits.room_creation,
                    requester.is_admin)
    room_id = await c.rooms.create_room(requester, body)
    return json_response({"room_id": room_id})


@routes.put(V + "/rooms/{room_id}/send/{event_type}/{txn_id}")
@routes.post(V + "/rooms/{room_id}/send/{event_type}")
async def send(request: web.Request) -> web.Response:
    """Send a message; POST without a transaction id is the r0-era form older clients, bots
    and SyTest still use: every such request is a new transaction."""
    requester = await auth(request)
    c = ctx(request)
    body = await read_json(request)
    c.limiter.check("message", requester.user_id, c.config.rate_limits.message,
                    requester.is_admin)
    txn_id = request.match_info.get("txn_id") or "post:" + secrets.token_urlsafe(16)
    event_id = await c.rooms.send_message(requester, room_id_param(request),
                                          request.match_info["event_type"], body, txn_id)
    if c.presence is not None:  # sending is activity (spec: presence "last active")
        await c.presence.note_activity(requester.user_id, requester.device_id)
    return json_response({"event_id": event_id})


@routes.put(V + "/rooms/{room_id}/redact/{event_id}/{txn_id}")
@routes.post(V + "/rooms/{room_id}/redact/{event_id}")
async def redact(request: web.Request) -> web.Response:
    """Redact; POST without a transaction id is the r0-era form (as for send above)."""
    requester = await auth(request)
    c = ctx(request)
    body = await read_json(request, allow_empty=True)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise MatrixError(400, Codes.BAD_JSON, "reason must be a string")
    room_id = room_id_param(request)
    txn_id = request.match_info.get("txn_id") or "post:" + secrets.token_urlsafe(16)
    event_id = await c.rooms.redact(requester, room_id, event_id_param(request), reason, txn_id)
    return json_response({"event_id": event_id})


@routes.put(V + "/rooms/{room_id}/state/{event_type}/{state_key:.*}")
@routes.put(V + "/rooms/{room_id}/state/{event_type}")
async def put_state(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    body = await read_json(request)
    room_id = room_id_param(request)
    etype, state_key = request.match_info["event_type"], request.match_info.get("state_key", "")
    event_id = await c.rooms.set_state(requester, room_id, etype, state_key, body)
    return json_response({"event_id": event_id})


@routes.get(V + "/rooms/{room_id}/state/{event_type}/{state_key:.*}")
@routes.get(V + "/rooms/{room_id}/state/{event_type}")
async def get_state_event(request: web.Request) -> web.Response:
    requester = await auth(request)
    ev = await ctx(request).reader.state_event(requester, room_id_param(request),
                                               request.match_info["event_type"],
                                               request.match_info.get("state_key", ""))
    as_event = query_choice(request, "format", ("content", "event"), "content") == "event"
    return json_response(ev.to_client() if as_event else ev.to_client().get("content", {}))


@routes.get(V + "/rooms/{room_id}/state")
async def get_state(request: web.Request) -> web.Response:
    requester = await auth(request)
    events = await ctx(request).reader.state_events(requester, room_id_param(request))
    return json_response([e.to_client() for e in events])


@routes.get(V + "/rooms/{room_id}/members")
async def members(request: web.Request) -> web.Response:
    requester = await auth(request)
    room_id = room_id_param(request)
    want = request.query.get("membership")
    not_want = request.query.get("not_membership")
    for name, value in (("membership", want), ("not_membership", not_want)):
        if value is not None and value not in MEMBERSHIPS:
            raise invalid_param(f"{name} must be one of {', '.join(MEMBERSHIPS)}")
    events = await ctx(request).reader.members(requester, room_id, request.query.get("at"),
                                               want, not_want)
    return json_response({"chunk": [e.to_client() for e in events]})


@routes.get(V + "/rooms/{room_id}/joined_members")
async def joined_members(request: web.Request) -> web.Response:
    requester = await auth(request)
    joined = await ctx(request).reader.joined_members(requester, room_id_param(request))
    return json_response({"joined": joined})


@routes.get(V + "/joined_rooms")
async def joined_rooms(request: web.Request) -> web.Response:
    requester = await auth(request)
    return json_response({"joined_rooms": await ctx(request).reader.joined_rooms(
        requester.user_id)})


# ---------------------------------------------------------------------- membership


def _via(request: web.Request) -> list[str]:
    """Servers to join or knock on a remote room through (`via`, and the older
    `server_name`)."""
    return [s for s in request.query.getall("via", []) + request.query.getall("server_name", [])
            if is_valid_server_name(s)][:20]


async def _join(request: web.Request, room: str) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    body = await read_json(request, allow_empty=True)
    c.limiter.check("join", requester.user_id, c.config.rate_limits.joins, requester.is_admin)
    room_id = await c.rooms.join(requester, room, reason_param(body), servers=_via(request))
    return json_response({"room_id": room_id})


@routes.post(V + "/join/{room:[^/]+}")
async def join_by_id_or_alias(request: web.Request) -> web.Response:
    return await _join(request, request.match_info["room"])


@routes.post(V + "/rooms/{room_id}/join")
async def join_room(request: web.Request) -> web.Response:
    return await _join(request, request.match_info["room_id"])


@routes.post(V + "/knock/{room:[^/]+}")
async def knock(request: web.Request) -> web.Response:
    """Knock on a room by id or alias; `via`/`server_name` only matter for remote rooms."""
    requester = await auth(request)
    c = ctx(request)
    body = await read_json(request, allow_empty=True)
    reason = reason_param(body)
    c.limiter.check("join", requester.user_id, c.config.rate_limits.joins, requester.is_admin)
    room_id = await c.rooms.knock(requester, request.match_info["room"], reason,
                                  servers=_via(request))
    return json_response({"room_id": room_id})


async def _target(request: web.Request) -> tuple[Requester, str, JsonDict]:
    """The requester, room id and body of a membership change aimed at `body.user_id`."""
    requester = await auth(request)
    body = await read_json(request, "membership")
    return requester, room_id_param(request), body


@routes.post(V + "/rooms/{room_id}/invite")
async def invite(request: web.Request) -> web.Response:
    requester, room_id, body = await _target(request)
    await ctx(request).rooms.invite(requester, room_id, body["user_id"], reason_param(body),
                                    is_direct=bool(body.get("is_direct")))
    return json_response({})


@routes.post(V + "/rooms/{room_id}/leave")
async def leave(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request, allow_empty=True)
    room_id = room_id_param(request)
    await ctx(request).rooms.leave(requester, room_id, reason_param(body))
    return json_response({})


@routes.post(V + "/rooms/{room_id}/kick")
async def kick(request: web.Request) -> web.Response:
    requester, room_id, body = await _target(request)
    await ctx(request).rooms.kick(requester, room_id, body["user_id"], reason_param(body))
    return json_response({})


@routes.post(V + "/rooms/{room_id}/ban")
async def ban(request: web.Request) -> web.Response:
    requester, room_id, body = await _target(request)
    await ctx(request).rooms.ban(requester, room_id, body["user_id"], reason_param(body))
    return json_response({})


@routes.post(V + "/rooms/{room_id}/unban")
async def unban(request: web.Request) -> web.Response:
    requester, room_id, body = await _target(request)
    await ctx(request).rooms.unban(requester, room_id, body["user_id"], reason_param(body))
    return json_response({})


@routes.post(V + "/rooms/{room_id}/forget")
async def forget(request: web.Request) -> web.Response:
    requester = await auth(request)
    await ctx(request).rooms.forget(requester, request.match_info["room_id"])
    return json_response({})


# ---------------------------------------------------------------------- reading events


@routes.get(V + "/rooms/{room_id}/event/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    room = await room_or_404(c, request.match_info["room_id"])
    ev = await c.reader.visible_event(requester, room, event_id_param(request))
    joined = room.membership(requester.user_id) == "join"
    return json_response((await c.reader.served(requester, room, [ev], joined))[0])


@routes.get(V + "/rooms/{room_id}/messages")
async def messages(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    room = await room_or_404(c, request.match_info["room_id"])
    direction = query_choice(request, "dir", ("b", "f"))  # required (spec: GET /messages)
    limit = query_int(request, "limit", 10, 0, 1000)
    body = await c.reader.messages(requester, room, request.query.get("from"),
                                  request.query.get("to"), direction == "b", limit,
                                  room_event_filter(request))
    return json_response(body)


@routes.get(V + "/rooms/{room_id}/context/{event_id}")
async def context(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    room = await room_or_404(c, request.match_info["room_id"])
    limit = query_int(request, "limit", 10, 0, 100)
    body = await c.reader.context(requester, room, event_id_param(request), limit,
                                 room_event_filter(request))
    return json_response(body)


def room_event_filter(request: web.Request) -> EventFilter:
    """The `filter` query parameter: a RoomEventFilter as JSON (M_NOT_JSON / M_BAD_JSON)."""
    raw = request.query.get("filter")
    if not raw:
        return EventFilter()
    body = parse_json_object(raw, "filter")
    validate(body, "room_event_filter")
    return EventFilter.parse(body)


def _events_json(events: list[EventEntry], requester: Requester) -> list[dict[str, object]]:
    return [e.to_client(requester.user_id, requester.device_id) for e in events]


@routes.get("/_matrix/client/v1/rooms/{room_id}/relations/{event_id}")
@routes.get("/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/{rel_type}")
@routes.get("/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/{rel_type}/{event_type}")
async def relations(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    room = await room_or_404(c, request.match_info["room_id"])
    limit = query_int(request, "limit", 50, 0, 1000)
    direction = query_choice(request, "dir", ("b", "f"), "b")  # optional here (spec)
    events, next_batch = await c.reader.relations(
        requester, room, event_id_param(request), request.match_info.get("rel_type"),
        request.match_info.get("event_type"), request.query.get("from"), limit,
        direction == "b")
    body: dict[str, object] = {"chunk": _events_json(events, requester)}
    if next_batch is not None:
        body["next_batch"] = next_batch
    return json_response(body)
