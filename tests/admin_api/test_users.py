"""The user admin API over HTTP: listing with paging and filters, create or modify, deactivate,
reset password, whois, devices, joined rooms, admin flag, username availability, shadow-ban,
rate-limit override, and suspension and locking (spec v1.18)."""

from __future__ import annotations

import secrets

import pytest

from tests.conftest import Server
from tests.helpers import Client, User

A = "/_synapse/admin"


async def _login(c: Client, user_id: str, password: str) -> tuple[int, dict[str, object]]:
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
        "password": password})
    return status, body


@pytest.mark.parametrize("method,path", [
    ("GET", A + "/v1/server_version"), ("GET", A + "/v2/users"),
    ("GET", A + "/v2/users/@x:parley.test"), ("PUT", A + "/v2/users/@x:parley.test"),
    ("POST", A + "/v1/deactivate/@x:parley.test"),
    ("POST", A + "/v1/reset_password/@x:parley.test"),
    ("GET", A + "/v1/whois/@x:parley.test"), ("GET", A + "/v2/users/@x:parley.test/devices"),
    ("DELETE", A + "/v2/users/@x:parley.test/devices/D"),
    ("GET", A + "/v1/users/@x:parley.test/joined_rooms"),
    ("PUT", A + "/v1/users/@x:parley.test/admin"), ("GET", A + "/v1/username_available"),
    ("POST", A + "/v1/users/@x:parley.test/shadow_ban"),
    ("POST", A + "/v1/users/@x:parley.test/override_ratelimit"),
    ("PUT", "/_matrix/client/v1/admin/suspend/@x:parley.test"),
    ("GET", "/_matrix/client/v1/admin/lock/@x:parley.test"),
    ("GET", A + "/v1/rooms"), ("DELETE", A + "/v2/rooms/!x:parley.test"),
    ("POST", A + "/v1/purge_history/!x:parley.test"),
    ("GET", A + "/v1/registration_tokens"), ("POST", A + "/v1/registration_tokens/new"),
    ("GET", A + "/v1/event_reports"), ("POST", A + "/v1/send_server_notice"),
    ("GET", A + "/v1/statistics/database/rooms"), ("POST", A + "/v1/join/!x:parley.test"),
    ("GET", A + "/v1/users/@x:parley.test/pushers"),
    ("GET", A + "/v1/threepid/email/users/a@example.org"),
    ("GET", A + "/v1/auth_providers/cas/users/alice"),
    ("GET", A + "/v1/users/@x:parley.test/accountdata"),
    ("GET", A + "/v1/users/@x:parley.test/memberships"),
    ("GET", A + "/v1/users/@x:parley.test/sent_invite_count"),
    ("GET", A + "/v1/users/@x:parley.test/cumulative_joined_room_count"),
    ("POST", A + "/v1/users/@x:parley.test/login"),
    ("GET", A + "/v1/experimental_features/@x:parley.test"),
    ("PUT", A + "/v1/experimental_features/@x:parley.test"),
    ("GET", A + "/v1/rooms/!x:parley.test/forward_extremities"),
    ("DELETE", A + "/v1/rooms/!x:parley.test/forward_extremities"),
    ("GET", A + "/v1/rooms/!x:parley.test/context/$e"),
    ("GET", A + "/v1/rooms/!x:parley.test/timestamp_to_event"),
    ("GET", A + "/v1/fetch_event/$e"),
])
async def test_non_admins_are_refused(c: Client, method: str, path: str) -> None:
    user = await c.register()
    status, body = await c.request(method, path, {}, token=user.access_token)
    assert status == 403, body
    assert body["errcode"] == "M_FORBIDDEN"
    status, body = await c.request(method, path, {})
    assert status == 401 and body["errcode"] == "M_MISSING_TOKEN"


async def test_server_version(c: Client, admin: User) -> None:
    status, body = await c.request("GET", A + "/v1/server_version", token=admin.access_token)
    assert status == 200 and isinstance(body["server_version"], str)


