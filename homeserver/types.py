"""Identifier parsing and the authenticated requester.

Grammar per the spec appendix "Identifier Grammar": user IDs are `@localpart:server`, with the
historical character set tolerated for existing users but new localparts restricted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]

_NEW_LOCALPART = re.compile(r"^[a-z0-9._=\-/+]+$")
_SERVER_NAME = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[0-9.]+|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?$")


def is_valid_new_localpart(localpart: str) -> bool:
    return bool(localpart) and bool(_NEW_LOCALPART.match(localpart))


def is_valid_server_name(name: str) -> bool:
    return bool(name) and len(name) <= 255 and bool(_SERVER_NAME.match(name))


def split_id(identifier: str, sigil: str) -> tuple[str, str] | None:
    """Split `<sigil>local:server` into (local, server), or None if malformed."""
    if not identifier.startswith(sigil) or ":" not in identifier:
        return None
    local, _, server = identifier[1:].partition(":")
    if not is_valid_server_name(server):
        return None
    return local, server


def is_valid_user_id(user_id: str) -> bool:
    parts = split_id(user_id, "@")
    return parts is not None and len(user_id.encode()) <= 255 and bool(parts[0])


def is_valid_room_id(room_id: str) -> bool:
    """v12 room ids have no server part, older ones do."""
    return room_id.startswith("!") and 1 < len(room_id) <= 255


@dataclass(frozen=True, slots=True)
class Requester:
    user_id: str
    device_id: str
    is_admin: bool = False
    is_guest: bool = False
    access_token_id: int = 0
