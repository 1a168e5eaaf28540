"""Synapse's rooms admin API and purge history API (docs/admin_api/rooms.md and
purge_history_api.md there)."""

from __future__ import annotations

from aiohttp import web

from admin_api.context import admin_ctx, paging, require_admin
from client_api.rooms import room_event_filter
from homeserver.admin.store import ROOM_ORDER
from homeserver.errors import bad_json, invalid_param, missing_param
from homeserver.http import json_response, query_choice, query_int, read_json

routes = web.RouteTableDef()
A = "/_synapse/admin"


@routes.get(A + "/v1/rooms")
async def list_rooms(request: web.Request) -> web.Response:
    await require_admin(request)
    offset, limit = paging(request)
    rooms, total = await admin_ctx(request).rooms.list_rooms(
        request.query.get("search_term"),
        query_choice(request, "order_by", tuple(ROOM_ORDER), "name"),
        query_choice(request, "dir", ("f", "b"), "f") == "b", limit, offset)
    body: dict[str, object] = {"rooms": rooms, "offset": offset, "total_rooms": total}
    if offset + len(rooms) < total:
        body["next_batch"] = offset + len(rooms)
    if offset > 0:
        body["prev_batch"] = max(0, offset - limit)
    return json_response(body)


@routes.get(A + "/v1/rooms/{room_id}")
async def room_details(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_ctx(request).rooms.room(request.match_info["room_id"]))


@routes.get(A + "/v1/rooms/{room_id}/members")
async def room_members(request: web.Request) -> web.Response:
    await require_admin(request)
    members = await admin_ctx(request).rooms.members(request.match_info["room_id"])
    return json_response({"members": members, "total": len(members)})


@routes.get(A + "/v1/rooms/{room_id}/state")
async def room_state(request: web.Request) -> web.Response:
    await require_admin(request)
    rooms = admin_ctx(request).rooms
    await rooms.room(request.match_info["room_id"])
    return json_response({"state": await rooms.state(request.match_info["room_id"])})


