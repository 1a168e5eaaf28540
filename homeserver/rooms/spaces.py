"""Spaces and room summaries: GET /_matrix/client/v1/rooms/{roomId}/hierarchy (spec "Spaces")
and GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (spec v1.15, MSC3266).

Both answer from the current state this server holds. Who may see a room follows the
hierarchy endpoint's list: a member, an invitee, anyone when the join rule is `public`, a
member of an allowed room when it is `restricted`/`knock_restricted`, anyone when the room is
knockable, anyone when history is `world_readable`; a banned user only in the last case. Child
rooms this server is not in are left out (no federation /hierarchy request yet).

Paging is stateless: the `from` token carries the offset into the depth-first walk together
with the root, `suggested_only` and `max_depth` it was made for; a later page walks the tree
again and skips what was served. Unlike a server-side session this works on every instance and
never expires, at the cost of walking the first pages again (bounded by `MAX_ROOMS`).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.rooms.service import RoomService
from homeserver.rooms.state import RoomData
from homeserver.types import JsonDict

MAX_DEPTH = 50
MAX_ROOMS = 1000  # rooms one walk looks at, at most


def _content(room: RoomData, etype: str, key: str = "") -> JsonDict:
    ev = room.state.get((etype, key))
    content = ev.pdu.get("content") if ev is not None else None
    return content if isinstance(content, dict) else {}


def _valid_order(order: Any) -> bool:
    return (isinstance(order, str) and len(order) <= 50
            and all("\x20" <= ch <= "\x7e" for ch in order))


def _children(room: RoomData, suggested_only: bool) -> list[tuple[str, JsonDict, int, str]]:
    """The space's valid m.space.child events (a non-empty `via`), in the spec's order:
    by `order`, then origin_server_ts, then room id; as (room id, content, ts, sender)."""
    out = []
    for (etype, key), ev in room.state.items():
        if etype != "m.space.child" or not key.startswith("!"):
            continue
        content = ev.pdu.get("content")
        if not isinstance(content, dict):
            continue
        via = content.get("via")
        if not isinstance(via, list) or not via or not all(isinstance(v, str) for v in via):
            continue
        if suggested_only and content.get("suggested") is not True:
            continue
        out.append((key, content, int(ev.pdu.get("origin_server_ts", 0)), ev.sender))

    def sort_key(c: tuple[str, JsonDict, int, str]) -> tuple[bool, str, int, str]:
        order = c[1].get("order")
        if isinstance(order, str) and _valid_order(order):
            return (False, order, c[2], c[0])
        return (True, "", c[2], c[0])

    return sorted(out, key=sort_key)


def _token(data: JsonDict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def _parse_token(token: str) -> JsonDict:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError) as e:
        raise invalid_param("Unknown pagination token") from e
    if not isinstance(data, dict) or not isinstance(data.get("o"), int) or data["o"] < 0:
        raise invalid_param("Unknown pagination token")
    return data


class SpaceService:
    def __init__(self, rooms: RoomService) -> None:
        self._rooms = rooms

    async def _known(self, room_id: str) -> RoomData | None:
        room = await self._rooms.rooms.get(room_id)
        if room is None or ("m.room.create", "") not in room.state:
            return None
        return room

    async def accessible(self, room: RoomData, user_id: str | None) -> bool:
        """Whether `user_id` (None: an unauthenticated client) may see the room's summary."""
        world_readable = _content(room, "m.room.history_visibility").get(
            "history_visibility") == "world_readable"
        if world_readable:
            return True
        membership = room.membership(user_id) if user_id is not None else None
        if membership == "ban":
            return False
        if membership in ("join", "invite", "knock"):
            return True
        rule = _content(room, "m.room.join_rules").get("join_rule")
        v = room.version
        if rule == "public" or (rule == "knock" and v.knock_join_rule) or (
                rule == "knock_restricted" and v.knock_restricted_join_rule):
            return True
        if user_id is not None and rule in ("restricted", "knock_restricted") and (
                v.restricted_join_rule):
            for allowed in self._allowed_rooms(room):
                other = await self._known(allowed)
                if other is not None and other.membership(user_id) == "join":
                    return True
        return False

    @staticmethod
    def _allowed_rooms(room: RoomData) -> list[str]:
        content = _content(room, "m.room.join_rules")
        if content.get("join_rule") not in ("restricted", "knock_restricted"):
            return []
        allow = content.get("allow")
        if not isinstance(allow, list):
            return []
        return [a["room_id"] for a in allow if isinstance(a, dict)
                and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)]

    def summary(self, room: RoomData) -> JsonDict:
        """The room_summary.yaml fields: the public room chunk plus room_type,
        allowed_room_ids, encryption and room_version."""
        entry = self._rooms.directory_entry(room)
        allowed = self._allowed_rooms(room)
        if allowed:
            entry["allowed_room_ids"] = allowed
        algorithm = _content(room, "m.room.encryption").get("algorithm")
        if isinstance(algorithm, str):
            entry["encryption"] = algorithm
        entry["room_version"] = room.version.identifier
        return entry

    async def room_summary(self, user_id: str | None, room_id_or_alias: str) -> JsonDict:
        """GET /room_summary: 404 M_NOT_FOUND for a room this server does not know and for
        one the caller may not see (so that the answer does not tell them apart)."""
        room_id = await self._rooms.resolve_room(room_id_or_alias)
        room = await self._known(room_id)
        if room is None or not await self.accessible(room, user_id):
            raise not_found("Room not found")
        entry = self.summary(room)
        if user_id is not None:
            entry["membership"] = room.membership(user_id) or "leave"
        return entry

    async def hierarchy(self, user_id: str, room_id: str, suggested_only: bool,
                        max_depth: int | None, limit: int, from_token: str | None) -> JsonDict:
        """One page of the depth-first walk from `room_id`.

        Raises:
            MatrixError: 403 M_FORBIDDEN when the user may not see the root (or it is
                unknown), 400 M_INVALID_PARAM for a bad token or one made for other
                parameters.
        """
        depth_limit = MAX_DEPTH if max_depth is None else min(max_depth, MAX_DEPTH)
        offset = 0
        if from_token is not None:
            data = _parse_token(from_token)
            if data.get("r") != room_id:
                raise invalid_param("The pagination token is for another room")
            if data.get("s") != suggested_only or data.get("d") != max_depth:
                raise invalid_param(
                    "suggested_only and max_depth cannot change on paginated requests")
            offset = data["o"]
        root = await self._known(room_id)
        if root is None or not await self.accessible(root, user_id):
            raise forbidden("You are not allowed to view this room.")

        queue: list[tuple[str, int]] = [(room_id, 0)]
        seen: set[str] = set()
        served = 0
        rooms: list[JsonDict] = []
        more = False
        while queue and served < MAX_ROOMS:
            rid, depth = queue.pop(0)
            if rid in seen:
                continue
            seen.add(rid)
            room = root if rid == room_id else await self._known(rid)
            if room is None or (room is not root and not await self.accessible(room, user_id)):
                continue
            is_space = _content(room, "m.room.create").get("type") == "m.space"
            children = _children(room, suggested_only) if is_space else []
            if served >= offset:
                if len(rooms) == limit:
                    more = True
                    break
                entry = self.summary(room)
                entry["children_state"] = [
                    {"type": "m.space.child", "state_key": cid, "content": content,
                     "sender": sender, "origin_server_ts": ts}
                    for cid, content, ts, sender in children]
                rooms.append(entry)
            served += 1
            if depth < depth_limit:
                queue[0:0] = [(cid, depth + 1) for cid, _, _, _ in children if cid not in seen]
        body: JsonDict = {"rooms": rooms}
        if more:
            body["next_batch"] = _token({"r": room_id, "s": suggested_only, "d": max_depth,
                                         "o": offset + len(rooms)})
        return body
