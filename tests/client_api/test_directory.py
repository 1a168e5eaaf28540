"""Room aliases (/directory/room) and the public room list (/publicRooms)."""

from __future__ import annotations

import secrets
from urllib.parse import quote

from tests.conftest import Server
from tests.helpers import Client


async def test_alias_lifecycle(c: Client, server: Server) -> None:
    sn = server.config.server_name
    u = await c.register()
    other = await c.register()
    room = await c.create_room(u)
    alias = f"#al{secrets.token_hex(5)}:{sn}"
    status, body = await c.request("GET", f"/directory/room/{quote(alias)}")
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("PUT", f"/directory/room/{quote(alias)}", {"room_id": room},
                                   token=other.access_token)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    status, body = await c.request("PUT", f"/directory/room/{quote(alias)}", {"room_id": room},
                                   token=u.access_token)
    assert status == 200
    assert body == {}
    status, body = await c.request("PUT", f"/directory/room/{quote(alias)}", {"room_id": room},
                                   token=u.access_token)
    assert status == 409
    status, body = await c.request("GET", f"/directory/room/{quote(alias)}")
    assert status == 200
    assert body == {"room_id": room, "servers": [sn]}
    status, body = await c.request("GET", f"/rooms/{room}/aliases", token=u.access_token)
    assert status == 200
    assert body == {"aliases": [alias]}
    status, body = await c.request("GET", f"/rooms/{room}/aliases", token=other.access_token)
    assert status == 403
    status, body = await c.request("DELETE", f"/directory/room/{quote(alias)}",
                                   token=other.access_token)
    assert status == 403
    status, body = await c.request("DELETE", f"/directory/room/{quote(alias)}",
                                   token=u.access_token)
    assert status == 200
    status, body = await c.request("GET", f"/directory/room/{quote(alias)}")
    assert status == 404
    status, body = await c.request("DELETE", f"/directory/room/{quote(alias)}",
                                   token=u.access_token)
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"


async def test_room_alias_name_on_create(c: Client, server: Server) -> None:
    u = await c.register()
    local = "made" + secrets.token_hex(5)
    room = await c.create_room(u, room_alias_name=local)
    alias = f"#{local}:{server.config.server_name}"
    status, body = await c.request("GET", f"/directory/room/{quote(alias)}")
    assert status == 200
    assert body["room_id"] == room
    status, body = await c.request("GET", f"/rooms/{room}/state/m.room.canonical_alias",
                                   token=u.access_token)
    assert body == {"alias": alias}
    status, body = await c.request("POST", "/createRoom", {"room_alias_name": local},
                                   token=u.access_token)
    assert status == 400
    assert body["errcode"] == "M_ROOM_IN_USE"
    # Joining by alias works.
    other = await c.register()
    room2 = await c.create_room(u, preset="public_chat", room_alias_name=local + "p")
    status, body = await c.request(
        "POST", f"/join/%23{local}p:{server.config.server_name}", {}, token=other.access_token)
    assert status == 200, body
    assert body == {"room_id": room2}


async def test_public_rooms(c: Client) -> None:
    u = await c.register()
    term = "zq" + secrets.token_hex(4)
    public = await c.create_room(u, visibility="public", name=f"Lounge {term}",
                                 topic="chit chat")
    private = await c.create_room(u, name=f"Secret {term}")
    status, body = await c.request("GET", "/publicRooms")
    assert status == 200
    ids = [r["room_id"] for r in body["chunk"]]
    assert public in ids
    assert private not in ids
    entry = next(r for r in body["chunk"] if r["room_id"] == public)
    assert entry["name"] == f"Lounge {term}"
    assert entry["topic"] == "chit chat"
    assert entry["num_joined_members"] == 1
    assert entry["world_readable"] is False
    assert entry["guest_can_join"] is False
    assert entry["join_rule"] == "public"
    assert isinstance(body["total_room_count_estimate"], int)

    status, body = await c.request("POST", "/publicRooms",
                                   {"filter": {"generic_search_term": term.upper()}},
                                   token=u.access_token)
    assert status == 200
    assert [r["room_id"] for r in body["chunk"]] == [public]
    status, body = await c.request("POST", "/publicRooms",
                                   {"filter": {"generic_search_term": "no-such-" + term}},
                                   token=u.access_token)
    assert body["chunk"] == []

    status, body = await c.request("GET", f"/directory/list/room/{public}")
    assert body == {"visibility": "public"}
    status, body = await c.request("GET", f"/directory/list/room/{private}")
    assert body == {"visibility": "private"}
    status, body = await c.request("PUT", f"/directory/list/room/{private}",
                                   {"visibility": "public"}, token=u.access_token)
    assert status == 200
    status, body = await c.request("POST", "/publicRooms",
                                   {"filter": {"generic_search_term": term}},
                                   token=u.access_token)
    assert sorted(r["room_id"] for r in body["chunk"]) == sorted([public, private])


