"""Checks a locally built event must pass before it is hashed, signed and stored.

Canonical JSON (spec appendix "Canonical JSON") has integers only, in [-(2**53)+1, 2**53-1]: a
float or a larger number has no canonical form, so other servers could not reproduce our hashes
and signatures, and clients in JavaScript would read back a different number. Synapse and the spec
reject such events; so do we, at the one place every local event is built, so that send, state,
createRoom (creation_content, initial_state, power_level_content_override), membership and
redaction are all covered without each handler remembering to ask.

Also here: the syntax part of the `m.room.canonical_alias` check (PUT /state says the server
validates the aliases); whether they point at the room needs the alias directory and is done by
the caller.

Pure: raises `MatrixError`, does no I/O.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import Codes, MatrixError
from homeserver.json_input import json_problem, text_problem
from homeserver.types import is_valid_room_alias

MAX_SAFE_INT = 2**53 - 1


def canonical_json_problem(value: Any) -> str | None:
    """Why `value` has no canonical JSON form (a float, an integer out of range), or None.

    Iterative, for the same reason as `json_problem`."""
    stack: list[Any] = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        if isinstance(v, int):
            if not -MAX_SAFE_INT <= v <= MAX_SAFE_INT:
                return f"integer {v} is outside the canonical JSON range"
        elif isinstance(v, float):
            return f"{v!r} is not an integer (canonical JSON has no floats)"
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
        else:
            return f"{type(v).__name__} is not a JSON value"
    return None


def check_local_event(etype: str, state_key: str | None, content: Any,
                      strict_canonical_json: bool = True) -> None:
    """Refuse (400 M_BAD_JSON) an event whose type, state key or content cannot be canonical
    JSON or stored text. Called at the top of the builder for every local event. Rooms before
    version 6 do not enforce canonical JSON numbers (the spec, and Synapse, allow floats
    there), so `strict_canonical_json` is the room version's flag."""
    for what, s in (("event type", etype), ("state_key", state_key)):
        if s is not None:
            problem = text_problem(s) if isinstance(s, str) else "is not a string"
            if problem is not None:
                raise MatrixError(400, Codes.BAD_JSON, f"The {what} {problem}")
    if not isinstance(content, dict):
        raise MatrixError(400, Codes.BAD_JSON, "Event content must be a JSON object")
    problem = json_problem(content) or (
        canonical_json_problem(content) if strict_canonical_json else None)
    if problem is not None:
        raise MatrixError(400, Codes.BAD_JSON, f"Invalid event content: {problem}")


def canonical_alias_aliases(content: Any) -> list[str]:
    """The aliases an `m.room.canonical_alias` content names (`alias`, then `alt_aliases`).

    Raises 400 M_INVALID_PARAM when one has invalid syntax (spec: PUT /state, "M_INVALID_PARAM:
    One or more aliases within the m.room.canonical_alias event have invalid syntax") and
    M_BAD_JSON when the fields have the wrong JSON type."""
    if not isinstance(content, dict):
        raise MatrixError(400, Codes.BAD_JSON, "Event content must be a JSON object")
    aliases: list[str] = []
    alias = content.get("alias")
    if alias is not None:
        if not isinstance(alias, str):
            raise MatrixError(400, Codes.INVALID_PARAM, "alias must be a string")
        aliases.append(alias)
    alt = content.get("alt_aliases")
    if alt is not None:
        if not isinstance(alt, list):
            raise MatrixError(400, Codes.BAD_JSON, "alt_aliases must be a list of aliases")
        for a in alt:
            if not isinstance(a, str):
                raise MatrixError(400, Codes.INVALID_PARAM, "alt_aliases must hold strings")
            aliases.append(a)
    for a in aliases:
        if not is_valid_room_alias(a):
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid room alias {a!r}")
    return aliases