@routes.get(A + "/v1/rooms/{room_id}/messages")
async def room_messages(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    rooms = admin_ctx(request).rooms
    await rooms.room(request.match_info["room_id"])
    body = await rooms.messages(
        requester, request.match_info["room_id"], request.query.get("from"),
        request.query.get("to"), query_choice(request, "dir", ("b", "f"), "f") == "b",
        query_int(request, "limit", 10, 0, 1000), room_event_filter(request))
    return json_response(body)


@routes.get(A + "/v1/rooms/{room_id}/block")
async def get_block(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_ctx(request).rooms.blocked(request.match_info["room_id"]))


@routes.put(A + "/v1/rooms/{room_id}/block")
async def put_block(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await read_json(request)
    if not isinstance(body.get("block"), bool):
        raise bad_json("block must be a boolean")
    await admin_ctx(request).rooms.set_blocked(requester, request.match_info["room_id"],
                                               body["block"])
    return json_response({"block": body["block"]})


@routes.post(A + "/v1/rooms/{room_id}/make_room_admin")
async def make_room_admin(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await read_json(request, allow_empty=True)
    user_id = body.get("user_id", requester.user_id)
    if not isinstance(user_id, str):
        raise bad_json("user_id must be a string")
    await admin_ctx(request).rooms.make_room_admin(request.match_info["room_id"], user_id)
    return json_response({})


def _delete_body(body: dict[str, object]) -> None:
    for key in ("block", "purge", "force_purge"):
        if key in body and not isinstance(body[key], bool):
            raise bad_json(f"{key} must be a boolean")
    for key in ("new_room_user_id", "room_name", "message"):
        if key in body and not isinstance(body[key], str):
            raise bad_json(f"{key} must be a string")


@routes.post(A + "/v1/join/{room_id}")
async def join_user(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await read_json(request)
    user_id = body.get("user_id")
    if not isinstance(user_id, str):
        raise missing_param("user_id is required")
    room_id = await admin_ctx(request).rooms.join_user(requester, request.match_info["room_id"],
                                                       user_id)
    return json_response({"room_id": room_id})


@routes.delete(A + "/v2/rooms/{room_id}")
async def delete_room(request: web.Request) -> web.Response:
    """Deletion as a background job: answered with its delete_id at once."""
    requester = await require_admin(request)
    body = await read_json(request, allow_empty=True)
    _delete_body(body)
    delete_id = await admin_ctx(request).rooms.delete_room(
        requester, request.match_info["room_id"], body)
    return json_response({"delete_id": delete_id})


@routes.delete(A + "/v1/rooms/{room_id}")
async def delete_room_v1(request: web.Request) -> web.Response:
    """The older deletion API: answered with the outcome when the room is gone."""
    requester = await require_admin(request)
    body = await read_json(request, allow_empty=True)
    _delete_body(body)
    return json_response(await admin_ctx(request).rooms.delete_room_now(
        requester, request.match_info["room_id"], body))


@routes.get(A + "/v2/rooms/{room_id}/delete_status")
async def delete_status_of_room(request: web.Request) -> web.Response:
    await require_admin(request)
    jobs = await admin_ctx(request).rooms.jobs_of_room(request.match_info["room_id"],
                                                       "delete_room")
    return json_response({"results": jobs})


@routes.get(A + "/v2/rooms/delete_status/{delete_id}")
async def delete_status(request: web.Request) -> web.Response:
    await require_admin(request)
    job = await admin_ctx(request).rooms.job(request.match_info["delete_id"], "delete_room")
    return json_response(job)


async def _purge(request: web.Request, event_id: str | None) -> web.Response:
    await require_admin(request)
    body = await read_json(request, allow_empty=True)
    delete_local = body.get("delete_local_events", False)
    if not isinstance(delete_local, bool):
        raise bad_json("delete_local_events must be a boolean")
    ts = None
    if event_id is None:
        event_id = body.get("purge_up_to_event_id")
        if event_id is not None and not isinstance(event_id, str):
            raise bad_json("purge_up_to_event_id must be a string")
    if event_id is None and "purge_up_to_ts" in body:
        ts = body["purge_up_to_ts"]
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise invalid_param("purge_up_to_ts must be an int")
    if event_id is None and ts is None:
        raise missing_param("must specify purge_up_to_event_id or purge_up_to_ts")
    purge_id = await admin_ctx(request).rooms.purge_history(
        request.match_info["room_id"], event_id, ts, delete_local)
    return json_response({"purge_id": purge_id})


@routes.post(A + "/v1/purge_history/{room_id}")
async def purge_history(request: web.Request) -> web.Response:
    return await _purge(request, None)


@routes.post(A + "/v1/purge_history/{room_id}/{event_id}")
async def purge_history_to(request: web.Request) -> web.Response:
    return await _purge(request, request.match_info["event_id"])


@routes.get(A + "/v1/purge_history_status/{purge_id}")
async def purge_status(request: web.Request) -> web.Response:
    await require_admin(request)
    job = await admin_ctx(request).rooms.job(request.match_info["purge_id"], "purge_history")
    return json_response(job)


@routes.get(A + "/v1/statistics/database/rooms")
async def room_sizes(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response({"rooms": await admin_ctx(request).rooms.room_sizes()})


@routes.get(A + "/v1/rooms/{room_id}/forward_extremities")
async def forward_extremities(request: web.Request) -> web.Response:
    await require_admin(request)
    found = await admin_ctx(request).room_events.forward_extremities(
        request.match_info["room_id"])
    return json_response({"count": len(found), "results": found})


@routes.delete(A + "/v1/rooms/{room_id}/forward_extremities")
async def delete_forward_extremities(request: web.Request) -> web.Response:
    await require_admin(request)
    deleted = await admin_ctx(request).room_events.delete_extra_extremities(
        request.match_info["room_id"])
    return json_response({"deleted": deleted})


@routes.get(A + "/v1/rooms/{room_id}/context/{event_id}")
async def event_context(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await admin_ctx(request).room_events.context(
        requester, request.match_info["room_id"], request.match_info["event_id"],
        query_int(request, "limit", 10, 0, 100), room_event_filter(request))
    return json_response(body)


@routes.get(A + "/v1/rooms/{room_id}/timestamp_to_event")
async def timestamp_to_event(request: web.Request) -> web.Response:
    await require_admin(request)
    if "ts" not in request.query:
        raise missing_param("ts is required")
    ts = query_int(request, "ts", 0)
    forwards = query_choice(request, "dir", ("f", "b"), "f") == "f"
    return json_response(await admin_ctx(request).room_events.timestamp_to_event(
        request.match_info["room_id"], ts, forwards))


@routes.get(A + "/v1/fetch_event/{event_id}")
async def fetch_event(request: web.Request) -> web.Response:
    await require_admin(request)
    event = await admin_ctx(request).room_events.fetch_event(request.match_info["event_id"])
    return json_response({"event": event})

