"""State content the spec has the server check before sending it (PUT /state, createRoom).

`m.room.canonical_alias` (spec: PUT /rooms/{roomId}/state/{eventType}/{stateKey}, 400): every
newly listed alias must be well-formed (M_INVALID_PARAM) and point at the room in the alias
directory (M_BAD_ALIAS). Only aliases the current event does not already list are checked, so
that deleting an alias from the directory never blocks later edits of the event. An alias on
another server cannot be resolved without federation, so it does not "point at this room" as far
as we can tell and is refused too.

Kept out of RoomService so that the room writer stays free of directory lookups; both the HTTP
handlers and the WebSocket `state` method call it before `RoomService.set_state`.
"""

from __future__ import annotations

from typing import Any

from client_api.context import ClientContext
from homeserver.errors import Codes, MatrixError
from homeserver.events.validation import canonical_alias_aliases
from homeserver.rooms.state import RoomData

CANONICAL_ALIAS = "m.room.canonical_alias"


async def check_state_content(c: ClientContext, room: RoomData, etype: str, state_key: str,
                              content: Any) -> None:
    """Raise the spec's error for state content the server must refuse; else return."""
    if etype != CANONICAL_ALIAS or state_key != "":
        return
    current = room.state.get((CANONICAL_ALIAS, ""))
    known: set[str] = set()
    if current is not None:
        try:
            known = set(canonical_alias_aliases(current.pdu.get("content", {})))
        except MatrixError:
            known = set()
    for alias in canonical_alias_aliases(content):
        if alias in known:
            continue
        row = await c.reader.alias_row(alias)
        if row is None or row["room_id"] != room.room_id:
            raise MatrixError(400, Codes.BAD_ALIAS,
                              f"The alias {alias!r} does not point to this room")


def check_initial_canonical_alias(content: Any, own_alias: str | None) -> None:
    """createRoom `initial_state`: the room does not exist yet, so the only alias that can point
    at it is the one `room_alias_name` creates with it."""
    for alias in canonical_alias_aliases(content):
        if alias != own_alias:
            raise MatrixError(400, Codes.BAD_ALIAS,
                              f"The alias {alias!r} does not point to this room")