async def test_list_users_paging_filters_order(c: Client, admin: User) -> None:
    tag = "lst" + secrets.token_hex(4)
    made = [await c.register(f"{tag}{i}") for i in range(5)]
    t = admin.access_token
    status, body = await c.request("GET", A + "/v2/users", token=t,
                                   params={"name": tag, "limit": "2"})
    assert status == 200, body
    assert body["total"] == 5 and body["next_token"] == "2"
    assert [u["name"] for u in body["users"]] == [m.user_id for m in made[:2]]
    first = body["users"][0]
    for key in ("name", "displayname", "avatar_url", "is_guest", "admin", "deactivated",
                "shadow_banned", "creation_ts", "locked", "erased", "user_type"):
        assert key in first
    status, body = await c.request("GET", A + "/v2/users", token=t,
                                   params={"name": tag, "limit": "2", "from": "4"})
    assert [u["name"] for u in body["users"]] == [made[4].user_id]
    assert "next_token" not in body
    status, body = await c.request("GET", A + "/v2/users", token=t,
                                   params={"name": tag, "dir": "b", "order_by": "name"})
    assert [u["name"] for u in body["users"]] == [m.user_id for m in reversed(made)]
    # deactivated users are left out unless asked for; admins filter
    await c.request("POST", A + f"/v1/deactivate/{made[0].user_id}", {}, token=t)
    _, body = await c.request("GET", A + "/v2/users", token=t, params={"name": tag})
    assert body["total"] == 4
    _, body = await c.request("GET", A + "/v2/users", token=t,
                              params={"name": tag, "deactivated": "true"})
    assert body["total"] == 5
    await c.request("PUT", f"/_matrix/client/v1/admin/lock/{made[1].user_id}",
                    {"locked": True}, token=t)
    _, body = await c.request("GET", A + "/v2/users", token=t, params={"name": tag})
    assert body["total"] == 3  # locked users too are left out unless asked for
    _, body = await c.request("GET", A + "/v2/users", token=t,
                              params={"name": tag, "locked": "true"})
    assert body["total"] == 4
    _, body = await c.request("GET", A + "/v2/users", token=t,
                              params={"user_id": admin.user_id, "admins": "true"})
    assert [u["name"] for u in body["users"]] == [admin.user_id]
    _, body = await c.request("GET", A + "/v2/users", token=t,
                              params={"name": tag, "admins": "true"})
    assert body["total"] == 0
    for bad in ({"order_by": "nope"}, {"dir": "x"}, {"limit": "-1"}, {"from": "abc"},
                {"guests": "maybe"}):
        status, body = await c.request("GET", A + "/v2/users", token=t, params=bad)
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", bad


async def test_create_modify_and_deactivate(c: Client, admin: User) -> None:
    t = admin.access_token
    user_id = f"@new{secrets.token_hex(4)}:parley.test"
    status, body = await c.request("PUT", A + f"/v2/users/{user_id}", {
        "password": "first-pass-1", "displayname": "Alice", "admin": False}, token=t)
    assert status == 201, body
    assert body["name"] == user_id and body["displayname"] == "Alice" and not body["admin"]
    status, _ = await _login(c, user_id, "first-pass-1")
    assert status == 200
    status, body = await c.request("PUT", A + f"/v2/users/{user_id}", {
        "password": "second-pass-2", "displayname": "Alicia", "admin": True}, token=t)
    assert status == 200, body
    assert body["displayname"] == "Alicia" and body["admin"] is True
    assert (await _login(c, user_id, "first-pass-1"))[0] == 403
    assert (await _login(c, user_id, "second-pass-2"))[0] == 200
    status, body = await c.request("GET", A + f"/v2/users/{user_id}", token=t)
    assert status == 200 and body["admin"] is True and body["threepids"] == []
    status, body = await c.request("GET", A + "/v2/users/@nobody:parley.test", token=t)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("GET", A + "/v2/users/@x:elsewhere.test", token=t)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await c.request("PUT", A + f"/v2/users/{user_id}", {"admin": "yes"},
                                   token=t)
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    # deactivate with erase: no more logins, marked erased
    status, body = await c.request("POST", A + f"/v1/deactivate/{user_id}", {"erase": True},
                                   token=t)
    assert status == 200 and body == {"id_server_unbind_result": "success"}
    assert (await _login(c, user_id, "second-pass-2"))[0] == 403
    _, body = await c.request("GET", A + f"/v2/users/{user_id}", token=t)
    assert body["deactivated"] is True and body["erased"] is True
    assert body["displayname"] is None


