"""Room endpoints: create, send, state, redact, membership, and reading events."""

from __future__ import annotations

from aiohttp import web

from client_api.context import ClientContext, auth, ctx
from client_api.room_state_checks import check_initial_canonical_alias, check_state_content
from homeserver.errors import Codes, MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.events.auth import AuthError
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
from homeserver.rooms.state import RoomData
from homeserver.types import (
    Requester,
    is_valid_event_id,
    is_valid_room_alias,
    is_valid_room_id,
)

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"
MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban")


async def room_or_404(c: ClientContext, room_id: str) -> RoomData:
    if not is_valid_room_id(room_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room id")
    return await c.rooms.get_room(room_id)


def event_id_param(request: web.Request) -> str:
    event_id = request.match_info["event_id"]
    if not is_valid_event_id(event_id):
        raise invalid_param("Invalid event id")
    return event_id


async def room_id_or_alias(c: ClientContext, value: str) -> str:
    """A room id, or the room an alias of this server's directory names."""
    if value.startswith("#"):
        if not is_valid_room_alias(value):
            raise invalid_param("Invalid room alias")
        return await c.reader.resolve_alias(value)
    await room_or_404(c, value)
    return value


async def profile_for(c: ClientContext, user_id: str) -> dict[str, object]:
    try:
        return await c.profiles.profile(user_id)
    except MatrixError:
        return {}


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
    room_id = await c.rooms.create_room(requester, body,
                                        await profile_for(c, requester.user_id))
    return json_response({"room_id": room_id})


@routes.put(V + "/rooms/{room_id}/send/{event_type}/{txn_id}")
async def send(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    body = await read_json(request)
    c.limiter.check("message", requester.user_id, c.config.rate_limits.message,
                    requester.is_admin)
    room_id = request.match_info["room_id"]
    await room_or_404(c, room_id)
    event_id = await c.rooms.send_message(requester, room_id, request.match_info["event_type"],
                                          body, request.match_info["txn_id"])
    if c.presence is not None:  # sending is activity (spec: presence "last active")
        await c.presence.note_activity(requester.user_id, requester.device_id)
    return json_response({"event_id": event_id})


@routes.put(V + "/rooms/{room_id}/redact/{event_id}/{txn_id}")
async def redact(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    body = await read_json(request, allow_empty=True)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise MatrixError(400, Codes.BAD_JSON, "reason must be a string")
    room_id = request.match_info["room_id"]
    await room_or_404(c, room_id)
    event_id = await c.rooms.redact(requester, room_id, event_id_param(request), reason,
                                    request.match_info["txn_id"])
    return json_response({"event_id": event_id})


@routes.put(V + "/rooms/{room_id}/state/{event_type}/{state_key:.*}")
@routes.put(V + "/rooms/{room_id}/state/{event_type}")
async def put_state(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    body = await read_json(request)
    room_id = request.match_info["room_id"]
    room = await room_or_404(c, room_id)
    etype, state_key = request.match_info["event_type"], request.match_info.get("state_key", "")
    await check_state_content(c, room, etype, state_key, body)
    event_id = await c.rooms.set_state(requester, room_id, etype, state_key, body)
    return json_response({"event_id": event_id})


async def _visible_state_room(c: ClientContext, requester: Requester,
                              room_id: str) -> tuple[RoomData, dict[tuple[str, str], str]]:
    """Current state for members; for former members, the state when they left."""
    try:
        room = await room_or_404(c, room_id)
    except MatrixError as e:
        if e.errcode != Codes.NOT_FOUND:
            raise
        # Spec: 403 to anyone not (previously) in the room, which a room that does not exist
        # includes; this also keeps room existence private.
        raise forbidden("You are not in this room") from None
    if c.rooms.may_see_state(room, requester.user_id):
        return room, {k: e.event_id for k, e in room.state.items()}
    member = room.state.get(("m.room.member", requester.user_id))
    if member is not None and member.membership in ("leave", "ban"):
        return room, await c.reader.state_ids_at(member)
    raise forbidden("You are not in this room")


@routes.get(V + "/rooms/{room_id}/state/{event_type}/{state_key:.*}")
@routes.get(V + "/rooms/{room_id}/state/{event_type}")
async def get_state_event(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    room, state = await _visible_state_room(c, requester, request.match_info["room_id"])
    key = (request.match_info["event_type"], request.match_info.get("state_key", ""))
    event_id = state.get(key)
    if event_id is None:
        raise not_found("Event not found")
    ev = (await c.reader.events([event_id]))[0]
    if query_choice(request, "format", ("content", "event"), "content") == "event":
        return json_response(ev.to_client())
    return json_response(ev.to_client().get("content", {}))


@routes.get(V + "/rooms/{room_id}/state")
async def get_state(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    room, state = await _visible_state_room(c, requester, request.match_info["room_id"])
    events = await c.reader.events(list(state.values()))
    return json_response([e.to_client() for e in events])


@routes.get(V + "/rooms/{room_id}/members")
async def members(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    room_id = request.match_info["room_id"]
    at = request.query.get("at")
    if at is not None:
        await room_or_404(c, room_id)
        state = await c.reader.state_ids_at_token(requester, room_id, at)
    else:
        _, state = await _visible_state_room(c, requester, room_id)
    member_ids = [v for (t, _), v in state.items() if t == "m.room.member"]
    events = await c.reader.events(member_ids)
    want = request.query.get("membership")
    not_want = request.query.get("not_membership")
    for name, value in (("membership", want), ("not_membership", not_want)):
        if value is not None and value not in MEMBERSHIPS:
            raise invalid_param(f"{name} must be one of {', '.join(MEMBERSHIPS)}")
    out = [e.to_client() for e in events
           if (want is None or e.membership == want)
           and (not_want is None or e.membership != not_want)]
    return json_response({"chunk": out})


@routes.get(V + "/rooms/{room_id}/joined_members")
async def joined_members(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    room = await room_or_404(c, request.match_info["room_id"])
    if not c.rooms.may_see_state(room, requester.user_id):
        raise forbidden("You are not in this room")
    joined = {}
    for (t, k), e in room.state.items():
        if t == "m.room.member" and e.membership == "join":
            content = e.pdu.get("content", {})
            joined[k] = {"display_name": content.get("displayname"),
                         "avatar_url": content.get("avatar_url")}
    return json_response({"joined": joined})


@routes.get(V + "/joined_rooms")
async def joined_rooms(request: web.Request) -> web.Response:
    requester = await auth(request)
    return json_response({"joined_rooms": await ctx(request).reader.joined_rooms(
        requester.user_id)})


# ---------------------------------------------------------------------- membership


async def _join(request: web.Request, room: str) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    body = await read_json(request, allow_empty=True)
    c.limiter.check("join", requester.user_id, c.config.rate_limits.joins, requester.is_admin)
    room_id = await room_id_or_alias(c, room)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise bad_json("reason must be a string")
    await c.rooms.update_membership(requester, room_id, requester.user_id, "join", reason,
                                    profile=await profile_for(c, requester.user_id))
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
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise bad_json("reason must be a string")
    c.limiter.check("join", requester.user_id, c.config.rate_limits.joins, requester.is_admin)
    room_id = await room_id_or_alias(c, request.match_info["room"])
    try:
        await c.rooms.update_membership(requester, room_id, requester.user_id, "knock", reason,
                                        profile=await profile_for(c, requester.user_id))
    except AuthError as e:
        raise forbidden(str(e)) from e
    return json_response({"room_id": room_id})


async def _membership(request: web.Request, membership: str, target_required: bool,
                      own: bool = False) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    body = await read_json(request, "membership" if target_required else None,
                           allow_empty=not target_required)
    room_id = request.match_info["room_id"]
    room = await room_or_404(c, room_id)
    target = requester.user_id if own else body["user_id"]
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise bad_json("reason must be a string")
    if membership == "unban":
        if room.membership(target) != "ban":
            raise forbidden("User is not banned")
        membership = "leave"
    extra = {}
    profile = None
    if membership == "invite":
        if room.membership(target) in ("join", "ban"):
            raise forbidden(f"{target} is already in the room or banned")
        extra = {"is_direct": True} if body.get("is_direct") else {}
        profile = await profile_for(c, target)
    if membership == "leave" and not own and room.membership(target) not in (
            "join", "invite", "knock", "ban"):
        raise forbidden(f"{target} is not in the room")
    try:
        await c.rooms.update_membership(requester, room_id, target, membership, reason,
                                        extra=extra, profile=profile)
    except AuthError as e:
        raise forbidden(str(e)) from e
    return json_response({})


@routes.post(V + "/rooms/{room_id}/invite")
async def invite(request: web.Request) -> web.Response:
    return await _membership(request, "invite", True)


@routes.post(V + "/rooms/{room_id}/leave")
async def leave(request: web.Request) -> web.Response:
    return await _membership(request, "leave", False, own=True)


@routes.post(V + "/rooms/{room_id}/kick")
async def kick(request: web.Request) -> web.Response:
    return await _membership(request, "leave", True)


@routes.post(V + "/rooms/{room_id}/ban")
async def ban(request: web.Request) -> web.Response:
    return await _membership(request, "ban", True)


@routes.post(V + "/rooms/{room_id}/unban")
async def unban(request: web.Request) -> web.Response:
    return await _membership(request, "unban", True)


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
    return json_response(ev.to_client(requester.user_id, requester.device_id))


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
