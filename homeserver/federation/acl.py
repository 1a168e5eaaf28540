"""Server ACLs (`m.room.server_acl`, client-server spec "Server Access Control Lists"):
whether a server may take part in a room over federation. Pure: the callers (serving.py,
inbound.py) pass the room's current ACL content.

The order is the spec's: no ACL allows; an IP literal is denied when `allow_ip_literals` is
false; a `deny` match denies; an `allow` match allows; anything else is denied. The port is
never compared, and patterns are globs (`*`, `?`) matched without regard to case, as DNS
names are.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any


def host_of(server_name: str) -> str:
    """The server name without its port (`[::1]:8448` -> `[::1]`)."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name[:end + 1] if end > 0 else server_name
    return server_name.rsplit(":", 1)[0] if ":" in server_name else server_name


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    parts = ("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _matches(host: str, patterns: Any) -> bool:
    if not isinstance(patterns, list):
        return False
    return any(isinstance(p, str) and _glob(p).fullmatch(host) is not None
               for p in patterns[:1000])


def server_allowed(server_name: str, acl: Any) -> bool:
    """Whether `server_name` may take part in a room whose ACL content is `acl` (None: no
    `m.room.server_acl` in the room's state)."""
    if acl is None:
        return True
    if not isinstance(acl, dict):
        return False
    host = host_of(server_name)
    if acl.get("allow_ip_literals") is False and is_ip_literal(host):
        return False
    if _matches(host, acl.get("deny")):
        return False
    return _matches(host, acl.get("allow"))