async def test_reset_password_whois_devices(c: Client, admin: User) -> None:
    t = admin.access_token
    user = await c.register(device_id="DEVONE")
    status, _ = await c.request("POST", A + f"/v1/reset_password/{user.user_id}",
                                {"new_password": "brand-new-9", "logout_devices": False},
                                token=t)
    assert status == 200
    status, _ = await c.request("GET", "/account/whoami", token=user.access_token)
    assert status == 200  # logout_devices false keeps the session
    status, body = await c.request("POST", A + f"/v1/reset_password/{user.user_id}", {},
                                   token=t)
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"

    status, body = await c.request("GET", A + f"/v1/whois/{user.user_id}", token=t)
    assert status == 200 and body["user_id"] == user.user_id
    assert "DEVONE" in body["devices"]
    status, body = await c.request("GET", f"/_matrix/client/v3/admin/whois/{user.user_id}",
                                   token=user.access_token)
    assert status == 200  # one's own whois

    status, body = await c.request("GET", A + f"/v2/users/{user.user_id}/devices", token=t)
    assert status == 200 and body["total"] == 1
    assert body["devices"][0]["device_id"] == "DEVONE"
    status, body = await c.request("PUT", A + f"/v2/users/{user.user_id}/devices/DEVONE",
                                   {"display_name": "laptop"}, token=t)
    assert status == 200
    status, body = await c.request("GET", A + f"/v2/users/{user.user_id}/devices/DEVONE",
                                   token=t)
    assert body["display_name"] == "laptop"
    status, _ = await c.request("DELETE", A + f"/v2/users/{user.user_id}/devices/DEVONE",
                                token=t)
    assert status == 200
    status, body = await c.request("GET", "/account/whoami", token=user.access_token)
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"

    # reset_password with logout_devices (the default) ends every session
    other = await c.register()
    await c.request("POST", A + f"/v1/reset_password/{other.user_id}",
                    {"new_password": "brand-new-9"}, token=t)
    status, _ = await c.request("GET", "/account/whoami", token=other.access_token)
    assert status == 401


async def test_joined_rooms_admin_flag_username(c: Client, admin: User, server: Server) -> None:
    t = admin.access_token
    user = await c.register()
    room = await c.create_room(user)
    status, body = await c.request("GET", A + f"/v1/users/{user.user_id}/joined_rooms",
                                   token=t)
    assert status == 200 and body == {"joined_rooms": [room], "total": 1}

    status, body = await c.request("GET", A + f"/v1/users/{user.user_id}/pushers", token=t)
    assert status == 200 and body == {"pushers": [], "total": 0}
    pusher = {"kind": "http", "app_id": "org.example", "pushkey": "pk1", "app_display_name": "a",
              "device_display_name": "d", "lang": "en",
              "data": {"url": "https://push.example.org/_matrix/push/v1/notify"}}
    status, body = await c.request("POST", "/pushers/set", pusher, user.access_token)
    assert status == 200, body
    status, body = await c.request("GET", A + f"/v1/users/{user.user_id}/pushers", token=t)
    assert body["total"] == 1 and body["pushers"][0]["pushkey"] == "pk1"
    status, body = await c.request("GET", A + f"/v1/users/{user.user_id}/admin", token=t)
    assert body == {"admin": False}
    status, _ = await c.request("PUT", A + f"/v1/users/{user.user_id}/admin", {"admin": True},
                                token=t)
    assert status == 200
    # the user's existing session is an admin's now
    status, _ = await c.request("GET", A + "/v1/server_version", token=user.access_token)
    assert status == 200
    status, body = await c.request("PUT", A + f"/v1/users/{admin.user_id}/admin",
                                   {"admin": False}, token=t)
    assert status == 400  # no demoting oneself

    local = "free" + secrets.token_hex(4)
    status, body = await c.request("GET", A + "/v1/username_available", token=t,
                                   params={"username": local})
    assert status == 200 and body == {"available": True}
    status, body = await c.request("GET", A + "/v1/username_available", token=t,
                                   params={"username": user.user_id[1:].split(":")[0]})
    assert status == 400 and body["errcode"] == "M_USER_IN_USE"
    status, body = await c.request("GET", A + "/v1/username_available", token=t,
                                   params={"username": "Bad Name!"})
    assert status == 400 and body["errcode"] == "M_INVALID_USERNAME"


