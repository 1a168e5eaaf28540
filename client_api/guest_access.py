"""Which client endpoints a guest account may use (spec "Guest access", "Client behaviour").

One table, checked in one place: `client_api.context.auth` asks `guest_may_use` for every
request a guest's token authenticates, so an endpoint is closed to guests unless it is listed
here, and a new endpoint stays closed until someone decides otherwise. Others answer 403
M_GUEST_ACCESS_FORBIDDEN.

The list is the spec's, plus what the reference server (Synapse) also opens to guests: its
read-only room and discovery endpoints (joined rooms, public rooms, relations, hierarchy,
summary, third-party protocols, capabilities) and /keys/changes and signature uploads; plus
/logout, so a guest can end its own session. Synapse's catch-all membership servlet would also
let a guest invite, kick or ban; the spec lists only join and leave, and so does this table.

Entries name routes as they are registered, without the `/_matrix/client/<version>` prefix
(the legacy `/_matrix/media/<version>` prefix counts as `/media`) and with every path
parameter written `{}`, so one entry covers v3 and r0 and each parameter name. A few entries
hold only for some values of a path parameter (a guest sets its display name, no other profile
field).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

_ANY: Mapping[str, str] = {}

# (method, route) -> path parameters that must have these values (empty: any).
GUEST_ROUTES: dict[tuple[str, str], Mapping[str, str]] = {
    # Reading rooms and their events (spec), with media.
    ("GET", "/rooms/{}/state"): _ANY,
    ("GET", "/rooms/{}/state/{}"): _ANY,
    ("GET", "/rooms/{}/state/{}/{}"): _ANY,
    ("GET", "/rooms/{}/context/{}"): _ANY,
    ("GET", "/rooms/{}/event/{}"): _ANY,
    ("GET", "/rooms/{}/messages"): _ANY,
    ("GET", "/rooms/{}/members"): _ANY,
    ("GET", "/rooms/{}/initialSync"): _ANY,
    ("GET", "/sync"): _ANY,
    ("POST", "/sync"): _ANY,  # sliding sync (v4), as Synapse
    ("POST", "/org.matrix.simplified_msc3575/sync"): _ANY,
    ("GET", "/events"): _ANY,
    ("GET", "/media/download/{}/{}"): _ANY,
    ("GET", "/media/download/{}/{}/{}"): _ANY,
    ("GET", "/media/thumbnail/{}/{}"): _ANY,
    # Sending (spec): join and leave, any event type, state, to-device messages.
    ("POST", "/rooms/{}/join"): _ANY,
    ("POST", "/join/{}"): _ANY,
    ("POST", "/rooms/{}/leave"): _ANY,
    ("PUT", "/rooms/{}/send/{}/{}"): _ANY,
    ("POST", "/rooms/{}/send/{}"): _ANY,
    ("PUT", "/rooms/{}/state/{}"): _ANY,
    ("PUT", "/rooms/{}/state/{}/{}"): _ANY,
    ("PUT", "/sendToDevice/{}/{}"): _ANY,
    # Account maintenance (spec): the display name only, devices, whoami; and logout.
    ("PUT", "/profile/{}/{}"): {"field": "displayname"},
    ("DELETE", "/profile/{}/{}"): {"field": "displayname"},
    ("GET", "/devices"): _ANY,
    ("GET", "/devices/{}"): _ANY,
    ("PUT", "/devices/{}"): _ANY,
    ("GET", "/account/whoami"): _ANY,
    ("POST", "/logout"): _ANY,
    # End-to-end encryption (spec; changes and signatures as Synapse).
    ("POST", "/keys/upload"): _ANY,
    ("POST", "/keys/query"): _ANY,
    ("POST", "/keys/claim"): _ANY,
    ("GET", "/keys/changes"): _ANY,
    ("POST", "/keys/signatures/upload"): _ANY,
    # What Synapse opens besides (read-only discovery). TURN credentials follow the voip
    # section's own turn_allow_guests (client_api/voip.py).
    ("GET", "/joined_rooms"): _ANY,
    ("GET", "/publicRooms"): _ANY,
    ("POST", "/publicRooms"): _ANY,
    ("GET", "/rooms/{}/relations/{}"): _ANY,
    ("GET", "/rooms/{}/relations/{}/{}"): _ANY,
    ("GET", "/rooms/{}/relations/{}/{}/{}"): _ANY,
    ("GET", "/rooms/{}/hierarchy"): _ANY,
    ("GET", "/room_summary/{}"): _ANY,
    ("GET", "/capabilities"): _ANY,
    ("GET", "/thirdparty/protocols"): _ANY,
    ("GET", "/thirdparty/protocol/{}"): _ANY,
    ("GET", "/thirdparty/location"): _ANY,
    ("GET", "/thirdparty/location/{}"): _ANY,
    ("GET", "/thirdparty/user"): _ANY,
    ("GET", "/thirdparty/user/{}"): _ANY,
    ("GET", "/voip/turnServer"): _ANY,
}

# The /sync WebSocket's request methods (client_api/websocket.py) that match routes above.
GUEST_SOCKET_METHODS = frozenset({"send", "state", "to_device", "ping"})


def route_key(canonical: str) -> str:
    """`/_matrix/client/{v}/rooms/{room_id}/state` -> `/rooms/{}/state`: the version prefix
    dropped (the legacy media prefix becomes `/media`), path parameters made anonymous."""
    parts = canonical.split("/")
    if len(parts) >= 4 and parts[1] == "_matrix" and parts[2] in ("client", "media"):
        rest = (["media"] if parts[2] == "media" else []) + parts[4:]
    else:
        rest = parts[1:]
    return "/" + "/".join("{}" if p.startswith("{") else p for p in rest)


def guest_may_use(request: web.Request) -> bool:
    """Whether the route this request matched is open to guests."""
    resource = request.match_info.route.resource
    if resource is None:
        return False
    method = "GET" if request.method == "HEAD" else request.method
    needs = GUEST_ROUTES.get((method, route_key(resource.canonical)))
    if needs is None:
        return False
    return all(request.match_info.get(k) == v for k, v in needs.items())
