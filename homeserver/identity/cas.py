"""CAS single sign-on (CAS protocol 2/3): the pure parts.

The browser goes to `<server>/login?service=<our ticket URL>`; CAS sends it back to that URL
with a `ticket`, which the homeserver checks at `<server>/proxyValidate` with the same service
URL. The service URL carries the client's redirectUrl, so that the ticket endpoint knows where
to send the browser on; it is built the same way both times, and CAS compares it exactly.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlencode

CAS_NS = "{http://www.yale.edu/tp/cas}"
TICKET_PATH = "/_matrix/client/r0/login/cas/ticket"
_ALLOWED = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789._-/")


def service_url(base_url: str, redirect_url: str) -> str:
    """Our ticket endpoint with the client's redirectUrl, as CAS is given it."""
    return (base_url.rstrip("/") + TICKET_PATH + "?redirectUrl="
            + quote(redirect_url, safe=""))


def ui_auth_service_url(base_url: str, session_id: str) -> str:
    """Our ticket endpoint for the m.login.sso stage of a user-interactive auth session."""
    return base_url.rstrip("/") + TICKET_PATH + "?session=" + quote(session_id, safe="")


def login_url(server_url: str, service: str) -> str:
    return server_url.rstrip("/") + "/login?" + urlencode({"service": service})


def validate_url(server_url: str, ticket: str, service: str) -> str:
    return server_url.rstrip("/") + "/proxyValidate?" + urlencode(
        {"ticket": ticket, "service": service})


def parse_validation(xml: bytes | str) -> tuple[str, dict[str, str]] | None:
    """The user and attributes of a successful serviceResponse; None for a failure or an
    answer that is not one."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    success = root.find(CAS_NS + "authenticationSuccess")
    if root.tag != CAS_NS + "serviceResponse" or success is None:
        return None
    user = success.findtext(CAS_NS + "user")
    if not user or not user.strip():
        return None
    attributes: dict[str, str] = {}
    attrs = success.find(CAS_NS + "attributes")
    for child in attrs if attrs is not None else []:
        if child.tag.startswith(CAS_NS) and child.text:
            attributes.setdefault(child.tag[len(CAS_NS):], child.text.strip())
    return user.strip(), attributes


def localpart_for(username: str) -> str:
    """A Matrix localpart for an outside user name: lower-cased, every byte outside
    [a-z0-9._-/] written as =xx (so "=" itself too, and the mapping cannot collide), and a
    leading "_" escaped (it is reserved for application services by convention)."""
    out = []
    for b in username.lower().encode():
        out.append(chr(b) if b in _ALLOWED else f"={b:02x}")
    local = "".join(out)
    return re.sub(r"^_", "=5f", local)