async def test_shadow_ban(c: Client, admin: User) -> None:
    t = admin.access_token
    owner, banned = await c.register(), await c.register()
    room = await c.create_room(owner, preset="public_chat")
    await c.join(banned, room)
    status, _ = await c.request("POST", A + f"/v1/users/{banned.user_id}/shadow_ban", {},
                                token=t)
    assert status == 200
    event_id = await c.send(banned, room, "nobody sees this")  # looks sent
    status, body = await c.request("GET", f"/rooms/{room}/event/{event_id}",
                                   token=owner.access_token)
    assert status == 404
    status, _ = await c.request("DELETE", A + f"/v1/users/{banned.user_id}/shadow_ban",
                                token=t)
    assert status == 200
    event_id = await c.send(banned, room, "visible again")
    status, body = await c.request("GET", f"/rooms/{room}/event/{event_id}",
                                   token=owner.access_token)
    assert status == 200


async def test_ratelimit_override(c: Client, admin: User) -> None:
    t = admin.access_token
    user = await c.register()
    path = A + f"/v1/users/{user.user_id}/override_ratelimit"
    status, body = await c.request("GET", path, token=t)
    assert status == 200 and body == {}
    status, body = await c.request("POST", path, {"messages_per_second": 0, "burst_count": 0},
                                   token=t)
    assert status == 200 and body == {"messages_per_second": 0, "burst_count": 0}
    status, body = await c.request("GET", path, token=t)
    assert body == {"messages_per_second": 0, "burst_count": 0}
    status, body = await c.request("POST", path, {"messages_per_second": -1}, token=t)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, _ = await c.request("DELETE", path, token=t)
    assert status == 200
    status, body = await c.request("GET", path, token=t)
    assert body == {}


async def test_suspend(c: Client, admin: User) -> None:
    t = admin.access_token
    owner, user = await c.register(), await c.register()
    room = await c.create_room(owner, preset="public_chat")
    await c.join(user, room)
    path = f"/_matrix/client/v1/admin/suspend/{user.user_id}"
    status, body = await c.request("GET", path, token=t)
    assert status == 200 and body == {"suspended": False}
    status, body = await c.request("PUT", path, {"suspended": True}, token=t)
    assert status == 200 and body == {"suspended": True}
    status, body = await c.request("PUT", f"/rooms/{room}/send/m.room.message/t1",
                                   {"msgtype": "m.text", "body": "hi"}, user.access_token)
    assert status == 403 and body["errcode"] == "M_USER_SUSPENDED"
    status, body = await c.request("PUT", f"/profile/{user.user_id}/displayname",
                                   {"displayname": "x"}, user.access_token)
    assert status == 403 and body["errcode"] == "M_USER_SUSPENDED"
    other = await c.create_room(owner, preset="public_chat")
    status, body = await c.request("POST", f"/join/{other}", {}, user.access_token)
    assert status == 403 and body["errcode"] == "M_USER_SUSPENDED"
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.topic", {"topic": "x"},
                                   user.access_token)
    assert status == 403 and body["errcode"] == "M_USER_SUSPENDED"
    # reading still works
    await c.send(owner, room, "you can read this")
    sync = await c.sync(user)
    assert room in sync["rooms"]["join"]
    status, _ = await c.request("GET", f"/rooms/{room}/messages", token=user.access_token,
                                params={"dir": "b"})
    assert status == 200
    # Synapse's path shows and changes the same state
    status, body = await c.request("GET", A + f"/v2/users/{user.user_id}", token=t)
    assert body["suspended"] is True
    status, body = await c.request("PUT", A + f"/v1/suspend/{user.user_id}",
                                   {"suspend": False}, token=t)
    assert status == 200 and body == {f"user_{user.user_id}_suspended": False}
    await c.send(user, room, "back")
    # an admin cannot suspend another admin; unknown users are 404; remote ones 400
    other_admin = await c.register()
    await c.request("PUT", A + f"/v1/users/{other_admin.user_id}/admin", {"admin": True},
                    token=t)
    status, body = await c.request("PUT", f"/_matrix/client/v1/admin/suspend/"
                                   f"{other_admin.user_id}", {"suspended": True}, token=t)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    status, body = await c.request("GET", "/_matrix/client/v1/admin/suspend/@no:parley.test",
                                   token=t)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("GET", "/_matrix/client/v1/admin/suspend/@no:other.test",
                                   token=t)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await c.request("PUT", path, {"suspended": "yes"}, token=t)
    assert status == 400


