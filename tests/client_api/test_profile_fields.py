"""Profile fields beyond displayname and avatar_url (spec v1.16, MSC4133): m.tz and custom
keys, DELETE, the key grammar and the size limits, and that they stay out of member events."""

from __future__ import annotations

from tests.helpers import Client

UNSTABLE = "/_matrix/client/unstable/uk.tcpip.msc4133"


async def test_custom_fields(c: Client) -> None:
    u = await c.register()
    other = await c.register()
    room = await c.create_room(u)
    base = f"/profile/{u.user_id}"
    status, body = await c.request("PUT", f"{base}/m.tz", {"m.tz": "Europe/London"},
                                   u.access_token)
    assert (status, body) == (200, {})
    value = {"nested": [1, 2, {"x": None}], "ok": True}
    status, _ = await c.request("PUT", f"{base}/org.example.status", {"org.example.status":
                                                                      value}, u.access_token)
    assert status == 200
    status, _ = await c.request("PUT", f"{UNSTABLE}{base}/org.example.nothing",
                                {"org.example.nothing": None}, u.access_token)
    assert status == 200
    status, body = await c.request("GET", base)
    assert body["m.tz"] == "Europe/London" and body["org.example.status"] == value
    assert body["org.example.nothing"] is None and "displayname" in body
    assert await c.request("GET", f"{base}/org.example.status") == (
        200, {"org.example.status": value})
    assert await c.request("GET", f"{UNSTABLE}{base}/m.tz") == (200, {"m.tz": "Europe/London"})
    # Custom fields are not put into member events.
    status, member = await c.request("GET", f"/rooms/{room}/state/m.room.member/{u.user_id}",
                                     token=u.access_token)
    assert "m.tz" not in member and "org.example.status" not in member
    # A display name change still reaches the rooms.
    status, _ = await c.request("PUT", f"{base}/displayname", {"displayname": "New"},
                                u.access_token)
    status, member = await c.request("GET", f"/rooms/{room}/state/m.room.member/{u.user_id}",
                                     token=u.access_token)
    assert member["displayname"] == "New"

    # DELETE: gone, and deleting again is fine; displayname can be deleted too.
    assert await c.request("DELETE", f"{base}/org.example.status", token=u.access_token) == (
        200, {})
    assert await c.request("DELETE", f"{base}/org.example.status", token=u.access_token) == (
        200, {})
    status, body = await c.request("GET", f"{base}/org.example.status")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    assert await c.request("DELETE", f"{UNSTABLE}{base}/displayname",
                           token=u.access_token) == (200, {})
    status, body = await c.request("GET", base)
    assert "displayname" not in body and body["m.tz"] == "Europe/London"
    # Only one's own profile.
    status, body = await c.request("PUT", f"{base}/m.tz", {"m.tz": "UTC"}, other.access_token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await c.request("DELETE", f"{base}/m.tz", token=other.access_token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await c.request("DELETE", f"{base}/m.tz")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    assert (await c.request("GET", f"{base}/m.tz"))[1] == {"m.tz": "Europe/London"}


async def test_field_errors_and_limits(c: Client) -> None:
    u = await c.register()
    base = f"/profile/{u.user_id}"
    t = u.access_token
    for key in ("Bad.Key", "nodots", "org..x", "org.example.", "1org.x"):
        status, body = await c.request("PUT", f"{base}/{key}", {key: 1}, t)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), key
        status, body = await c.request("GET", f"{base}/{key}")
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), key
    long_key = "org." + "a" * 260
    status, body = await c.request("PUT", f"{base}/{long_key}", {long_key: 1}, t)
    assert (status, body["errcode"]) == (400, "M_KEY_TOO_LARGE")
    status, body = await c.request("PUT", f"{base}/org.example.a", {"other": 1}, t)
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = await c.request("PUT", f"{base}/m.tz", {"m.tz": 5}, t)
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await c.request("PUT", f"{base}/org.example.a", raw=b"{x", token=t)
    assert (status, body["errcode"]) == (400, "M_NOT_JSON")
    # The whole profile stays under 64 KiB.
    big = "x" * 40_000
    status, _ = await c.request("PUT", f"{base}/org.example.one", {"org.example.one": big}, t)
    assert status == 200
    status, body = await c.request("PUT", f"{base}/org.example.two",
                                   {"org.example.two": big}, t)
    assert (status, body["errcode"]) == (400, "M_PROFILE_TOO_LARGE")
    status, body = await c.request("GET", f"{base}/org.example.two")
    assert status == 404  # nothing was stored
    # Replacing a field counts its new value, not both.
    status, _ = await c.request("PUT", f"{base}/org.example.one", {"org.example.one": big}, t)
    assert status == 200


async def test_capability_and_versions(c: Client) -> None:
    u = await c.register()
    status, body = await c.request("GET", "/capabilities", token=u.access_token)
    assert body["capabilities"]["m.profile_fields"] == {"enabled": True}
    status, body = await c.request("GET", "/_matrix/client/versions")
    assert body["unstable_features"]["uk.tcpip.msc4133"] is True
