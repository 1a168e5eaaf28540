"""Malformed requests, one test per class an outside check found (500s and invalid data stored):
each must get a 4xx with the spec's errcode, as Matrix JSON, and change nothing in the database.

Classes: JSON nested too deep; NUL (and other unstorable text) in ids, paths and bodies; numbers
canonical JSON cannot hold in event content; `m.room.canonical_alias` aliases that are malformed or
point elsewhere; wrong types in filters and query parameters; an over-long request line or header.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from tests.client_api.unchanged import changed, digest
from tests.conftest import Server
from tests.helpers import Client, User

MAX_SAFE = 2**53 - 1


class Checker:
    """Sends a request that must be refused and checks the refusal and that nothing changed."""

    def __init__(self, c: Client, server: Server) -> None:
        self.c = c
        self.db = server.hs.db

    async def refused(self, method: str, path: str, body: Any = None, *, token: str | None,
                      status: int = 400, errcode: str, raw: bytes | None = None,
                      params: dict[str, str] | None = None) -> dict[str, Any]:
        before = await digest(self.db)
        got, data = await self.c.request(method, path, body, token, raw=raw, params=params)
        after = await digest(self.db)
        assert (got, _errcode(data)) == (status, errcode), (method, path, got, data)
        assert isinstance(data.get("error"), str), data
        assert changed(before, after) == [], (method, path, data)
        return dict(data)


def _errcode(data: Any) -> Any:
    return data.get("errcode") if isinstance(data, dict) else data


@pytest.fixture
async def check(c: Client, server: Server) -> Checker:
    return Checker(c, server)


@pytest.fixture
async def room(c: Client) -> AsyncIterator[tuple[User, str]]:
    u = await c.register()
    yield u, await c.create_room(u, preset="public_chat")


def deep(levels: int, leaf: Any = 1) -> Any:
    v: Any = leaf
    for i in range(levels - 1):
        v = {"k": v} if i % 2 else [v]
    return {"k": v}


def deep_raw(levels: int) -> bytes:
    return b'{"a":' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


def txn() -> str:
    return secrets.token_hex(6)


# ---------------------------------------------------------------------- 1. deep nesting


@pytest.mark.parametrize("levels", [1000, 5000])
async def test_deeply_nested_bodies_are_bad_json(check: Checker, room: tuple[User, str],
                                                 levels: int) -> None:
    u, r = room
    raw = deep_raw(levels)
    for method, path in [
        ("PUT", f"/rooms/{r}/send/m.room.message/{txn()}"),
        ("PUT", f"/rooms/{r}/state/m.custom/key"),
        ("POST", "/createRoom"),
        ("PUT", f"/user/{u.user_id}/account_data/m.custom"),
        ("POST", f"/user/{u.user_id}/filter"),
        ("PUT", f"/rooms/{r}/redact/$x/{txn()}"),
        ("POST", f"/rooms/{r}/invite"),
        ("PUT", f"/sendToDevice/m.custom/{txn()}"),
        ("PUT", f"/profile/{u.user_id}/displayname"),
        ("POST", "/room_keys/version"),
        ("PUT", "/room_keys/version/1"),
        ("PUT", "/room_keys/keys?version=1"),
        ("PUT", f"/room_keys/keys/{quote(r)}?version=1"),
        ("PUT", f"/room_keys/keys/{quote(r)}/sess?version=1"),
    ]:
        await check.refused(method, path, raw=raw, token=u.access_token, errcode="M_BAD_JSON")


async def test_deeply_nested_inline_filters_are_bad_json(check: Checker,
                                                         room: tuple[User, str]) -> None:
    u, r = room
    flt = deep_raw(1000).decode()
    await check.refused("GET", "/sync", token=u.access_token, errcode="M_BAD_JSON",
                        params={"filter": flt})
    await check.refused("GET", f"/rooms/{r}/messages", token=u.access_token,
                        errcode="M_BAD_JSON", params={"filter": flt, "dir": "b"})


async def test_nesting_at_the_limit_is_stored_and_syncs_back(c: Client,
                                                             room: tuple[User, str]) -> None:
    from homeserver.json_input import MAX_JSON_DEPTH

    u, r = room
    content = {"msgtype": "m.text", "body": "deep", "x": deep(MAX_JSON_DEPTH - 1)}
    status, data = await c.request("PUT", f"/rooms/{r}/send/m.room.message/{txn()}", content,
                                   u.access_token)
    assert status == 200, data
    body = await c.sync(u)
    events = body["rooms"]["join"][r]["timeline"]["events"]
    assert [e["content"] for e in events if e["event_id"] == data["event_id"]] == [content]
    status, data = await c.request("PUT", f"/rooms/{r}/send/m.room.message/{txn()}",
                                   {"x": deep(MAX_JSON_DEPTH)}, u.access_token)
    assert (status, data["errcode"]) == (400, "M_BAD_JSON")


async def test_deep_websocket_frame_is_bad_json(c: Client, server: Server,
                                                room: tuple[User, str]) -> None:
    u, r = room
    before = await digest(server.hs.db)
    async with c.session.ws_connect(server.url + "/_matrix/client/v3/sync",
                                    headers={"Authorization": f"Bearer {u.access_token}"}) as ws:
        frame = (b'{"id":"d","method":"send","params":{"room_id":' + orjson.dumps(r)
                 + b',"type":"m.room.message","txn_id":"t1","content":{"a":'
                 + b"[" * 1000 + b"]" * 1000 + b"}}}")
        await ws.send_bytes(frame)
        reply = await _ws_reply(ws)
        assert reply["error"]["errcode"] == "M_BAD_JSON", reply
        # the socket still works
        await ws.send_json({"id": "p", "method": "ping"})
        assert (await _ws_reply(ws)) == {"id": "p", "result": {}}
    assert changed(before, await digest(server.hs.db)) == []


async def _ws_reply(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            data = msg.json()
            if "type" not in data:
                return dict(data)


# ---------------------------------------------------------------------- 2. NUL and bad text


async def test_nul_in_path_identifiers_is_invalid_param(check: Checker,
                                                        room: tuple[User, str]) -> None:
    u, r = room
    nul = "%00"
    rq = quote(r)
    for method, path, body in [
        ("GET", f"/profile/@a{nul}b:parley.test", None),
        ("GET", f"/profile/@a{nul}b:parley.test/displayname", None),
        ("PUT", f"/rooms/!a{nul}b:parley.test/send/m.room.message/{txn()}", {"body": "x"}),
        ("PUT", f"/rooms/{rq}/send/m.room.message/t{nul}x", {"body": "x"}),
        ("PUT", f"/rooms/{rq}/send/m.x{nul}y/{txn()}", {"body": "x"}),
        ("PUT", f"/rooms/{rq}/state/m.custom/k{nul}", {"a": "b"}),
        ("GET", f"/rooms/{rq}/event/$e{nul}v", None),
        ("GET", f"/rooms/{rq}/context/$e{nul}v", None),
        ("PUT", f"/rooms/{rq}/redact/$e{nul}v/{txn()}", {}),
        ("POST", f"/rooms/{rq}/receipt/m.read/$e{nul}v", {}),
        ("GET", f"/directory/room/%23a{nul}b:parley.test", None),
        ("PUT", f"/directory/room/%23a{nul}b:parley.test", {"room_id": r}),
        ("POST", f"/join/%23a{nul}b:parley.test", {}),
        ("PUT", f"/user/{u.user_id}/account_data/m.x{nul}", {"a": 1}),
        ("PUT", f"/user/{u.user_id}/rooms/{rq}/account_data/m.x{nul}", {"a": 1}),
        ("GET", f"/user/{u.user_id}/filter/1{nul}", None),
        ("PUT", f"/user/{u.user_id}/rooms/{rq}/tags/t{nul}", {}),
        ("PUT", f"/devices/D{nul}", {"display_name": "x"}),
        ("PUT", f"/sendToDevice/m.x/{txn()}{nul}", {"messages": {}}),
        ("GET", f"/room_keys/version/1{nul}", None),
        ("DELETE", f"/room_keys/version/1{nul}", None),
        ("GET", f"/room_keys/keys/!a{nul}b:parley.test?version=1", None),
        ("PUT", f"/room_keys/keys/{rq}/s{nul}?version=1", {}),
        ("DELETE", f"/room_keys/keys/{rq}/s{nul}?version=1", None),
    ]:
        await check.refused(method, path, body, token=u.access_token, errcode="M_INVALID_PARAM")


async def test_nul_in_query_parameters_is_invalid_param(check: Checker,
                                                        room: tuple[User, str]) -> None:
    u, r = room
    for path, params in [
        ("/sync", {"since": "s1\x00"}),
        ("/sync", {"filter": "1\x00"}),
        (f"/rooms/{r}/messages", {"dir": "b", "from": "t1_1\x00"}),
        ("/publicRooms", {"since": "\x00"}),
        ("/sync", {"access_token": "x\x00y"}),
        ("/room_keys/keys", {"version": "1\x00"}),
    ]:
        await check.refused("GET", path, token=u.access_token, errcode="M_INVALID_PARAM",
                            params=params)


async def test_nul_in_bodies_is_bad_json(check: Checker, room: tuple[User, str]) -> None:
    u, r = room
    for method, path, body in [
        ("PUT", f"/rooms/{r}/send/m.room.message/{txn()}", {"body": "a\x00b"}),
        ("PUT", f"/rooms/{r}/send/m.room.message/{txn()}", {"a\x00": "b"}),
        ("PUT", f"/rooms/{r}/state/m.room.topic", {"topic": "\x00"}),
        ("PUT", f"/profile/{u.user_id}/displayname", {"displayname": "x\x00"}),
        ("PUT", f"/user/{u.user_id}/account_data/m.custom", {"v": ["\x00"]}),
        ("POST", f"/user/{u.user_id}/filter", {"room": {"rooms": ["!a\x00"]}}),
        ("PUT", f"/user/{u.user_id}/rooms/{r}/tags/t", {"x": "\x00"}),
        ("POST", "/createRoom", {"name": "a\x00"}),
        ("POST", "/createRoom", {"initial_state": [{"type": "m.x", "state_key": "\x00",
                                                    "content": {}}]}),
        ("POST", f"/rooms/{r}/invite", {"user_id": "@a\x00:parley.test"}),
        ("POST", f"/rooms/{r}/leave", {"reason": "\x00"}),
        ("PUT", f"/devices/{u.device_id}", {"display_name": "\x00"}),
        ("PUT", f"/directory/room/%23ok{txn()}:parley.test", {"room_id": r + "\x00"}),
        ("POST", f"/rooms/{r}/read_markers", {"m.fully_read": "$a\x00"}),
        ("PUT", f"/sendToDevice/m.x/{txn()}",
         {"messages": {u.user_id: {"D\x00": {"a": 1}}}}),
        ("POST", "/room_keys/version", {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
                                        "auth_data": {"public_key": "k\x00"}}),
        ("PUT", "/room_keys/keys?version=1", {"rooms": {r: {"sessions": {"s\x00": {}}}}}),
    ]:
        await check.refused(method, path, body, token=u.access_token, errcode="M_BAD_JSON")


async def test_nul_in_login_and_register_bodies(check: Checker) -> None:
    local = "u" + secrets.token_hex(4)
    await check.refused("POST", "/register", {"username": local, "password": "pw-secret-1",
                                              "device_id": "D\x00",
                                              "auth": {"type": "m.login.dummy"}},
                        token=None, errcode="M_BAD_JSON")
    await check.refused("POST", "/login", {"type": "m.login.password", "user": "a\x00",
                                           "password": "x"}, token=None, errcode="M_BAD_JSON")


async def test_lone_surrogate_is_not_json(check: Checker, room: tuple[User, str]) -> None:
    u, r = room
    await check.refused("PUT", f"/rooms/{r}/send/m.room.message/{txn()}",
                        raw=b'{"body": "\\ud800"}', token=u.access_token, errcode="M_NOT_JSON")


async def test_malformed_identifiers_in_bodies(check: Checker, room: tuple[User, str]) -> None:
    u, r = room
    await check.refused("POST", f"/rooms/{r}/invite", {"user_id": "@nocolon"},
                        token=u.access_token, errcode="M_BAD_JSON")
    await check.refused("POST", f"/rooms/{r}/invite", {"user_id": "@a:bad server"},
                        token=u.access_token, errcode="M_INVALID_PARAM")
    await check.refused("PUT", f"/directory/room/%23ok{txn()}:parley.test",
                        {"room_id": "not-a-room"}, token=u.access_token,
                        errcode="M_INVALID_PARAM")
    await check.refused("POST", f"/rooms/{r}/read_markers", {"m.fully_read": "no-sigil"},
                        token=u.access_token, errcode="M_INVALID_PARAM")


# ---------------------------------------------------------------------- 3. canonical JSON numbers


@pytest.mark.parametrize("bad", [1.5, 1.0, MAX_SAFE + 1, -MAX_SAFE - 1, 10**30, 1e300])
async def test_numbers_outside_canonical_json_in_event_content(
        check: Checker, room: tuple[User, str], bad: Any) -> None:
    u, r = room
    tok = u.access_token
    await check.refused("PUT", f"/rooms/{r}/send/m.room.message/{txn()}",
                        {"msgtype": "m.text", "body": "x", "n": bad}, token=tok,
                        errcode="M_BAD_JSON")
    await check.refused("POST", f"/rooms/{r}/send/m.room.message",
                        {"msgtype": "m.text", "body": "x", "n": bad}, token=tok,
                        errcode="M_BAD_JSON")
    await check.refused("PUT", f"/rooms/{r}/state/m.custom/k", {"n": [{"m": bad}]}, token=tok,
                        errcode="M_BAD_JSON")
    await check.refused("POST", "/createRoom", {"creation_content": {"n": bad}}, token=tok,
                        errcode="M_BAD_JSON")
    await check.refused("POST", "/createRoom", {"initial_state": [
        {"type": "m.custom", "state_key": "", "content": {"n": bad}}]}, token=tok,
        errcode="M_BAD_JSON")
    await check.refused("POST", "/createRoom", {"power_level_content_override": {
        "users_default": bad}}, token=tok, errcode="M_BAD_JSON")
    await check.refused("POST", "/createRoom", {"power_level_content_override": {
        "events": {"m.x": bad}}}, token=tok, errcode="M_BAD_JSON")
    await check.refused("POST", f"/rooms/{r}/leave", {"reason": bad}, token=tok,
                        errcode="M_BAD_JSON")
    await check.refused("PUT", f"/rooms/{r}/redact/$abc/{txn()}", {"reason": bad}, token=tok,
                        errcode="M_BAD_JSON")


async def test_numbers_at_the_canonical_json_limits_are_stored(c: Client,
                                                               room: tuple[User, str]) -> None:
    u, r = room
    content = {"msgtype": "m.text", "body": "x", "hi": MAX_SAFE, "lo": -MAX_SAFE}
    status, data = await c.request("PUT", f"/rooms/{r}/send/m.room.message/{txn()}", content,
                                   u.access_token)
    assert status == 200, data
    status, ev = await c.request("GET", f"/rooms/{r}/event/{data['event_id']}",
                                 token=u.access_token)
    assert status == 200 and ev["content"] == content


async def test_websocket_send_with_float_is_bad_json(c: Client, server: Server,
                                                     room: tuple[User, str]) -> None:
    u, r = room
    before = await digest(server.hs.db)
    async with c.session.ws_connect(server.url + "/_matrix/client/v3/sync",
                                    headers={"Authorization": f"Bearer {u.access_token}"}) as ws:
        await ws.send_json({"id": 1, "method": "send", "params": {
            "room_id": r, "type": "m.room.message", "txn_id": txn(), "content": {"n": 0.5}}})
        reply = await _ws_reply(ws)
    assert reply["error"]["errcode"] == "M_BAD_JSON", reply
    assert changed(before, await digest(server.hs.db)) == []


# ---------------------------------------------------------------------- 4. canonical alias


async def _alias(c: Client, u: User, room: str) -> str:
    alias = f"#a{secrets.token_hex(4)}:parley.test"
    status, data = await c.request("PUT", f"/directory/room/{quote(alias)}", {"room_id": room},
                                   u.access_token)
    assert status == 200, data
    return alias


async def test_canonical_alias_must_point_at_the_room(c: Client, check: Checker,
                                                      room: tuple[User, str]) -> None:
    u, r = room
    other = await c.create_room(u)
    mine, theirs = await _alias(c, u, r), await _alias(c, u, other)
    path = f"/rooms/{r}/state/m.room.canonical_alias"
    tok = u.access_token
    await check.refused("PUT", path, {"alias": theirs}, token=tok, errcode="M_BAD_ALIAS")
    await check.refused("PUT", path, {"alias": "#nowhere:parley.test"}, token=tok,
                        errcode="M_BAD_ALIAS")
    await check.refused("PUT", path, {"alias": mine, "alt_aliases": [theirs]}, token=tok,
                        errcode="M_BAD_ALIAS")
    await check.refused("PUT", path, {"alias": "#x:remote.example"}, token=tok,
                        errcode="M_BAD_ALIAS")
    # Syntax and types (spec: M_INVALID_PARAM for invalid syntax).
    for bad in [{"alias": "no-sigil"}, {"alias": 5}, {"alias": "#nocolon"},
                {"alt_aliases": ["#a:parley.test", 3]}, {"alt_aliases": ["bad"]}]:
        await check.refused("PUT", path, bad, token=tok, errcode="M_INVALID_PARAM")
    await check.refused("PUT", path, {"alt_aliases": "#a:parley.test"}, token=tok,
                        errcode="M_BAD_JSON")
    # Aliases of this room are fine; deleting one takes it out of the event, after which it
    # no longer points at the room.
    status, data = await c.request("PUT", path, {"alias": mine, "alt_aliases": [mine]}, tok)
    assert status == 200, data
    status, data = await c.request("DELETE", f"/directory/room/{quote(mine)}", token=tok)
    assert status == 200, data
    status, data = await c.request("GET", path, token=tok)
    assert (status, data) == (200, {"alt_aliases": []})
    await check.refused("PUT", path, {"alias": mine}, token=tok, errcode="M_BAD_ALIAS")
    status, data = await c.request("PUT", path, {}, tok)
    assert status == 200, data


async def test_canonical_alias_in_create_room_initial_state(c: Client, check: Checker) -> None:
    u = await c.register()
    other = await c.create_room(u)
    theirs = await _alias(c, u, other)
    state = [{"type": "m.room.canonical_alias", "content": {"alias": theirs}}]
    await check.refused("POST", "/createRoom", {"initial_state": state}, token=u.access_token,
                        errcode="M_BAD_ALIAS")
    bad = [{"type": "m.room.canonical_alias", "content": {"alias": "junk"}}]
    await check.refused("POST", "/createRoom", {"initial_state": bad}, token=u.access_token,
                        errcode="M_INVALID_PARAM")
    name = "own" + secrets.token_hex(4)
    own = [{"type": "m.room.canonical_alias", "content": {"alias": f"#{name}:parley.test"}}]
    status, data = await c.request("POST", "/createRoom",
                                   {"room_alias_name": name, "initial_state": own},
                                   u.access_token)
    assert status == 200, data


async def test_websocket_state_checks_canonical_alias(c: Client, server: Server,
                                                      room: tuple[User, str]) -> None:
    u, r = room
    before = await digest(server.hs.db)
    async with c.session.ws_connect(server.url + "/_matrix/client/v3/sync",
                                    headers={"Authorization": f"Bearer {u.access_token}"}) as ws:
        await ws.send_json({"id": 1, "method": "state", "params": {
            "room_id": r, "type": "m.room.canonical_alias",
            "content": {"alias": "#nowhere:parley.test"}}})
        reply = await _ws_reply(ws)
    assert reply["error"]["errcode"] == "M_BAD_ALIAS", reply
    assert changed(before, await digest(server.hs.db)) == []


# ---------------------------------------------------------------------- 5. filters and params


@pytest.mark.parametrize("flt", [
    {"room": {"timeline": {"limit": "x"}}},
    {"room": {"timeline": {"limit": -1}}},
    {"room": {"timeline": {"limit": 2**60}}},
    {"room": {"timeline": {"types": "abc"}}},
    {"room": {"state": {"lazy_load_members": 3}}},
    {"room": {"rooms": "!a:b"}},
    {"room": {"include_leave": "yes"}},
    {"presence": {"not_types": [1]}},
    {"event_fields": "content"},
    {"room": []},
])
async def test_sync_filter_with_wrong_types_is_bad_json(check: Checker, room: tuple[User, str],
                                                        flt: dict[str, Any]) -> None:
    u, r = room
    raw = orjson.dumps(flt).decode()
    await check.refused("GET", "/sync", token=u.access_token, errcode="M_BAD_JSON",
                        params={"filter": raw})
    await check.refused("POST", f"/user/{u.user_id}/filter", flt, token=u.access_token,
                        errcode="M_BAD_JSON")


@pytest.mark.parametrize("flt", [{"limit": "x"}, {"types": "abc"}, {"lazy_load_members": 3},
                                 {"contains_url": "no"}, {"not_senders": [None]}])
async def test_room_event_filter_with_wrong_types_is_bad_json(
        check: Checker, room: tuple[User, str], flt: dict[str, Any]) -> None:
    u, r = room
    raw = orjson.dumps(flt).decode()
    await check.refused("GET", f"/rooms/{r}/messages", token=u.access_token,
                        errcode="M_BAD_JSON", params={"filter": raw, "dir": "b"})


async def test_query_parameters(c: Client, check: Checker, room: tuple[User, str]) -> None:
    u, r = room
    tok = u.access_token
    for path, params, errcode in [
        ("/sync", {"full_state": "yes"}, "M_INVALID_PARAM"),
        ("/sync", {"full_state": "1"}, "M_INVALID_PARAM"),
        ("/sync", {"timeout": "soon"}, "M_INVALID_PARAM"),
        ("/sync", {"timeout": "-1"}, "M_INVALID_PARAM"),
        ("/sync", {"timeout": "1e3"}, "M_INVALID_PARAM"),
        ("/sync", {"timeout": "9" * 5000}, "M_INVALID_PARAM"),
        ("/sync", {"since": "s" + "9" * 30}, "M_INVALID_PARAM"),
        ("/sync", {"since": "s١"}, "M_INVALID_PARAM"),
        ("/sync", {"set_presence": "away"}, "M_INVALID_PARAM"),
        ("/sync", {"filter": "{not json"}, "M_NOT_JSON"),
        (f"/rooms/{r}/messages", {}, "M_MISSING_PARAM"),
        (f"/rooms/{r}/messages", {"dir": "x"}, "M_INVALID_PARAM"),
        (f"/rooms/{r}/messages", {"dir": "b", "limit": "x"}, "M_INVALID_PARAM"),
        (f"/rooms/{r}/messages", {"dir": "b", "limit": "99999999999999999999"},
         "M_INVALID_PARAM"),
        (f"/rooms/{r}/messages", {"dir": "b", "from": "t1_" + "9" * 40}, "M_INVALID_PARAM"),
        (f"/rooms/{r}/messages", {"dir": "b", "to": "garbage"}, "M_INVALID_PARAM"),
        (f"/rooms/{r}/members", {"membership": "dancing"}, "M_INVALID_PARAM"),
        (f"/rooms/{r}/members", {"at": "nonsense"}, "M_INVALID_PARAM"),
        ("/publicRooms", {"limit": "-3"}, "M_INVALID_PARAM"),
    ]:
        await check.refused("GET", path, token=tok, errcode=errcode, params=params)
    ev = await c.send(u, r, "x")
    for frm in ("r" + "9" * 25, "r" + "9" * 5000, "r" + "0" * 5000, "rx", "r-1", "r١"):
        await check.refused("GET", f"/_matrix/client/v1/rooms/{r}/relations/{quote(ev)}",
                            token=tok, errcode="M_INVALID_PARAM", params={"from": frm})
    # An unknown filter id, however odd, is just not found.
    for fid in ("99999999999999999999999", "²", "-1"):
        await check.refused("GET", "/sync", token=tok, status=404, errcode="M_NOT_FOUND",
                            params={"filter": fid})
        await check.refused("GET", f"/user/{quote(u.user_id)}/filter/{quote(fid)}", token=tok,
                            status=404, errcode="M_NOT_FOUND")
    # A huge publicRooms `since` is past the end, not a crash.
    status, data = await c.request("GET", "/publicRooms", token=tok,
                                   params={"since": "9" * 5000})
    assert status == 200 and data["chunk"] == [], data


async def test_profile_put_without_the_key_is_missing_param(check: Checker,
                                                            room: tuple[User, str]) -> None:
    u, _ = room
    for field, body in [("displayname", {}), ("displayname", {"avatar_url": "mxc://a/b"}),
                        ("avatar_url", {"displayname": "x"})]:
        await check.refused("PUT", f"/profile/{u.user_id}/{field}", body, token=u.access_token,
                            errcode="M_MISSING_PARAM")
    await check.refused("PUT", f"/profile/{u.user_id}/displayname", {"displayname": 3},
                        token=u.access_token, errcode="M_BAD_JSON")


# ---------------------------------------------------------------------- 6. over-long requests


async def _raw_http(server: Server, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = server.config.listen_host, server.config.listen_port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


async def test_over_long_request_line_is_matrix_too_large(server: Server) -> None:
    path = "/_matrix/client/v3/profile/@" + "a" * 10_000 + ":parley.test"
    status, headers, body = await _raw_http(
        server, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 414
    assert headers["content-type"].startswith("application/json")
    assert orjson.loads(body)["errcode"] == "M_TOO_LARGE"


async def test_over_long_header_is_matrix_too_large(server: Server) -> None:
    status, headers, body = await _raw_http(
        server, b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"b" * 20_000 + b"\r\n\r\n")
    assert status == 431
    assert headers["content-type"].startswith("application/json")
    assert orjson.loads(body)["errcode"] == "M_TOO_LARGE"


async def test_too_many_headers_is_matrix_too_large(server: Server) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    status, _, body = await _raw_http(
        server, b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert status == 431
    assert orjson.loads(body)["errcode"] == "M_TOO_LARGE"


async def test_access_token_that_is_not_utf8_is_unknown_token(server: Server) -> None:
    status, _, body = await _raw_http(
        server, b"GET /_matrix/client/v3/account/whoami HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
    assert status == 401
    assert orjson.loads(body)["errcode"] == "M_UNKNOWN_TOKEN"


async def test_garbage_request_is_matrix_json(server: Server) -> None:
    status, headers, body = await _raw_http(server, b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
    assert 400 <= status < 500
    assert orjson.loads(body)["errcode"] == "M_UNKNOWN"


async def test_long_path_parameter_is_invalid_param(check: Checker,
                                                    room: tuple[User, str]) -> None:
    u, r = room
    await check.refused("PUT", f"/rooms/{r}/send/m.room.message/{'t' * 3000}", {"body": "x"},
                        token=u.access_token, errcode="M_INVALID_PARAM")
    await check.refused("PUT", f"/user/{u.user_id}/account_data/{'m' * 3000}", {},
                        token=u.access_token, errcode="M_INVALID_PARAM")
    await check.refused("PUT", f"/user/{u.user_id}/rooms/{r}/account_data/{'😀' * 300}", {},
                        token=u.access_token, errcode="M_INVALID_PARAM")
    await check.refused("PUT", f"/room_keys/keys/{quote(r)}/{'s' * 3000}?version=1", {},
                        token=u.access_token, errcode="M_INVALID_PARAM")


async def test_a_client_leaving_mid_body_is_not_a_server_error(
        c: Client, server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """A request whose client disconnects before its body is complete changes nothing and is
    not logged as an unhandled error."""
    import asyncio
    import logging

    u = await c.register()
    room = await c.create_room(u)
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write((f"PUT /_matrix/client/v3/rooms/{room}/state/m.room.topic HTTP/1.1\r\n"
                  f"Host: x\r\nAuthorization: Bearer {u.access_token}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                  '{"topic": "half').encode())
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await asyncio.sleep(0.5)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    status, _ = await c.request("GET", f"/rooms/{room}/state/m.room.topic",
                                token=u.access_token)
    assert status == 404  # no topic was set
