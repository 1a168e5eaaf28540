"""GET /events: the event stream of the user's rooms as one flat list (spec: deprecated since r0,
still specified; old bots and SyTest's fixtures use it, often as `timeout=0` to learn "now").

It is an incremental /sync from `from` (a sync token; absent means now) on the same engine, so
it wakes as /sync does; the timeline, ephemeral and invite events of each room are given with
their `room_id` (so are a room's account data events, tags among them), and presence and
global account data events as they are. A room whose timeline is `limited` loses the
events before its last TIMELINE_LIMIT, as the legacy stream of the reference server does."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.events.filter import SyncFilter
from homeserver.http import json_response, park, query_int
from homeserver.streams.tokens import SyncToken
from homeserver.types import JsonDict

routes = web.RouteTableDef()
TIMELINE_LIMIT = 100
FILTER = SyncFilter.parse({"room": {"timeline": {"limit": TIMELINE_LIMIT}}})


def _flatten(body: JsonDict) -> list[JsonDict]:
    chunk: list[JsonDict] = []
    rooms: dict[str, Any] = body.get("rooms", {})
    for room_id, room in rooms.get("join", {}).items():
        for ev in room.get("timeline", {}).get("events", []):
            chunk.append({**ev, "room_id": room_id})
        for ev in room.get("ephemeral", {}).get("events", []):
            chunk.append({**ev, "room_id": room_id})
        for ev in room.get("account_data", {}).get("events", []):
            chunk.append({**ev, "room_id": room_id})
    for room_id, room in rooms.get("invite", {}).items():
        for ev in room.get("invite_state", {}).get("events", []):
            if ev.get("type") == "m.room.member":
                chunk.append({**ev, "room_id": room_id})
    for room_id, room in rooms.get("leave", {}).items():
        for ev in room.get("timeline", {}).get("events", []):
            chunk.append({**ev, "room_id": room_id})
    chunk.extend(body.get("presence", {}).get("events", []))
    chunk.extend(body.get("account_data", {}).get("events", []))
    return chunk


@routes.get("/_matrix/client/{v:(v3|r0)}/events")
async def events(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    timeout = query_int(request, "timeout", 0, 0, 600_000)
    # `limit` (an old parameter some clients still send) is checked, then not used: every event
    # after `from` is returned, so that none is skipped.
    query_int(request, "limit", 0, 0, 1_000_000)
    raw = request.query.get("from")
    since = SyncToken.parse(raw) if raw else c.sync.current_token()
    if c.presence is not None and "room_id" not in request.query:
        # The v1 sync: a client polling it is online, as with /sync (a peek at one room is not
        # the client's sync).
        await c.presence.heartbeat(requester.user_id, requester.device_id, grace_ms=timeout)
    if timeout > 0:
        park(request)
    result = await c.sync.sync(requester, since, FILTER, timeout)
    return json_response({"start": raw or since.serialize(),
                          "end": result.body["next_batch"], "chunk": _flatten(result.body)})