async def test_public_rooms_pagination(c: Client) -> None:
    u = await c.register()
    for _ in range(3):
        await c.create_room(u, visibility="public")
    status, first = await c.request("GET", "/publicRooms", params={"limit": "2"})
    assert status == 200
    assert len(first["chunk"]) == 2
    assert "next_batch" in first
    status, second = await c.request("GET", "/publicRooms",
                                     params={"limit": "2", "since": first["next_batch"]})
    assert status == 200
    assert "prev_batch" in second
    seen = {r["room_id"] for r in first["chunk"]}
    assert not seen & {r["room_id"] for r in second["chunk"]}


async def test_public_rooms_of_another_server_without_federation(c: Client) -> None:
    user = await c.register()
    status, body = await c.request("GET", "/publicRooms", token=user.access_token,
                                   params={"server": "elsewhere.example"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await c.request("GET", "/publicRooms", token=user.access_token,
                                   params={"server": "parley.test"})
    assert status == 200 and "chunk" in body


async def test_deleting_an_alias_takes_it_out_of_the_canonical_alias(c: Client,
                                                                    server: Server) -> None:
    """A deleted alias no longer names the room in m.room.canonical_alias (alias or
    alt_aliases); the others stay (SyTest "Can delete canonical alias")."""
    u = await c.register()
    room = await c.create_room(u)
    main, alt, other = (f"#{p}{secrets.token_hex(4)}:{server.config.server_name}"
                        for p in ("main", "alt", "other"))
    for alias in (main, alt, other):
        status, body = await c.request("PUT", f"/directory/room/{quote(alias)}",
                                       {"room_id": room}, u.access_token)
        assert status == 200, body
    path = f"/rooms/{room}/state/m.room.canonical_alias"
    status, body = await c.request("PUT", path, {"alias": main, "alt_aliases": [alt, other]},
                                   u.access_token)
    assert status == 200, body
    status, _ = await c.request("DELETE", f"/directory/room/{quote(main)}", {}, u.access_token)
    assert status == 200
    status, body = await c.request("GET", path, token=u.access_token)
    assert (status, body) == (200, {"alt_aliases": [alt, other]})
    status, _ = await c.request("DELETE", f"/directory/room/{quote(alt)}", {}, u.access_token)
    assert status == 200
    status, body = await c.request("GET", path, token=u.access_token)
    assert (status, body) == (200, {"alt_aliases": [other]})


async def test_public_rooms_paging_both_ways_sees_every_room_once(c: Client) -> None:
    """Forwards to the end and back to the start, each room once each way; no token is "0",
    which a client may take for "no more" (SyTest "Can paginate public room list")."""
    u = await c.register()
    for _ in range(7):
        await c.create_room(u, visibility="public")
    status, everything = await c.request("GET", "/publicRooms")
    assert status == 200
    total = {r["room_id"] for r in everything["chunk"]}
    forwards: list[str] = []
    tokens: list[str] = []
    body: dict[str, object] = {"limit": 3}
    while True:
        status, page = await c.request("POST", "/publicRooms", body, u.access_token)
        assert status == 200, page
        forwards += [r["room_id"] for r in page["chunk"]]
        tokens += [t for t in (page.get("next_batch"), page.get("prev_batch")) if t]
        if not page.get("next_batch"):
            break
        body = {"limit": 3, "since": page["next_batch"]}
    assert sorted(forwards) == sorted(total)
    backwards: list[str] = []
    while page.get("prev_batch"):
        status, page = await c.request("POST", "/publicRooms",
                                       {"limit": 3, "since": page["prev_batch"]},
                                       u.access_token)
        backwards += [r["room_id"] for r in page["chunk"]]
        tokens += [t for t in (page.get("next_batch"), page.get("prev_batch")) if t]
    assert len(backwards) == len(set(backwards))
    assert set(backwards) == set(forwards[:len(backwards)]) and len(backwards) >= len(total) - 3
    assert set(forwards[:3]) <= set(backwards)  # the first page too
    assert "0" not in tokens
