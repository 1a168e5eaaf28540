"""The X-Matrix request authorisation scheme (server-server API, "Request Authentication").

Pure: building the JSON a request's signature covers, formatting the header, and parsing it
strictly (quoted or bare values, any order, unknown parameters ignored, as the spec allows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from homeserver.signing import ServerSigningKey, canonical_json

_PARAM = re.compile(r'\s*([A-Za-z0-9_]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s"]*)\s*(?:,|$)')


class BadAuthHeader(ValueError):
    """An Authorization header that is not a well-formed X-Matrix one."""


@dataclass(frozen=True, slots=True)
class XMatrix:
    origin: str
    destination: str | None
    key_id: str
    sig: str


def request_json(method: str, uri: str, origin: str, destination: str,
                 content: Any = None) -> dict[str, Any]:
    """What the origin signs: the method, the path with its query as sent, both server names
    and the JSON body (absent when there is none)."""
    obj: dict[str, Any] = {"method": method.upper(), "uri": uri, "origin": origin,
                           "destination": destination}
    if content is not None:
        obj["content"] = content
    return obj


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sign_request(key: ServerSigningKey, method: str, uri: str, destination: str,
                 content: Any = None) -> str:
    """The Authorization header value for one outbound request."""
    obj = request_json(method, uri, key.server_name, destination, content)
    sig = key.sign_bytes(canonical_json(obj))
    return (f"X-Matrix origin={_quote(key.server_name)},destination={_quote(destination)},"
            f"key={_quote(key.key_id)},sig={_quote(sig)}")


def parse_header(value: str) -> XMatrix:
    """Parse one `Authorization: X-Matrix ...` value.

    Raises:
        BadAuthHeader: another scheme, a malformed parameter list, or origin/key/sig missing.
    """
    scheme, _, rest = value.strip().partition(" ")
    if scheme != "X-Matrix" or not rest.strip():
        raise BadAuthHeader("not an X-Matrix authorization")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            raise BadAuthHeader("malformed X-Matrix parameters")
        name, raw = m.group(1).lower(), m.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if name in params:
            raise BadAuthHeader(f"X-Matrix parameter {name!r} given twice")
        params[name] = raw
        pos = m.end()
    for needed in ("origin", "key", "sig"):
        if not params.get(needed):
            raise BadAuthHeader(f"X-Matrix authorization without {needed}")
    if not params["key"].startswith("ed25519:"):
        raise BadAuthHeader("X-Matrix key is not an ed25519 key id")
    return XMatrix(params["origin"], params.get("destination"), params["key"], params["sig"])