async def test_lock(c: Client, admin: User) -> None:
    t = admin.access_token
    local = "lck" + secrets.token_hex(4)
    user = await c.register(local)
    path = f"/_matrix/client/v1/admin/lock/{user.user_id}"
    status, body = await c.request("PUT", path, {"locked": True}, token=t)
    assert status == 200 and body == {"locked": True}
    status, body = await c.request("GET", "/account/whoami", token=user.access_token)
    assert status == 401 and body["errcode"] == "M_USER_LOCKED"
    assert body["soft_logout"] is True
    status, body = await c.request("GET", "/sync", token=user.access_token)
    assert status == 401 and body["errcode"] == "M_USER_LOCKED"
    status, body = await _login(c, user.user_id, "pw-secret-1")
    assert status == 401 and body["errcode"] == "M_USER_LOCKED"
    status, body = await c.request("GET", path, token=t)
    assert body == {"locked": True}
    status, _ = await c.request("PUT", path, {"locked": False}, token=t)
    status, _ = await c.request("GET", "/account/whoami", token=user.access_token)
    assert status == 200  # the session survived the lock
    # locked through Synapse's PUT /v2/users, and logout still works while locked
    status, body = await c.request("PUT", A + f"/v2/users/{user.user_id}", {"locked": True},
                                   token=t)
    assert status == 200 and body["locked"] is True
    status, _ = await c.request("POST", "/logout", {}, token=user.access_token)
    assert status == 200


async def test_put_user_refuses_a_bad_localpart(c: Client, admin: User) -> None:
    for bad in ("@Upper:parley.test", "@has space:parley.test"):
        status, body = await c.request("PUT", A + f"/v2/users/{bad}", {"password": "pw-1234"},
                                       token=admin.access_token)
        assert status == 400, (bad, body)
        status, _ = await c.request("GET", A + f"/v2/users/{bad}", token=admin.access_token)
        assert status in (400, 404)


async def test_erased_users_messages_are_hidden_from_later_joiners(c: Client,
                                                                   admin: User) -> None:
    owner, witness, late = await c.register(), await c.register(), await c.register()
    room = await c.create_room(owner, preset="public_chat")
    await c.join(witness, room)
    said = await c.send(owner, room, "something to forget")
    status, _ = await c.request("POST", A + f"/v1/deactivate/{owner.user_id}", {"erase": True},
                                token=admin.access_token)
    assert status == 200
    await c.join(late, room)
    # who was there when it was sent still sees it; who joined later does not
    status, body = await c.request("GET", f"/rooms/{room}/event/{said}",
                                   token=witness.access_token)
    assert status == 200 and body["content"]["body"] == "something to forget"
    status, body = await c.request("GET", f"/rooms/{room}/event/{said}",
                                   token=late.access_token)
    assert status == 200 and body["content"] == {}
    status, body = await c.request("GET", f"/rooms/{room}/messages", token=late.access_token,
                                   params={"dir": "b", "limit": "50"})
    mine = [e for e in body["chunk"] if e["event_id"] == said]
    assert mine and mine[0]["content"] == {}
    sync = await c.sync(late)
    for e in sync["rooms"]["join"][room]["timeline"]["events"]:
        if e["event_id"] == said:
            assert e["content"] == {}
    witnessed = await c.sync(witness)
    shown = {e["event_id"]: e for e in witnessed["rooms"]["join"][room]["timeline"]["events"]}
    assert shown[said]["content"]["body"] == "something to forget"


