"""GET /events: the event stream of the user's rooms as one flat list (spec: deprecated since r0,
still specified; old bots and SyTest's fixtures use it, often as `timeout=0` to learn "now").

It is an incremental /sync from `from` (a sync token; absent means now) on the same engine, so
it wakes as /sync does; the timeline, ephemeral and invite events of each room are given with
their `room_id`, and presence events as they are. A room whose timeline is `limited` loses the
events before its last TIMELINE_LIMIT, as the legacy stream of the reference server does.

With `room_id` naming a room the user has not joined, it is a room preview instead (spec "Room
Previews", homeserver/sync/peek.py): that world-readable room's stream alone, 403 for a room
that is not world-readable. A guest must name a room."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from client_api.context import ClientContext, auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.events.filter import SyncFilter
from homeserver.http import json_response, park, query_int
from homeserver.streams.tokens import PaginationToken, SyncToken
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
    for room_id, room in rooms.get("invite", {}).items():
        for ev in room.get("invite_state", {}).get("events", []):
            if ev.get("type") == "m.room.member":
                chunk.append({**ev, "room_id": room_id})
    for room_id, room in rooms.get("leave", {}).items():
        for ev in room.get("timeline", {}).get("events", []):
            chunk.append({**ev, "room_id": room_id})
    chunk.extend(body.get("presence", {}).get("events", []))
    return chunk


def _since(c: ClientContext, raw: str | None) -> SyncToken:
    """`from`: a sync token, or the pagination token a room's initialSync gives as its
    messages' `end` (spec "Room Previews": initialSync, then /events from there), which is
    the room events' position, the other streams taken from now."""
    if not raw:
        return c.sync.current_token()
    token = PaginationToken.parse(raw)
    if isinstance(token, SyncToken):
        return token
    return replace(c.sync.current_token(), events=max(0, token.stream - 1))


@routes.get("/_matrix/client/{v:(v3|r0)}/events")
async def events(request: web.Request) -> web.Response:
    requester = await auth(request)
    c = ctx(request)
    timeout = query_int(request, "timeout", 0, 0, 600_000)
    # `limit` (an old parameter some clients still send) is checked, then not used: every event
    # after `from` is returned, so that none is skipped.
    query_int(request, "limit", 0, 0, 1_000_000)
    raw = request.query.get("from")
    given = _since(c, raw) if raw else None
    if c.presence is not None and not requester.is_guest:
        # Polling the stream is being online, as a /sync is (and as the reference server
        # counts it): SyTest's fixtures come online this way. Before "now" is taken, so that
        # a stream started now does not begin with the poller's own change.
        await c.presence.heartbeat(requester.user_id, requester.device_id, "online",
                                   grace_ms=timeout)
    since = given if given is not None else c.sync.current_token()
    room_id = request.query.get("room_id")
    if room_id is None and requester.is_guest:
        # A guest's stream is a room preview (as the reference server: its own rooms come
        # through /sync).
        raise MatrixError(400, Codes.MISSING_PARAM, "Guest users must give room_id")
    if room_id is not None and c.peek is not None and await c.peek.peeking(requester, room_id):
        if timeout > 0:
            park(request)
        peek = await c.peek.events(requester, room_id, since, timeout)
        return json_response({"start": raw or since.serialize(), "end": peek.end.serialize(),
                              "chunk": peek.chunk})
    if timeout > 0:
        park(request)
    result = await c.sync.sync(requester, since, FILTER, timeout)
    return json_response({"start": raw or since.serialize(),
                          "end": result.body["next_batch"], "chunk": _flatten(result.body)})
