"""State content the spec has the server check before sending it (PUT /state, createRoom).

`m.room.canonical_alias` (spec: PUT /rooms/{roomId}/state/{eventType}/{stateKey}, 400): every
newly listed alias must be well-formed (M_INVALID_PARAM) and point at the room in the alias
directory (M_BAD_ALIAS). Only aliases the current event does not already list are checked, so
that deleting an alias from the directory never blocks later edits of the event. An alias on
another server cannot be resolved without federation, so it does not "point at this room" as far
as we can tell and is refused too.

Pure: `RoomService.set_state` looks the new aliases up in the directory, so that the HTTP and
the WebSocket `state` paths apply the rule in one place.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import Codes, MatrixError
from homeserver.events.model import EventEntry
from homeserver.events.validation import canonical_alias_aliases

CANONICAL_ALIAS = "m.room.canonical_alias"


def new_canonical_aliases(current: EventEntry | None, etype: str, state_key: str,
                          content: Any) -> list[str]:
    """The aliases of `content` that must point at the room: those the current
    `m.room.canonical_alias` does not already list (empty for any other state event).

    Raises:
        MatrixError: M_INVALID_PARAM for a malformed alias in `content`.
    """
    if etype != CANONICAL_ALIAS or state_key != "":
        return []
    known: set[str] = set()
    if current is not None:
        try:
            known = set(canonical_alias_aliases(current.pdu.get("content", {})))
        except MatrixError:
            known = set()
    return [a for a in canonical_alias_aliases(content) if a not in known]


def bad_alias(alias: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_ALIAS, f"The alias {alias!r} does not point to this room")


def check_initial_canonical_alias(content: Any, own_alias: str | None) -> None:
    """createRoom `initial_state`: the room does not exist yet, so the only alias that can point
    at it is the one `room_alias_name` creates with it."""
    for alias in canonical_alias_aliases(content):
        if alias != own_alias:
            raise bad_alias(alias)
