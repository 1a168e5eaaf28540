"""Two Parley servers: a client of one looks up a user's profile, a room alias and the public
room directory of the other (/query/profile, /query/directory, /publicRooms over
federation)."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from federation.client import FederationError
from tests.federation.conftest import Factory, FedServer


async def test_remote_profile_alias_and_public_rooms(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob = await a.client.register("alice"), await b.client.register("bob")
    status, _ = await b.client.request("PUT", f"/profile/{bob.user_id}/displayname",
                                       {"displayname": "Bob of B"}, bob.access_token)
    assert status == 200

    # Profile
    status, body = await a.client.request("GET", f"/profile/{bob.user_id}",
                                          token=alice.access_token)
    assert (status, body) == (200, {"displayname": "Bob of B"})
    status, body = await a.client.request("GET", f"/profile/{bob.user_id}/displayname",
                                          token=alice.access_token)
    assert (status, body) == (200, {"displayname": "Bob of B"})
    status, body = await a.client.request("GET", f"/profile/{bob.user_id}/avatar_url",
                                          token=alice.access_token)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await a.client.request("GET", f"/profile/@nobody:{b.name}",
                                          token=alice.access_token)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # Profile fields beyond the classic two (MSC4133) travel too.
    status, _ = await b.client.request("PUT", f"/profile/{bob.user_id}/m.tz",
                                       {"m.tz": "Europe/Paris"}, bob.access_token)
    assert status == 200
    status, body = await a.client.request("GET", f"/profile/{bob.user_id}/m.tz",
                                          token=alice.access_token)
    assert (status, body) == (200, {"m.tz": "Europe/Paris"})

    # Alias
    room_id = await b.client.create_room(bob, preset="public_chat", room_alias_name="town",
                                         name="Town square", topic="all welcome",
                                         visibility="public")
    await b.client.create_room(bob, preset="public_chat", name="Quiet corner",
                               visibility="public")
    await b.client.create_room(bob, preset="private_chat", name="Hidden")
    status, body = await a.client.request("GET", "/directory/room/" + quote(
        f"#town:{b.name}", safe=""), token=alice.access_token)
    assert status == 200, body
    assert body["room_id"] == room_id and b.name in body["servers"]
    status, body = await a.client.request("GET", "/directory/room/" + quote(
        f"#nowhere:{b.name}", safe=""), token=alice.access_token)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")

    # Public room directory of B, asked through A: GET, paging, and POST with a search term.
    status, body = await a.client.request("GET", "/publicRooms", token=alice.access_token,
                                          params={"server": b.name})
    assert status == 200, body
    names = sorted(e.get("name") for e in body["chunk"])
    assert names == ["Quiet corner", "Town square"]
    town = next(e for e in body["chunk"] if e["room_id"] == room_id)
    assert town["topic"] == "all welcome" and town["num_joined_members"] == 1
    assert town["canonical_alias"] == f"#town:{b.name}"
    status, body = await a.client.request("GET", "/publicRooms", token=alice.access_token,
                                          params={"server": b.name, "limit": "1"})
    assert status == 200 and len(body["chunk"]) == 1 and body["next_batch"]
    status, page2 = await a.client.request("GET", "/publicRooms", token=alice.access_token,
                                           params={"server": b.name, "limit": "1",
                                                   "since": body["next_batch"]})
    assert status == 200 and len(page2["chunk"]) == 1
    assert page2["chunk"][0]["room_id"] != body["chunk"][0]["room_id"]
    status, body = await a.client.request(
        "POST", "/publicRooms", {"filter": {"generic_search_term": "square"}},
        alice.access_token, params={"server": b.name})
    assert status == 200, body
    assert [e["room_id"] for e in body["chunk"]] == [room_id]
    # A's own list is A's (empty), and a server that cannot be reached is an error, not 500.
    status, body = await a.client.request("GET", "/publicRooms", token=alice.access_token)
    assert (status, body["chunk"]) == (200, [])
    status, body = await a.client.request("GET", "/publicRooms", token=alice.access_token,
                                          params={"server": "127.0.0.1:1"})
    assert status == 502 and body["errcode"] == "M_UNKNOWN"
    status, body = await a.client.request("GET", "/publicRooms", token=alice.access_token,
                                          params={"server": "bad name!"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_openid_token_checked_over_federation(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob = await a.client.register("alice"), await a.client.register("bob")
    status, body = await a.client.request("POST", f"/user/{alice.user_id}/openid/request_token",
                                          {}, alice.access_token)
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["matrix_server_name"] == a.name
    assert body["expires_in"] > 0
    status, other = await a.client.request("POST", f"/user/{alice.user_id}/openid/request_token",
                                           {}, bob.access_token)
    assert (status, other["errcode"]) == (403, "M_FORBIDDEN")
    # A third party (here B's outbound client, unsigned, over TLS) asks A whose it is.
    fc = b.hs.federation.client
    got = await fc.request(a.name, "GET", "/_matrix/federation/v1/openid/userinfo",
                           query={"access_token": body["access_token"]}, signed=False)
    assert got == {"sub": alice.user_id}
    with pytest.raises(FederationError) as e:
        await fc.request(a.name, "GET", "/_matrix/federation/v1/openid/userinfo",
                         query={"access_token": "forged"}, signed=False)
    assert (e.value.status, e.value.errcode) == (401, "M_UNKNOWN_TOKEN")
    # /version answers without a signature too.
    got = await fc.request(a.name, "GET", "/_matrix/federation/v1/version", signed=False)
    assert got["server"]["name"] == "Parley"


async def test_bad_requests_to_the_new_endpoints_are_4xx(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    bob = await b.client.register("bob")
    fc = a.hs.federation.client
    F = "/_matrix/federation/v1"
    for method, path, body, status, errcode in (
            ("GET", f"{F}/user/devices/not-a-user", None, 400, "M_INVALID_PARAM"),
            ("GET", f"{F}/user/devices/@someone:{a.name}", None, 404, "M_NOT_FOUND"),
            ("POST", f"{F}/user/keys/query", {"device_keys": []}, 400, "M_BAD_JSON"),
            ("POST", f"{F}/user/keys/query", {"device_keys": {bob.user_id: "x"}}, 400,
             "M_BAD_JSON"),
            ("POST", f"{F}/user/keys/query", {"device_keys": {"nobody": []}}, 400,
             "M_INVALID_PARAM"),
            ("POST", f"{F}/user/keys/claim", {"one_time_keys": {bob.user_id: {"D": 5}}}, 400,
             "M_BAD_JSON"),
            ("POST", f"{F}/user/keys/claim", {}, 400, "M_BAD_JSON"),
            ("POST", f"{F}/publicRooms", {"limit": -1}, 400, "M_BAD_JSON"),
            ("POST", f"{F}/publicRooms", {"filter": {"generic_search_term": 5}}, 400,
             "M_BAD_JSON"),
            ("POST", f"{F}/publicRooms", {"since": 5}, 400, "M_BAD_JSON")):
        with pytest.raises(FederationError) as e:
            await fc.request(b.name, method, path, body=body)
        assert (e.value.status, e.value.errcode) == (status, errcode), (path, body)
    # Unsigned requests to them are 401.
    with pytest.raises(FederationError) as e:
        await fc.request(b.name, "GET", f"{F}/user/devices/{bob.user_id}", signed=False)
    assert e.value.status == 401
    # And a good one answers.
    got = await fc.request(b.name, "GET", f"{F}/user/devices/{bob.user_id}")
    assert got["user_id"] == bob.user_id and [d["device_id"] for d in got["devices"]] == [
        bob.device_id]
