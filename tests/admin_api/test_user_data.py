"""The user admin API's reads of what a user has and did (account data, memberships, the sent
invite and cumulative joined room counts), logging in as a user, and the experimental
features endpoint (which has no features to show here)."""

from __future__ import annotations

import time

from tests.helpers import Client, User

A = "/_synapse/admin"


async def test_account_data(c: Client, admin: User) -> None:
    t = admin.access_token
    user = await c.register()
    room = await c.create_room(user)
    assert (await c.request("PUT", f"/user/{user.user_id}/account_data/org.example.a",
                            {"a": 1}, user.access_token))[0] == 200
    assert (await c.request("PUT", f"/user/{user.user_id}/rooms/{room}/account_data/"
                            "org.example.b", {"b": [2]}, user.access_token))[0] == 200
    assert (await c.request("PUT", f"/user/{user.user_id}/rooms/{room}/tags/u.work",
                            {"order": 0.5}, user.access_token))[0] == 200
    status, body = await c.request("GET", A + f"/v1/users/{user.user_id}/accountdata",
                                   token=t)
    assert status == 200, body
    data = body["account_data"]
    assert data["global"]["org.example.a"] == {"a": 1}
    assert data["rooms"] == {room: {"org.example.b": {"b": [2]},
                                    "m.tag": {"tags": {"u.work": {"order": 0.5}}}}}

    fresh = await c.register()
    status, body = await c.request("GET", A + f"/v1/users/{fresh.user_id}/accountdata",
                                   token=t)
    assert status == 200 and body["account_data"]["rooms"] == {}
    for who, code, errcode in (("@x:elsewhere.test", 400, "M_INVALID_PARAM"),
                               ("@nobody-here:parley.test", 404, "M_NOT_FOUND"),
                               ("not-a-user", 400, "M_INVALID_PARAM")):
        status, body = await c.request("GET", A + f"/v1/users/{who}/accountdata", token=t)
        assert status == code and body["errcode"] == errcode, (who, body)


async def test_memberships(c: Client, admin: User) -> None:
    t = admin.access_token
    owner, user = await c.register(), await c.register()
    joined = await c.create_room(owner, preset="public_chat")
    left = await c.create_room(owner, preset="public_chat")
    invited = await c.create_room(owner)
    banned = await c.create_room(owner, preset="public_chat")
    for room in (joined, left, banned):
        await c.join(user, room)
    await c.request("POST", f"/rooms/{left}/leave", {}, user.access_token)
    await c.request("POST", f"/rooms/{invited}/invite", {"user_id": user.user_id},
                    owner.access_token)
    await c.request("POST", f"/rooms/{banned}/ban", {"user_id": user.user_id},
                    owner.access_token)
    status, body = await c.request("GET", A + f"/v1/users/{user.user_id}/memberships",
                                   token=t)
    assert status == 200, body
    assert body == {"memberships": {joined: "join", left: "leave", invited: "invite",
                                    banned: "ban"}}
    # as Synapse: another server's user, known through the rooms shared with them
    status, body = await c.request("GET", A + "/v1/users/@x:elsewhere.test/memberships",
                                   token=t)
    assert status == 200 and body == {"memberships": {}}
    status, body = await c.request("GET", A + "/v1/users/@nobody-here:parley.test/memberships",
                                   token=t)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("GET", A + "/v1/users/nope/memberships", token=t)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"