async def test_threepids_and_external_ids(c: Client, admin: User) -> None:
    """PUT /v2/users sets an account's 3PIDs and single sign-on links (replacing them, as
    Synapse does); GET shows them, the lookups find the account, and login by e-mail works."""
    t = admin.access_token
    tag = secrets.token_hex(4)
    uid, other = f"@tp{tag}:parley.test", f"@tq{tag}:parley.test"
    mail, mail2 = f"Tp{tag}@Example.org", f"second{tag}@example.org"
    status, body = await c.request("PUT", A + f"/v2/users/{uid}", {
        "password": "tp-pass-123", "threepids": [{"medium": "email", "address": mail}],
        "external_ids": [{"auth_provider": "cas", "external_id": f"ext{tag}"}]}, token=t)
    assert status == 201, body
    assert [(p["medium"], p["address"]) for p in body["threepids"]] == [
        ("email", mail.lower())]
    assert isinstance(body["threepids"][0]["added_at"], int)
    assert isinstance(body["threepids"][0]["validated_at"], int)
    assert body["external_ids"] == [{"auth_provider": "cas", "external_id": f"ext{tag}"}]
    status, body = await c.request("GET", A + f"/v1/threepid/email/users/{mail.lower()}",
                                   token=t)
    assert (status, body) == (200, {"user_id": uid})
    status, body = await c.request("GET", A + f"/v1/auth_providers/cas/users/ext{tag}",
                                   token=t)
    assert (status, body) == (200, {"user_id": uid})
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "password": "tp-pass-123",
        "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": mail}})
    assert status == 200 and body["user_id"] == uid, body
    # The client API shows what the admin set.
    user = User(uid, body["access_token"], body["device_id"])
    status, body = await c.request("GET", "/account/3pid", token=user.access_token)
    assert status == 200 and [p["address"] for p in body["threepids"]] == [mail.lower()]

    # Replacing: the old address goes, the new one comes; external ids emptied.
    status, body = await c.request("PUT", A + f"/v2/users/{uid}", {
        "threepids": [{"medium": "email", "address": mail2}], "external_ids": []}, token=t)
    assert status == 200, body
    assert [p["address"] for p in body["threepids"]] == [mail2] and body["external_ids"] == []
    status, body = await c.request("GET", A + f"/v1/threepid/email/users/{mail.lower()}",
                                   token=t)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("GET", A + f"/v1/auth_providers/cas/users/ext{tag}",
                                   token=t)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"

    # Another account's address: 409, and the new account is not even created.
    status, body = await c.request("PUT", A + f"/v2/users/{other}", {
        "password": "tq-pass-123", "threepids": [{"medium": "email", "address": mail2}]},
        token=t)
    assert status == 409 and body["errcode"] == "M_THREEPID_IN_USE", body
    status, _ = await c.request("GET", A + f"/v2/users/{other}", token=t)
    assert status == 404
    # Malformed lists: 400, nothing changed.
    for bad in ({"threepids": "x"}, {"threepids": [{"medium": "email"}]},
                {"threepids": [{"medium": "email", "address": "not-an-address"}]},
                {"external_ids": [{"auth_provider": "cas"}]},
                {"external_ids": [{"auth_provider": "", "external_id": "x"}]},
                {"external_ids": {"auth_provider": "cas", "external_id": "x"}}):
        status, body = await c.request("PUT", A + f"/v2/users/{uid}", bad, token=t)
        assert status == 400 and body["errcode"].startswith("M_"), (bad, body)
    _, body = await c.request("GET", A + f"/v2/users/{uid}", token=t)
    assert [p["address"] for p in body["threepids"]] == [mail2]
    status, body = await c.request("GET", A + "/v1/threepid/email/users/nobody@example.org",
                                   token=t)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
