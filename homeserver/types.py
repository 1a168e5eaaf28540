"""Identifier parsing and the authenticated requester.

Grammar per the spec appendix "Identifier Grammar": user IDs are `@localpart:server`, with the
historical character set tolerated for existing users but new localparts restricted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]

_NEW_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")  # fullmatch: "$" would allow a final "\n"
_SERVER_NAME = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[0-9.]+|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?")


def is_valid_new_localpart(localpart: str) -> bool:
    return bool(localpart) and bool(_NEW_LOCALPART.fullmatch(localpart))


def is_valid_server_name(name: str) -> bool:
    return bool(name) and len(name) <= 255 and bool(_SERVER_NAME.fullmatch(name))


def _opaque_ok(s: str) -> bool:
    """The grammar's rule for every localpart and opaque id: no NUL, no lone surrogate."""
    if "\x00" in s:
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def split_id(identifier: str, sigil: str) -> tuple[str, str] | None:
    """Split `<sigil>local:server` into (local, server), or None if malformed."""
    if not identifier.startswith(sigil) or ":" not in identifier:
        return None
    local, _, server = identifier[1:].partition(":")
    if not is_valid_server_name(server) or not _opaque_ok(local):
        return None
    return local, server


def _short(identifier: str) -> bool:
    return len(identifier.encode("utf-8", "surrogatepass")) <= 255


def is_valid_user_id(user_id: str) -> bool:
    """Historical grammar: any localpart without `:` or NUL (we also refuse an empty one)."""
    parts = split_id(user_id, "@")
    return parts is not None and _short(user_id) and bool(parts[0])


def is_valid_room_id(room_id: str) -> bool:
    """`!opaque_id:domain` in older room versions, `!opaque_id` (a hash) in v12."""
    if not room_id.startswith("!") or len(room_id) < 2 or not _short(room_id):
        return False
    if ":" in room_id:
        return split_id(room_id, "!") is not None
    return _opaque_ok(room_id)


def is_valid_room_alias(alias: str) -> bool:
    """`#localpart:domain`, the localpart any text without `:` or NUL, at most 255 bytes."""
    return split_id(alias, "#") is not None and _short(alias)


def is_valid_event_id(event_id: str) -> bool:
    """`$opaque_id` (v3+: a hash; v1/v2 also had `:domain`); opaque otherwise."""
    return (event_id.startswith("$") and len(event_id) > 1 and _short(event_id)
            and _opaque_ok(event_id))


@dataclass(frozen=True, slots=True)
class Requester:
    user_id: str
    device_id: str
    is_admin: bool = False
    is_guest: bool = False
    access_token_id: int = 0
    # Account states a server admin sets (docs/admin.md).
    locked: bool = False
    suspended: bool = False
    shadow_banned: bool = False
    # Set when an application service's as_token made the request (the AS's id); the user is
    # its sender or a user it masquerades as (homeserver/appservice/auth.py). `device_id` is
    # "" then unless the request named one of the user's devices.
    app_service: str | None = None
    rate_limited: bool = True