async def test_sent_invite_and_cumulative_joined_room_counts(c: Client, admin: User) -> None:
    t = admin.access_token
    before = int(time.time() * 1000) - 1000
    inviter, owner = await c.register(), await c.register()
    room = await c.create_room(inviter)
    for _ in range(2):
        invitee = await c.register()
        status, _ = await c.request("POST", f"/rooms/{room}/invite",
                                    {"user_id": invitee.user_id}, inviter.access_token)
        assert status == 200
    rooms = [await c.create_room(owner, preset="public_chat") for _ in range(3)]
    for r in rooms:
        await c.join(inviter, r)
    await c.request("POST", f"/rooms/{rooms[0]}/leave", {}, inviter.access_token)
    later = int(time.time() * 1000) + 60_000

    path = A + f"/v1/users/{inviter.user_id}/sent_invite_count"
    status, body = await c.request("GET", path, token=t, params={"from_ts": str(before)})
    assert status == 200 and body == {"invite_count": 2}, body
    status, body = await c.request("GET", path, token=t, params={"from_ts": str(later)})
    assert body == {"invite_count": 0}

    path = A + f"/v1/users/{inviter.user_id}/cumulative_joined_room_count"
    status, body = await c.request("GET", path, token=t, params={"from_ts": str(before)})
    # the room the user created (its creator joins it) and the three joined, one left since
    assert status == 200 and body == {"cumulative_joined_room_count": 4}, body
    status, body = await c.request("GET", path, token=t, params={"from_ts": str(later)})
    assert body == {"cumulative_joined_room_count": 0}

    for endpoint in ("sent_invite_count", "cumulative_joined_room_count"):
        path = A + f"/v1/users/{inviter.user_id}/{endpoint}"
        status, body = await c.request("GET", path, token=t)
        assert status == 400 and body["errcode"] == "M_MISSING_PARAM"
        for bad in ("abc", "-5", "1e3", "99999999999999999999"):
            status, body = await c.request("GET", path, token=t, params={"from_ts": bad})
            assert status == 400 and body["errcode"] == "M_INVALID_PARAM", (bad, body)
        status, body = await c.request(
            "GET", A + f"/v1/users/@nobody-here:parley.test/{endpoint}", token=t,
            params={"from_ts": "0"})
        assert status == 404 and body["errcode"] == "M_NOT_FOUND"
        status, body = await c.request("GET", A + f"/v1/users/@x:elsewhere.test/{endpoint}",
                                       token=t, params={"from_ts": "0"})
        assert status == 200 and list(body.values()) == [0]


async def test_login_as_a_user(c: Client, admin: User) -> None:
    t = admin.access_token
    user = await c.register()
    status, body = await c.request("POST", A + f"/v1/users/{user.user_id}/login", {}, token=t)
    assert status == 200, body
    token = body["access_token"]
    status, body = await c.request("GET", "/account/whoami", token=token)
    assert status == 200 and body["user_id"] == user.user_id, body
    # Parley's tokens belong to a device: the session is a device of the user, named so
    status, body = await c.request("GET", "/devices", token=user.access_token)
    names = {d["device_id"]: d["display_name"] for d in body["devices"]}
    assert len(names) == 2 and f"Admin login ({admin.user_id})" in names.values()

    past = int(time.time() * 1000) - 1000
    status, body = await c.request("POST", A + f"/v1/users/{user.user_id}/login",
                                   {"valid_until_ms": past}, token=t)
    assert status == 200
    status, body = await c.request("GET", "/account/whoami", token=body["access_token"])
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"
    future = int(time.time() * 1000) + 3_600_000
    status, body = await c.request("POST", A + f"/v1/users/{user.user_id}/login",
                                   {"valid_until_ms": future}, token=t)
    assert status == 200
    assert (await c.request("GET", "/account/whoami", token=body["access_token"]))[0] == 200

    devices_before = len((await c.request("GET", "/devices", token=user.access_token))[1][
        "devices"])
    for bad in ("soon", True, 1.5, -1, 2**60):
        status, body = await c.request("POST", A + f"/v1/users/{user.user_id}/login",
                                       {"valid_until_ms": bad}, token=t)
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", (bad, body)
    status, body = await c.request("POST", A + f"/v1/users/{admin.user_id}/login", {},
                                   token=t)
    assert status == 400  # not as oneself, as Synapse
    assert len((await c.request("GET", "/devices", token=user.access_token))[1][
        "devices"]) == devices_before
    for who, code in (("@x:elsewhere.test", 400), ("@nobody-here:parley.test", 404)):
        status, body = await c.request("POST", A + f"/v1/users/{who}/login", {}, token=t)
        assert status == code, (who, body)
    gone = await c.register()
    await c.request("POST", A + f"/v1/deactivate/{gone.user_id}", {}, token=t)
    status, body = await c.request("POST", A + f"/v1/users/{gone.user_id}/login", {},
                                   token=t)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_experimental_features_has_none(c: Client, admin: User) -> None:
    t = admin.access_token
    user = await c.register()
    path = A + f"/v1/experimental_features/{user.user_id}"
    status, body = await c.request("GET", path, token=t)
    assert status == 200 and body == {"features": {}}
    status, body = await c.request("PUT", path, {"features": {"msc3881": True}}, token=t)
    assert status == 400 and "msc3881" in body["error"]
    status, body = await c.request("GET", path, token=t)
    assert body == {"features": {}}
    for bad in ({}, {"features": {}}, {"features": ["msc3881"]}):
        status, body = await c.request("PUT", path, bad, token=t)
        assert status == 400 and body["errcode"] == "M_MISSING_PARAM", (bad, body)
    for who, code in (("@x:elsewhere.test", 400), ("@nobody-here:parley.test", 404)):
        status, body = await c.request("GET", A + f"/v1/experimental_features/{who}", token=t)
        assert status == code, (who, body)
