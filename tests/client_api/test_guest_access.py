"""Guest access (spec "Guest access"): guest registration, the endpoints guests may use, joins
only into rooms that allow guests, leaving when a room stops allowing them, the upgrade to a
full account; and room previews (spec "Room Previews") of world-readable rooms for guests and
for users who have not joined."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import quote

import pytest

from client_api.guest_access import GUEST_ROUTES, route_key
from tests.conftest import Server
from tests.helpers import Client, User


async def guest(c: Client, **body: Any) -> User:
    status, data = await c.request("POST", "/register", body, params={"kind": "guest"})
    assert status == 200, data
    return User(data["user_id"], data["access_token"], data["device_id"])


async def set_state(c: Client, user: User, room: str, etype: str, content: dict[str, Any],
                    key: str = "") -> None:
    status, data = await c.request("PUT", f"/rooms/{room}/state/{etype}/{key}", content,
                                   user.access_token)
    assert status == 200, data


async def membership(c: Client, user: User, room: str, of: str) -> str | None:
    status, data = await c.request("GET", f"/rooms/{room}/state/m.room.member/{of}",
                                   token=user.access_token)
    return data.get("membership") if status == 200 else None


async def guest_room(c: Client, owner: User, **extra: Any) -> str:
    room = await c.create_room(owner, preset="public_chat", **extra)
    await set_state(c, owner, room, "m.room.guest_access", {"guest_access": "can_join"})
    return room


# ---------------------------------------------------------------------- registration


async def test_guest_registration_gives_a_numeric_guest_account(c: Client) -> None:
    g = await guest(c, initial_device_display_name="Guest laptop")
    localpart = g.user_id[1:].partition(":")[0]
    assert localpart.isdigit()
    other = await guest(c)
    assert other.user_id != g.user_id
    status, me = await c.request("GET", "/account/whoami", token=g.access_token)
    assert status == 200 and me["user_id"] == g.user_id and me["is_guest"] is True
    assert me["device_id"] == g.device_id
    status, devices = await c.request("GET", "/devices", token=g.access_token)
    assert status == 200
    assert [d["display_name"] for d in devices["devices"]] == ["Guest laptop"]
    # a real user is not a guest
    real = await c.register()
    status, me = await c.request("GET", "/account/whoami", token=real.access_token)
    assert me["is_guest"] is False


async def test_numeric_user_ids_are_reserved_for_guests(c: Client) -> None:
    number = str(secrets.randbelow(10**9) + 10**12)
    status, body = await c.request("GET", "/register/available", params={"username": number})
    assert status == 400 and body["errcode"] == "M_INVALID_USERNAME"
    status, body = await c.request("POST", "/register", {
        "username": number, "password": "pw-secret-1", "auth": {"type": "m.login.dummy"}})
    assert status == 400 and body["errcode"] == "M_INVALID_USERNAME"


# ---------------------------------------------------------------------- what guests may use


async def test_guests_may_use_the_listed_endpoints_only(c: Client) -> None:
    owner = await c.register()
    g = await guest(c)
    room = await guest_room(c, owner)
    await c.join(g, room)
    me = quote(g.user_id)
    allowed = [
        ("GET", "/sync", None, {"timeout": "0"}),
        ("GET", "/account/whoami", None, None),
        ("GET", "/devices", None, None),
        ("PUT", f"/devices/{g.device_id}", {"display_name": "mine"}, None),
        ("PUT", f"/profile/{me}/displayname", {"displayname": "Visitor"}, None),
        ("GET", f"/rooms/{room}/messages", None, {"dir": "b"}),
        ("GET", f"/rooms/{room}/members", None, None),
        ("GET", f"/rooms/{room}/state", None, None),
        ("PUT", f"/rooms/{room}/send/m.room.message/t1", {"msgtype": "m.text", "body": "hi"},
         None),
        ("PUT", f"/rooms/{room}/send/org.example.custom/t2", {"any": "type"}, None),
        ("POST", "/keys/query", {"device_keys": {g.user_id: []}}, None),
        ("GET", "/joined_rooms", None, None),
        ("GET", "/capabilities", None, None),
    ]
    for method, path, body, params in allowed:
        status, data = await c.request(method, path, body, g.access_token, params=params)
        assert status == 200, (method, path, data)
    forbidden = [
        ("POST", "/createRoom", {}),
        ("PUT", f"/user/{me}/account_data/org.example", {"a": 1}),
        ("GET", f"/user/{me}/account_data/org.example", None),
        ("PUT", f"/profile/{me}/avatar_url", {"avatar_url": "mxc://x/y"}),
        ("POST", f"/rooms/{room}/invite", {"user_id": owner.user_id}),
        ("POST", f"/rooms/{room}/kick", {"user_id": owner.user_id}),
        ("PUT", f"/rooms/{room}/typing/{me}", {"typing": True, "timeout": 1000}),
        ("POST", f"/user/{me}/filter", {}),
        ("GET", "/pushrules/", None),
        ("POST", "/user_directory/search", {"search_term": "x"}),
        ("POST", "/account/password", {"new_password": "pw-secret-2"}),
        ("GET", "/room_keys/version", None),
        ("POST", "/logout/all", None),
    ]
    for method, path, body in forbidden:
        status, data = await c.request(method, path, body, g.access_token)
        assert status == 403, (method, path, data)
        assert data["errcode"] == "M_GUEST_ACCESS_FORBIDDEN", (method, path, data)
    # a real user may use all of them
    status, _ = await c.request("POST", "/createRoom", {}, owner.access_token)
    assert status == 200
    # and a guest may end its own session
    status, _ = await c.request("POST", "/logout", {}, g.access_token)
    assert status == 200
    status, data = await c.request("GET", "/account/whoami", token=g.access_token)
    assert status == 401 and data["errcode"] == "M_UNKNOWN_TOKEN"


def test_route_key_drops_versions_and_parameter_names() -> None:
    cases = {
        "/_matrix/client/{v}/rooms/{room_id}/state/{event_type}/{state_key}":
            "/rooms/{}/state/{}/{}",
        "/_matrix/client/v1/media/download/{server_name}/{media_id}": "/media/download/{}/{}",
        "/_matrix/media/{v}/download/{server_name}/{media_id}": "/media/download/{}/{}",
        "/_matrix/client/{v}/sync": "/sync",
        "/_matrix/client/v4/sync": "/sync",
        "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync":
            "/org.matrix.simplified_msc3575/sync",
        "/.well-known/matrix/client": "/.well-known/matrix/client",
    }
    for canonical, key in cases.items():
        assert route_key(canonical) == key, canonical


async def test_every_listed_guest_route_exists(server: Server) -> None:
    """A typo in the table would silently close an endpoint to guests."""
    registered = {(r.method, route_key(r.resource.canonical))
                  for r in server.app.router.routes() if r.resource is not None}
    missing = [k for k in GUEST_ROUTES if k not in registered]
    assert not missing


# ---------------------------------------------------------------------- joins


async def test_guests_join_only_rooms_that_allow_guests(c: Client) -> None:
    owner = await c.register()
    g = await guest(c)
    room = await c.create_room(owner, preset="public_chat")  # guest_access forbidden
    status, data = await c.request("POST", f"/join/{room}", {}, g.access_token)
    assert status == 403 and data["errcode"] == "M_FORBIDDEN"
    status, data = await c.request("POST", f"/rooms/{room}/join", {}, g.access_token)
    assert status == 403 and data["errcode"] == "M_FORBIDDEN"
    # joining through a member event of one's own is the same join
    status, data = await c.request("PUT", f"/rooms/{room}/state/m.room.member/{g.user_id}",
                                   {"membership": "join"}, g.access_token)
    assert status == 403 and data["errcode"] == "M_FORBIDDEN"
    assert await membership(c, owner, room, g.user_id) is None
    # an invite does not open a room to guests either
    status, _ = await c.request("POST", f"/rooms/{room}/invite", {"user_id": g.user_id},
                                owner.access_token)
    assert status == 200
    status, data = await c.request("POST", f"/join/{room}", {}, g.access_token)
    assert status == 403 and data["errcode"] == "M_FORBIDDEN"
    # can_join: the guest gets in, talks, and syncs the room
    await set_state(c, owner, room, "m.room.guest_access", {"guest_access": "can_join"})
    await c.join(g, room)
    event_id = await c.send(g, room, "hello from a guest")
    body = await c.sync(g)
    timeline = body["rooms"]["join"][room]["timeline"]["events"]
    assert event_id in [e["event_id"] for e in timeline]
    # a guest can set its display name, and its member event follows
    status, _ = await c.request("PUT", f"/profile/{quote(g.user_id)}/displayname",
                                {"displayname": "creeper"}, g.access_token)
    assert status == 200
    status, member = await c.request(
        "GET", f"/rooms/{room}/state/m.room.member/{g.user_id}", token=g.access_token)
    assert status == 200 and member["displayname"] == "creeper"


async def test_guests_leave_when_the_room_stops_allowing_them(c: Client) -> None:
    owner, real = await c.register(), await c.register()
    g1, g2, invited = await guest(c), await guest(c), await guest(c)
    room = await guest_room(c, owner)
    for u in (g1, g2, real):
        await c.join(u, room)
    status, _ = await c.request("POST", f"/rooms/{room}/invite", {"user_id": invited.user_id},
                                owner.access_token)
    assert status == 200
    # a change that keeps can_join (another key in the content) keeps the guests
    await set_state(c, owner, room, "m.room.guest_access",
                    {"guest_access": "can_join", "note": "still open"})
    await asyncio.sleep(0.2)
    assert await membership(c, owner, room, g1.user_id) == "join"
    await set_state(c, owner, room, "m.room.guest_access", {"guest_access": "forbidden"})
    for _ in range(50):
        states = [await membership(c, owner, room, u.user_id) for u in (g1, g2, invited)]
        if states == ["leave"] * 3:
            break
        await asyncio.sleep(0.1)
    assert states == ["leave"] * 3
    # each guest left as itself; the real member stays
    status, member = await c.request(
        "GET", f"/rooms/{room}/state/m.room.member/{g1.user_id}", token=owner.access_token)
    assert status == 200
    body = await c.sync(owner)
    leaves = [e for e in body["rooms"]["join"][room]["timeline"]["events"]
              if e["type"] == "m.room.member" and e["content"].get("membership") == "leave"]
    assert {e["sender"] for e in leaves} >= {g1.user_id, g2.user_id}
    assert await membership(c, owner, room, real.user_id) == "join"
    status, data = await c.request("POST", f"/join/{room}", {}, g1.access_token)
    assert status == 403


# ---------------------------------------------------------------------- upgrade


async def test_a_guest_upgrades_to_a_full_account_keeping_its_id_and_rooms(c: Client) -> None:
    owner = await c.register()
    g = await guest(c)
    room = await guest_room(c, owner)
    await c.join(g, room)
    localpart = g.user_id[1:].partition(":")[0]
    body = {"username": localpart, "password": "pw-secret-guest",
            "guest_access_token": g.access_token}
    status, data = await c.request("POST", "/register", body)
    assert status == 401 and "flows" in data  # user-interactive auth, as any registration
    status, data = await c.request("POST", "/register",
                                   {**body, "auth": {"type": "m.login.dummy",
                                                     "session": data["session"]}})
    assert status == 200, data
    assert data["user_id"] == g.user_id
    new_token = data["access_token"]
    for token in (new_token, g.access_token):  # the guest's session goes on, as a full one
        status, me = await c.request("GET", "/account/whoami", token=token)
        assert status == 200 and me["user_id"] == g.user_id and me["is_guest"] is False
    status, _ = await c.request("POST", "/createRoom", {}, new_token)
    assert status == 200
    status, rooms = await c.request("GET", "/joined_rooms", token=new_token)
    assert room in rooms["joined_rooms"]
    # now a full account: it stays when the room shuts guests out
    await set_state(c, owner, room, "m.room.guest_access", {"guest_access": "forbidden"})
    await asyncio.sleep(0.3)
    assert await membership(c, owner, room, g.user_id) == "join"
    # and logs in with its password
    status, data = await c.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
        "password": "pw-secret-guest"})
    assert status == 200 and data["user_id"] == g.user_id
    # a second upgrade is refused: it is no guest any more
    status, data = await c.request("POST", "/register", {**body, "auth": {
        "type": "m.login.dummy"}})
    assert status == 400 and data["errcode"] == "M_USER_IN_USE"


async def test_a_guest_cannot_upgrade_another_user(c: Client) -> None:
    g1, g2 = await guest(c), await guest(c)
    real = await c.register()
    local1 = g1.user_id[1:].partition(":")[0]
    for token in (g2.access_token, real.access_token):
        status, data = await c.request("POST", "/register", {
            "username": local1, "password": "pw-secret-1", "guest_access_token": token,
            "auth": {"type": "m.login.dummy"}})
        assert status == 400 and data["errcode"] == "M_USER_IN_USE", data
    status, data = await c.request("POST", "/register", {
        "password": "pw-secret-1", "guest_access_token": g1.access_token,
        "auth": {"type": "m.login.dummy"}})
    assert status == 400 and data["errcode"] == "M_MISSING_PARAM"
    status, data = await c.request("POST", "/register", {
        "username": local1, "guest_access_token": "not-a-token",
        "auth": {"type": "m.login.dummy"}})
    assert status == 401 and data["errcode"] == "M_UNKNOWN_TOKEN"
    status, me = await c.request("GET", "/account/whoami", token=g1.access_token)
    assert me["is_guest"] is True


# ---------------------------------------------------------------------- room previews


@pytest.mark.parametrize("kind", ["guest", "user"])
async def test_world_readable_rooms_can_be_read_without_joining(c: Client, kind: str) -> None:
    owner = await c.register()
    reader = await guest(c) if kind == "guest" else await c.register()
    room = await c.create_room(owner, preset="public_chat")
    hidden = await c.send(owner, room, "before world_readable")
    await set_state(c, owner, room, "m.room.history_visibility",
                    {"history_visibility": "world_readable"})
    shown = await c.send(owner, room, "public")
    t = reader.access_token
    status, page = await c.request("GET", f"/rooms/{room}/messages", token=t,
                                   params={"dir": "b", "limit": "20"})
    assert status == 200
    ids = [e["event_id"] for e in page["chunk"]]
    assert shown in ids and hidden not in ids
    status, state = await c.request("GET", f"/rooms/{room}/state", token=t)
    assert status == 200 and any(e["type"] == "m.room.create" for e in state)
    status, member = await c.request(
        "GET", f"/rooms/{room}/state/m.room.member/{owner.user_id}", token=t)
    assert status == 200 and member["membership"] == "join"
    status, init = await c.request("GET", f"/rooms/{room}/initialSync", token=t)
    assert status == 200
    assert [e["type"] for e in init["messages"]["chunk"]] == [
        "m.room.history_visibility", "m.room.message"]
    # not joined: cannot send
    status, data = await c.request("PUT", f"/rooms/{room}/send/m.room.message/x",
                                   {"msgtype": "m.text", "body": "no"}, t)
    assert status == 403

    # /events from initialSync's end: a long poll woken by the room's next message
    async def later() -> str:
        await asyncio.sleep(0.3)
        return await c.send(owner, room, "live")
    sender = asyncio.create_task(later())
    status, body = await c.request("GET", "/events", token=t, params={
        "room_id": room, "from": init["messages"]["end"], "timeout": "10000"})
    live = await sender
    assert status == 200, body
    assert [e["event_id"] for e in body["chunk"] if e["type"] == "m.room.message"] == [live]
    assert all(e["room_id"] == room for e in body["chunk"])
    # then typing and receipts of the room, from the returned token
    end = body["end"]
    status, _ = await c.request("PUT", f"/rooms/{room}/typing/{quote(owner.user_id)}",
                                {"typing": True, "timeout": 5000}, owner.access_token)
    assert status == 200
    status, _ = await c.request("POST", f"/rooms/{room}/receipt/m.read/{quote(live)}", {},
                                owner.access_token)
    assert status == 200
    seen: set[str] = set()
    for _ in range(10):
        status, body = await c.request("GET", "/events", token=t, params={
            "room_id": room, "from": end, "timeout": "2000"})
        assert status == 200
        seen |= {e["type"] for e in body["chunk"]}
        end = body["end"]
        if {"m.typing", "m.receipt"} <= seen:
            break
    assert {"m.typing", "m.receipt"} <= seen
    # and nothing new: an empty chunk after the timeout
    status, body = await c.request("GET", "/events", token=t, params={
        "room_id": room, "from": end, "timeout": "0"})
    assert status == 200 and body["chunk"] == [] and body["end"].startswith("s")


@pytest.mark.parametrize("kind", ["guest", "user"])
async def test_rooms_that_are_not_world_readable_stay_closed(c: Client, kind: str) -> None:
    owner = await c.register()
    reader = await guest(c) if kind == "guest" else await c.register()
    room = await c.create_room(owner, preset="public_chat")  # shared
    await c.send(owner, room, "members only")
    t = reader.access_token
    status, data = await c.request("GET", "/events", token=t,
                                   params={"room_id": room, "timeout": "0"})
    assert status == 403 and data["errcode"] == "M_FORBIDDEN"
    status, data = await c.request("GET", f"/rooms/{room}/initialSync", token=t)
    assert status == 403
    status, data = await c.request("GET", f"/rooms/{room}/state", token=t)
    assert status == 403
    status, data = await c.request("GET", "/events", token=t,
                                   params={"room_id": "!nowhere:parley.test", "timeout": "0"})
    assert status == 403


async def test_guest_event_stream_needs_a_room(c: Client) -> None:
    g = await guest(c)
    status, data = await c.request("GET", "/events", token=g.access_token,
                                   params={"timeout": "0"})
    assert status == 400 and data["errcode"] == "M_MISSING_PARAM"
    # a room the guest joined: its own stream
    owner = await c.register()
    room = await guest_room(c, owner)
    await c.join(g, room)
    status, now = await c.request("GET", "/events", token=g.access_token,
                                  params={"room_id": room, "timeout": "0"})
    assert status == 200
    event_id = await c.send(owner, room, "to the guest")
    status, body = await c.request("GET", "/events", token=g.access_token, params={
        "room_id": room, "from": now["end"], "timeout": "5000"})
    assert status == 200 and event_id in [e.get("event_id") for e in body["chunk"]]
