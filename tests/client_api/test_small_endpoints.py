"""Mutual rooms, third-party lookups, /voip/turnServer and /.well-known/matrix/support."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from homeserver.config import ConfigError, SupportConfig, VoipConfig, load_config
from tests.conftest import Server, start_server
from tests.conftest import test_config as make_config
from tests.helpers import Client


async def test_mutual_rooms(c: Client, server: Server) -> None:
    sn = server.config.server_name
    a = await c.register()
    b = await c.register()
    shared = sorted([await c.create_room(a, preset="public_chat") for _ in range(3)])
    for r in shared:
        await c.join(b, r)
    await c.create_room(a)  # a's alone
    left = await c.create_room(a, preset="public_chat")
    await c.join(b, left)
    status, _ = await c.request("POST", f"/rooms/{left}/leave", {}, b.access_token)
    assert status == 200
    for path in ("/_matrix/client/v1/mutual_rooms",
                 "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms"):
        status, body = await c.request("GET", path, token=a.access_token,
                                       params={"user_id": b.user_id})
        assert status == 200, body
        assert sorted(body["joined"]) == shared and body["count"] == 3
        assert "next_batch" not in body
    path = "/_matrix/client/v1/mutual_rooms"
    status, body = await c.request("GET", path, token=a.access_token,
                                   params={"user_id": f"@nobody:{sn}"})
    assert (status, body) == (200, {"joined": [], "count": 0})
    for params, code in (({}, "M_MISSING_PARAM"), ({"user_id": "bob"}, "M_INVALID_PARAM"),
                         ({"user_id": a.user_id}, "M_INVALID_PARAM"),
                         ({"user_id": b.user_id, "from": "!!"}, "M_INVALID_PARAM")):
        status, body = await c.request("GET", path, token=a.access_token, params=params)
        assert (status, body["errcode"]) == (400, code), params
    status, body = await c.request("GET", path, params={"user_id": b.user_id})
    assert status == 401


async def test_mutual_rooms_paging(c: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from homeserver.rooms import mutual_rooms

    monkeypatch.setattr(mutual_rooms, "PAGE", 2)
    a = await c.register()
    b = await c.register()
    shared = sorted([await c.create_room(a, preset="public_chat") for _ in range(5)])
    for r in shared:
        await c.join(b, r)
    got: list[str] = []
    token = None
    for _ in range(5):
        params = {"user_id": b.user_id} | ({"from": token} if token else {})
        status, body = await c.request("GET", "/_matrix/client/v1/mutual_rooms",
                                       token=a.access_token, params=params)
        assert status == 200 and body["count"] == 5 and len(body["joined"]) <= 2
        got += body["joined"]
        token = body.get("next_batch")
        if token is None:
            break
    assert got == shared
    # A token is for the user it was made for.
    c2 = await c.register()
    status, body = await c.request("GET", "/_matrix/client/v1/mutual_rooms",
                                   token=a.access_token, params={"user_id": b.user_id})
    status, body = await c.request("GET", "/_matrix/client/v1/mutual_rooms",
                                   token=a.access_token,
                                   params={"user_id": c2.user_id, "from": body["next_batch"]})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_thirdparty_lookups(c: Client) -> None:
    u = await c.register()
    t = u.access_token
    assert await c.request("GET", "/thirdparty/protocols", token=t) == (200, {})
    status, body = await c.request("GET", "/thirdparty/protocol/irc", token=t)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    for path in ("/thirdparty/location/irc", "/thirdparty/user/irc"):
        assert await c.request("GET", path, token=t, params={"nick": "x"}) == (200, [])
    assert await c.request("GET", "/thirdparty/location", token=t,
                           params={"alias": "#a:b"}) == (200, [])
    assert await c.request("GET", "/thirdparty/user", token=t,
                           params={"userid": "@a:b"}) == (200, [])
    status, body = await c.request("GET", "/thirdparty/location", token=t)
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = await c.request("GET", "/thirdparty/user", token=t)
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = await c.request("GET", "/thirdparty/protocols")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")


async def test_unconfigured_turn_and_support(c: Client) -> None:
    u = await c.register()
    assert await c.request("GET", "/voip/turnServer", token=u.access_token) == (200, {})
    status, body = await c.request("GET", "/voip/turnServer")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    status, body = await c.request("GET", "/.well-known/matrix/support")
    assert status == 404


@pytest.fixture
async def configured(fresh_database: str, tmp_path: Path) -> AsyncIterator[Client]:
    cfg = make_config(
        tmp_path,
        voip=VoipConfig(turn_uris=("turn:turn.example.org:3478?transport=udp",),
                        turn_shared_secret="s3cret", turn_user_lifetime_ms=86_400_000),
        support=SupportConfig(contacts=((("email_address", "admin@example.org"),
                                         ("role", "m.role.admin")),),
                              support_page="https://example.org/help"))
    async for server in start_server(cfg, fresh_database):
        async with aiohttp.ClientSession() as s:
            yield Client(server.url, s)


async def test_turn_shared_secret_and_support(configured: Client) -> None:
    c = configured
    u = await c.register()
    before = int(time.time())
    status, body = await c.request("GET", "/voip/turnServer", token=u.access_token)
    assert status == 200, body
    assert body["uris"] == ["turn:turn.example.org:3478?transport=udp"]
    assert body["ttl"] == 86400
    expiry, _, user = body["username"].partition(":")
    assert user == u.user_id
    assert before + 86400 <= int(expiry) <= int(time.time()) + 86400
    want = base64.b64encode(hmac.new(b"s3cret", body["username"].encode(),
                                     hashlib.sha1).digest()).decode()
    assert body["password"] == want
    status, body = await c.request("GET", "/.well-known/matrix/support")
    assert (status, body) == (200, {"contacts": [{"email_address": "admin@example.org",
                                                  "role": "m.role.admin"}],
                                    "support_page": "https://example.org/help"})


async def test_turn_static_credentials(fresh_database: str, tmp_path: Path) -> None:
    cfg = replace(make_config(tmp_path), voip=VoipConfig(
        turn_uris=("turns:turn.example.org:5349",), turn_username="user",
        turn_password="pass"))
    async for server in start_server(cfg, fresh_database):
        async with aiohttp.ClientSession() as s:
            c = Client(server.url, s)
            u = await c.register()
            status, body = await c.request("GET", "/voip/turnServer", token=u.access_token)
            assert (status, body) == (200, {"username": "user", "password": "pass",
                                            "uris": ["turns:turn.example.org:5349"],
                                            "ttl": 3600})


def test_voip_and_support_config(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("server_name: x.test\nvoip:\n  turn_uris: ['turn:t.test']\n"
                 "  turn_shared_secret: s\nsupport:\n  support_page: https://x.test/help\n"
                 "  contacts:\n    - {role: m.role.security, matrix_id: '@a:x.test'}\n")
    cfg = load_config(p, env={})
    assert cfg.voip.turn_uris == ("turn:t.test",) and cfg.voip.turn_shared_secret == "s"
    assert cfg.support.support_page == "https://x.test/help"
    assert [dict(x) for x in cfg.support.contacts] == [{"role": "m.role.security",
                                                        "matrix_id": "@a:x.test"}]
    for bad in ("voip:\n  turn_uris: ['http://x']\n", "voip:\n  nope: 1\n",
                "support:\n  contacts:\n    - {role: m.role.admin}\n",
                "support:\n  contacts:\n    - {matrix_id: '@a:b'}\n"):
        p.write_text("server_name: x.test\n" + bad)
        with pytest.raises(ConfigError):
            load_config(p, env={})
