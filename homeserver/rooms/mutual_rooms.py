"""GET /_matrix/client/v1/mutual_rooms (spec v1.19, MSC2666): the rooms the requester and
another user are both joined to.

Answered from the requester's joined rooms (the membership index) and each room's current
state in memory, so asking about any user id costs no more than the requester's own rooms
(and remembers nothing about the other user). Pages are `PAGE` rooms in room id order; the
`from` token is the last room id served with the user it was made for, so it never expires.
"""

from __future__ import annotations

import base64

import orjson

from homeserver.errors import invalid_param
from homeserver.rooms.members import MembershipIndex
from homeserver.rooms.state import RoomRegistry
from homeserver.types import JsonDict

PAGE = 100


class MutualRooms:
    def __init__(self, members: MembershipIndex, registry: RoomRegistry) -> None:
        self._members = members
        self._registry = registry

    async def mutual(self, user_id: str, other: str, from_token: str | None) -> JsonDict:
        """Raises:
            MatrixError: 400 M_INVALID_PARAM for the requester's own id or a bad token.
        """
        if other == user_id:
            raise invalid_param("user_id must not be your own user ID")
        after = ""
        if from_token is not None:
            try:
                data = orjson.loads(base64.urlsafe_b64decode(
                    from_token + "=" * (-len(from_token) % 4)))
            except (ValueError, TypeError) as e:
                raise invalid_param("Invalid from token") from e
            if not isinstance(data, list) or len(data) != 2 or data[0] != other or \
                    not isinstance(data[1], str):
                raise invalid_param("Invalid from token")
            after = data[1]
        shared = []
        for room_id in sorted(await self._members.joined_rooms(user_id)):
            room = await self._registry.get(room_id)
            if room is not None and room.membership(other) == "join":
                shared.append(room_id)
        page = [r for r in shared if r > after][:PAGE]
        body: JsonDict = {"joined": page, "count": len(shared)}
        if page and page[-1] != shared[-1]:
            body["next_batch"] = base64.urlsafe_b64encode(
                orjson.dumps([other, page[-1]])).decode().rstrip("=")
        return body
