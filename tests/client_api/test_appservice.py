"""Application services end to end: a Parley server with two registrations whose URLs point at a
real mock AS (an aiohttp server on loopback in this test), talking real HTTP both ways."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from homeserver.appservice.registration import parse_registration
from tests.conftest import PgAdmin, Server, start_server
from tests.conftest import test_config as make_config
from tests.helpers import Client, User

SERVER = "parley.test"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class MockAS:
    """One application service: records what the homeserver sends, answers as told."""

    hs_token: str
    transactions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str], str]] = field(default_factory=list)
    fail_transactions: int = 0  # answer this many transaction PUTs with 500 first
    hang_transactions: int = 0  # ... then answer this many only after 2 s
    handlers: dict[str, Handler] = field(default_factory=dict)  # "users", "rooms", ...

    def ephemeral(self) -> list[dict[str, Any]]:
        return [e for t, body in self.transactions if not t.startswith("failed:")
                for e in body.get("ephemeral", [])]

    def events(self) -> list[dict[str, Any]]:
        """The events of the transactions the mock accepted."""
        return [e for t, body in self.transactions if not t.startswith("failed:")
                for e in body.get("events", [])]

    async def wait_event(self, check: Callable[[dict[str, Any]], bool],
                         timeout: float = 10.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for e in self.events():
                if check(e):
                    return e
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no such event; got {self.events()}")
            await asyncio.sleep(0.02)

    def authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.hs_token}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        self.requests.append((request.method, tail, dict(request.query),
                              request.headers.get("Authorization", "")))
        if not self.authorised(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        kind = tail.split("/")[0]
        if kind == "transactions" and request.method == "PUT":
            body = await request.json()
            if self.fail_transactions > 0:
                self.fail_transactions -= 1
                self.transactions.append(("failed:" + tail.split("/")[1], body))
                return web.json_response({"errcode": "M_UNKNOWN"}, status=500)
            if self.hang_transactions > 0:
                self.hang_transactions -= 1
                self.transactions.append(("failed:" + tail.split("/")[1], body))
                await asyncio.sleep(2)  # the homeserver gave up on this one long ago
                return web.json_response({})
            self.transactions.append((tail.split("/")[1], body))
            return web.json_response({})
        handler = self.handlers.get(kind)
        if handler is None:
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        return await handler(request)


@dataclass
class Env:
    server: Server
    client: Client
    as1: MockAS
    as2: MockAS
    as1_token: str
    as2_token: str

    def as_user(self, token: str, sender: str) -> User:
        return User(sender, token, "")


def registration(n: int, url: str, as_token: str, hs_token: str) -> dict[str, Any]:
    users = [{"regex": f"@_.*:{SERVER}", "exclusive": False}]
    aliases = []
    if n == 1:
        users.append({"regex": f"@bridge1_.*:{SERVER}", "exclusive": True})
        aliases.append({"regex": f"#bridge1_.*:{SERVER}", "exclusive": True})
    return {"id": f"AS-{n}", "url": url, "as_token": as_token, "hs_token": hs_token,
            "sender_localpart": f"as-bot-{n}", "protocols": ["ymca"],
            "rate_limited": False, "receive_ephemeral": n == 1,
            "namespaces": {"users": users, "aliases": aliases, "rooms": []}}


@asynccontextmanager
async def server_with_ases(pg_admin: PgAdmin, tmp: Path, mocks: dict[str, MockAS],
                           registrations: Callable[[str], list[dict[str, Any]]]
                           ) -> AsyncIterator[tuple[Server, Client]]:
    """A server loading the registrations `registrations(base_url)` gives, with each mock AS
    served on loopback at `base_url + "/" + its key`; retries fast (50 ms backoff)."""
    mock = web.Application()
    for prefix, m in mocks.items():
        mock.router.add_route("*", f"/{prefix}/_matrix/app/v1/{{tail:.*}}", m.handle)
    runner = web.AppRunner(mock)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    services = tuple(parse_registration(r, SERVER)
                     for r in registrations(f"http://127.0.0.1:{port}"))
    config = replace(make_config(tmp), app_services=services,
                     outbound_allow=("127.0.0.0/8",))
    name = await pg_admin.create()
    try:
        async for srv in start_server(config, pg_admin.dsn_for(name)):
            srv.hs.appservices.sender.backoff_base_ms = 50
            async with aiohttp.ClientSession() as session:
                yield srv, Client(srv.url, session)
    finally:
        await runner.cleanup()
        await pg_admin.drop(name)


@pytest.fixture(scope="module")
async def env(pg_admin: PgAdmin, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[Env]:
    as1, as2 = MockAS("hs-token-1"), MockAS("hs-token-2")
    t1, t2 = "as-token-1-" + secrets.token_hex(4), "as-token-2-" + secrets.token_hex(4)

    def regs(base: str) -> list[dict[str, Any]]:
        return [registration(n, f"{base}/as{n}", t, h)
                for n, t, h in ((1, t1, as1.hs_token), (2, t2, as2.hs_token))]
    async with server_with_ases(pg_admin, tmp_path_factory.mktemp("as-hs"),
                                {"as1": as1, "as2": as2}, regs) as (srv, client):
        yield Env(srv, client, as1, as2, t1, t2)


async def as_register(env: Env, token: str, localpart: str,
                      **extra: Any) -> tuple[int, Any]:
    return await env.client.request(
        "POST", "/register", {"type": "m.login.application_service", "username": localpart,
                              **extra}, token)


def uid(localpart: str) -> str:
    return f"@{localpart}:{SERVER}"


# ---------------------------------------------------------------------- registration


async def test_as_registers_users_in_its_namespaces(env: Env) -> None:
    status, body = await as_register(env, env.as1_token, "bridge1_alice")
    assert status == 200, body
    assert body["user_id"] == uid("bridge1_alice") and body["access_token"]
    status, body = await as_register(env, env.as1_token, "_shared_bob", inhibit_login=True)
    assert status == 200 and "access_token" not in body and "device_id" not in body


@pytest.mark.parametrize(("who", "localpart", "errcode"), [
    ("as1", "someone_else", "M_EXCLUSIVE"),  # outside AS-1's namespaces
    ("as2", "bridge1_carol", "M_EXCLUSIVE"),  # inside AS-1's exclusive namespace
])
async def test_as_registration_outside_its_namespace(env: Env, who: str, localpart: str,
                                                     errcode: str) -> None:
    token = env.as1_token if who == "as1" else env.as2_token
    status, body = await as_register(env, token, localpart)
    assert (status, body["errcode"]) == (400, errcode)


async def test_as_registration_needs_an_as_token(env: Env) -> None:
    user = await env.client.register()
    for token, code in ((None, "M_MISSING_TOKEN"), (user.access_token, "M_UNKNOWN_TOKEN"),
                        ("nonsense", "M_UNKNOWN_TOKEN")):
        status, body = await env.client.request(
            "POST", "/register", {"type": "m.login.application_service", "username": "_x"},
            token)
        assert (status, body["errcode"]) == (401, code)


async def test_people_cannot_register_in_an_exclusive_namespace(env: Env) -> None:
    status, body = await env.client.request(
        "POST", "/register", {"username": "bridge1_mallory", "password": "pw-secret-1",
                              "auth": {"type": "m.login.dummy"}})
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    status, body = await env.client.request(
        "GET", "/register/available", params={"username": "bridge1_mallory"})
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    # A non-exclusive namespace does not reserve anything.
    status, _ = await env.client.request(
        "POST", "/register", {"username": "_free_dave", "password": "pw-secret-1",
                              "auth": {"type": "m.login.dummy"}})
    assert status == 200


async def test_as_login(env: Env) -> None:
    await as_register(env, env.as1_token, "bridge1_login", inhibit_login=True)
    body = {"type": "m.login.application_service",
            "identifier": {"type": "m.id.user", "user": "bridge1_login"}}
    status, got = await env.client.request("POST", "/login", body, env.as1_token)
    assert status == 200 and got["user_id"] == uid("bridge1_login")
    status, got = await env.client.request("POST", "/login", body, env.as2_token)
    assert (status, got["errcode"]) == (400, "M_EXCLUSIVE")
    status, got = await env.client.request("POST", "/login", body)
    assert (status, got["errcode"]) == (401, "M_MISSING_TOKEN")


# ---------------------------------------------------------------------- masquerading


async def test_masquerading(env: Env) -> None:
    c = env.client
    status, body = await c.request("GET", "/account/whoami", token=env.as1_token)
    assert status == 200 and body["user_id"] == uid("as-bot-1") and "device_id" not in body
    await as_register(env, env.as1_token, "bridge1_masq", inhibit_login=True)
    status, body = await c.request("GET", "/account/whoami", token=env.as1_token,
                                   params={"user_id": uid("bridge1_masq")})
    assert (status, body["user_id"]) == (200, uid("bridge1_masq"))
    # Not registered yet, outside the namespace, another AS's exclusive user, bad id.
    for target, code in ((uid("bridge1_nobody"), 403), (uid("plain_user"), 403),
                         ("not-an-id", 400)):
        status, _ = await c.request("GET", "/account/whoami", token=env.as1_token,
                                    params={"user_id": target})
        assert status == code, target
    status, _ = await c.request("GET", "/account/whoami", token=env.as2_token,
                                params={"user_id": uid("bridge1_masq")})
    assert status == 403
    # device_id must be one of the user's devices (MSC3202, spec v1.17).
    status, body = await c.request("GET", "/account/whoami", token=env.as1_token,
                                   params={"user_id": uid("bridge1_masq"),
                                           "device_id": "NOPE"})
    assert (status, body["errcode"]) == (400, "M_UNKNOWN_DEVICE")
    status, body = await as_register(env, env.as1_token, "bridge1_dev", device_id="DEV1")
    assert status == 200
    status, body = await c.request("GET", "/account/whoami", token=env.as1_token,
                                   params={"user_id": uid("bridge1_dev"), "device_id": "DEV1"})
    assert status == 200 and body["device_id"] == "DEV1"


async def test_as_deactivates_its_user_without_uia(env: Env) -> None:
    await as_register(env, env.as1_token, "bridge1_gone", inhibit_login=True)
    status, body = await env.client.request(
        "POST", "/account/deactivate", {}, env.as1_token,
        params={"user_id": uid("bridge1_gone")})
    assert status == 200, body
    status, _ = await env.client.request("GET", "/account/whoami", token=env.as1_token,
                                         params={"user_id": uid("bridge1_gone")})
    assert status == 403


# ---------------------------------------------------------------------- transactions


async def test_events_are_pushed_in_order_with_the_hs_token(env: Env) -> None:
    c = env.client
    owner = await c.register()
    room_id = await c.create_room(owner, preset="public_chat")
    await as_register(env, env.as1_token, "bridge1_ghost", inhibit_login=True)
    ghost = uid("bridge1_ghost")
    status, body = await c.request("POST", f"/rooms/{room_id}/join", {}, env.as1_token,
                                   params={"user_id": ghost})
    assert status == 200, body
    await env.as1.wait_event(lambda e: e["type"] == "m.room.member"
                             and e["state_key"] == ghost and e["room_id"] == room_id)
    for i in range(3):
        status, body = await c.request("PUT", f"/rooms/{room_id}/send/m.room.message/t{i}",
                                       {"msgtype": "m.text", "body": f"m{i}"}, owner.access_token)
        assert status == 200
    last = await env.as1.wait_event(lambda e: e.get("content", {}).get("body") == "m2")
    assert "transaction_id" not in last.get("unsigned", {})  # not the AS's send
    bodies = [e["content"]["body"] for e in env.as1.events()
              if e["room_id"] == room_id and e["type"] == "m.room.message"]
    assert bodies == ["m0", "m1", "m2"]
    assert all(r[3] == "Bearer hs-token-1" for r in env.as1.requests)
    ids = [int(t) for t, _ in env.as1.transactions if not t.startswith("failed")]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # AS-2's namespace (@_.*) has nobody in this room: it hears nothing of it.
    assert not [e for e in env.as2.events() if e["room_id"] == room_id]


async def test_failed_transaction_is_retried_unchanged(env: Env) -> None:
    c = env.client
    owner = await c.register()
    room_id = await c.create_room(owner)
    await as_register(env, env.as2_token, "_retry_ghost", inhibit_login=True)
    ghost = uid("_retry_ghost")
    env.as2.fail_transactions = 2
    status, _ = await c.request("POST", f"/rooms/{room_id}/invite", {"user_id": ghost},
                                owner.access_token)
    assert status == 200
    await env.as2.wait_event(lambda e: e["type"] == "m.room.member"
                             and e["state_key"] == ghost)
    failed = [(t, b) for t, b in env.as2.transactions if t.startswith("failed:")]
    assert len(failed) == 2
    ok = {t: b for t, b in env.as2.transactions if not t.startswith("failed:")}
    txn = failed[0][0].removeprefix("failed:")
    assert failed[1][0] == failed[0][0] and ok[txn] == failed[0][1]


async def test_unanswered_transaction_is_sent_again(env: Env) -> None:
    """A transaction the AS never answers is not waited for long: it goes again, same id."""
    c = env.client
    sender = env.server.hs.appservices.sender
    sender.first_timeout_s = 0.2
    try:
        owner = await c.register()
        room_id = await c.create_room(owner)
        await as_register(env, env.as2_token, "_hang_ghost", inhibit_login=True)
        env.as2.hang_transactions = 1
        status, _ = await c.request("POST", f"/rooms/{room_id}/invite",
                                    {"user_id": uid("_hang_ghost")}, owner.access_token)
        assert status == 200
        await env.as2.wait_event(lambda e: e["type"] == "m.room.member"
                                 and e["state_key"] == uid("_hang_ghost"), timeout=5.0)
        hung = [t for t, _ in env.as2.transactions if t.startswith("failed:")][-1]
        accepted = [t for t, b in env.as2.transactions
                    if any(e.get("state_key") == uid("_hang_ghost") for e in b["events"])
                    and not t.startswith("failed:")]
        assert accepted == [hung.removeprefix("failed:")]
    finally:
        sender.first_timeout_s = 5.0


async def test_ephemeral_data(env: Env) -> None:
    """AS-1 asked for ephemeral data: typing and read receipts of its rooms come in its
    transactions' `ephemeral`; AS-2 did not and gets none."""
    c = env.client
    owner = await c.register()
    room_id = await c.create_room(owner, preset="public_chat")
    await as_register(env, env.as1_token, "bridge1_eph", inhibit_login=True)
    await as_register(env, env.as2_token, "_eph2", inhibit_login=True)
    for token, ghost in ((env.as1_token, "bridge1_eph"), (env.as2_token, "_eph2")):
        status, _ = await c.request("POST", f"/rooms/{room_id}/join", {}, token,
                                    params={"user_id": uid(ghost)})
        assert status == 200
    status, _ = await c.request("PUT", f"/rooms/{room_id}/typing/{owner.user_id}",
                                {"typing": True, "timeout": 30000}, owner.access_token)
    assert status == 200
    status, sent = await c.request("PUT", f"/rooms/{room_id}/send/m.room.message/e1",
                                   {"msgtype": "m.text", "body": "read me"}, owner.access_token)
    assert status == 200
    status, _ = await c.request("POST", f"/rooms/{room_id}/receipt/m.read/{sent['event_id']}",
                                {}, owner.access_token)
    assert status == 200
    status, _ = await c.request("PUT", f"/presence/{owner.user_id}/status",
                                {"presence": "unavailable", "status_msg": "afk"},
                                owner.access_token)
    assert status == 200
    for _ in range(250):
        got = [e for e in env.as1.ephemeral() if e.get("room_id") == room_id]
        presence = [e for e in env.as1.ephemeral() if e["type"] == "m.presence"
                    and e["sender"] == owner.user_id]
        if {e["type"] for e in got} == {"m.typing", "m.receipt"} and presence:
            break
        await asyncio.sleep(0.02)
    assert presence[-1]["content"]["presence"] == "unavailable"
    assert presence[-1]["content"].get("status_msg") == "afk"
    # Someone who shares no room with AS-1's users: their presence is not its business.
    loner = await c.register()
    status, _ = await c.request("PUT", f"/presence/{loner.user_id}/status",
                                {"presence": "online"}, loner.access_token)
    assert status == 200
    typing = [e for e in got if e["type"] == "m.typing"]
    assert typing and typing[0]["content"]["user_ids"] == [owner.user_id]
    receipt = next(e for e in got if e["type"] == "m.receipt")
    assert owner.user_id in receipt["content"][sent["event_id"]]["m.read"]
    assert not env.as2.ephemeral()
    await asyncio.sleep(0.3)
    assert not [e for e in env.as1.ephemeral() if e.get("sender") == loner.user_id]


# ---------------------------------------------------------------------- queries


async def test_unknown_user_is_asked_of_the_as_on_invite(env: Env) -> None:
    c = env.client
    owner = await c.register()
    room_id = await c.create_room(owner)
    target = uid("bridge1_queried")

    async def users(request: web.Request) -> web.Response:
        assert request.match_info["tail"] == f"users/{target}"
        await as_register(env, env.as1_token, "bridge1_queried", inhibit_login=True)
        return web.json_response({})

    env.as1.handlers["users"] = users
    status, _ = await c.request("POST", f"/rooms/{room_id}/invite", {"user_id": target},
                                owner.access_token)
    assert status == 200
    assert any(t == f"users/{target}" for _, t, _, _ in env.as1.requests)
    status, _ = await c.request("GET", "/account/whoami", token=env.as1_token,
                                params={"user_id": target})
    assert status == 200  # the AS made it while we waited


async def test_unknown_alias_is_asked_of_the_as(env: Env) -> None:
    c = env.client
    owner = await c.register()
    room_id = await c.create_room(owner, preset="public_chat")
    alias = f"#bridge1_chan:{SERVER}"

    async def rooms(request: web.Request) -> web.Response:
        status, body = await c.request("PUT", f"/directory/room/{quote(alias)}",
                                       {"room_id": room_id}, env.as1_token)
        assert status == 200, body
        return web.json_response({})

    env.as1.handlers["rooms"] = rooms
    joiner = await c.register()
    status, body = await c.request("POST", f"/join/{quote(alias)}", {}, joiner.access_token)
    assert (status, body.get("room_id")) == (200, room_id)
    # Now known: no second query.
    asked = len([r for r in env.as1.requests if r[1].startswith("rooms/")])
    status, body = await c.request("GET", f"/directory/room/{quote(alias)}")
    assert (status, body["room_id"]) == (200, room_id)
    assert len([r for r in env.as1.requests if r[1].startswith("rooms/")]) == asked
    # An alias the AS does not make stays unknown (404 after asking).
    env.as1.handlers["rooms"] = lambda _r: _json({"errcode": "M_NOT_FOUND"}, 404)
    status, _ = await c.request("GET", f"/directory/room/{quote('#bridge1_none:' + SERVER)}")
    assert status == 404


async def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


async def test_exclusive_aliases(env: Env) -> None:
    c = env.client
    owner = await c.register()
    room_id = await c.create_room(owner)
    alias = quote(f"#bridge1_excl:{SERVER}")
    status, body = await c.request("PUT", f"/directory/room/{alias}", {"room_id": room_id},
                                   owner.access_token)
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    status, body = await c.request("PUT", f"/directory/room/{alias}", {"room_id": room_id},
                                   env.as2_token)
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    status, body = await c.request("POST", "/createRoom", {"room_alias_name": "bridge1_mine"},
                                   owner.access_token)
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    # The owning AS may, without being in the room, and delete it again.
    status, _ = await c.request("PUT", f"/directory/room/{alias}", {"room_id": room_id},
                                env.as1_token)
    assert status == 200
    status, _ = await c.request("DELETE", f"/directory/room/{alias}", token=env.as1_token)
    assert status == 200


async def test_events_in_rooms_with_an_as_alias_are_pushed(env: Env) -> None:
    c = env.client
    owner = await c.register()
    room_id = await c.create_room(owner)
    status, _ = await c.request("PUT", f"/directory/room/{quote('#bridge1_pushed:' + SERVER)}",
                                {"room_id": room_id}, env.as1_token)
    assert status == 200
    status, _ = await c.request("PUT", f"/rooms/{room_id}/send/m.room.message/x",
                                {"msgtype": "m.text", "body": "via alias"}, owner.access_token)
    assert status == 200
    await env.as1.wait_event(lambda e: e["room_id"] == room_id
                             and e.get("content", {}).get("body") == "via alias")


# ---------------------------------------------------------------------- third party


async def test_third_party_protocols_and_lookups(env: Env) -> None:
    c = env.client
    user = await c.register()
    env.as1.handlers["thirdparty"] = lambda r: _thirdparty(r, "1")
    env.as2.handlers["thirdparty"] = lambda r: _thirdparty(r, "2")
    status, body = await c.request("GET", "/thirdparty/protocols", token=user.access_token)
    assert status == 200
    ymca = body["ymca"]
    assert ymca["user_fields"] == ["field1"]
    assert sorted(i["desc"] for i in ymca["instances"]) == ["net 1", "net 2"]
    assert {i.get("instance_id") for i in ymca["instances"]} == {"AS-1|net1", "AS-2|net2"}
    status, body = await c.request("GET", "/thirdparty/protocol/ymca", token=user.access_token)
    assert status == 200 and len(body["instances"]) == 2
    status, _ = await c.request("GET", "/thirdparty/protocol/irc", token=user.access_token)
    assert status == 404
    status, body = await c.request("GET", "/thirdparty/user/ymca", token=user.access_token,
                                   params={"field1": "ONE"})
    assert status == 200
    assert sorted(u["userid"] for u in body) == ["@u1:remote.example", "@u2:remote.example"]
    got = [r for r in env.as1.requests if r[1] == "thirdparty/user/ymca"]
    assert got and got[-1][2] == {"field1": "ONE"} and got[-1][3] == "Bearer hs-token-1"
    status, body = await c.request("GET", "/thirdparty/location", token=user.access_token,
                                   params={"alias": "#chan:remote.example"})
    assert status == 200 and len(body) == 2


async def _thirdparty(request: web.Request, n: str) -> web.Response:
    tail = request.match_info["tail"]
    if tail == "thirdparty/protocol/ymca":
        return web.json_response({"user_fields": ["field1"], "location_fields": [],
                                  "icon": "mxc://x/y", "field_types": {},
                                  "instances": [{"desc": f"net {n}", "network_id": f"net{n}",
                                                 "fields": {}}]})
    if tail == "thirdparty/user/ymca":
        return web.json_response([{"protocol": "ymca", "fields": dict(request.query),
                                   "userid": f"@u{n}:remote.example"}, "junk"])
    if tail == "thirdparty/location":
        return web.json_response([{"protocol": "ymca", "fields": {},
                                   "alias": request.query["alias"]}])
    return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)


# ---------------------------------------------------------------------- room lists and ping


async def test_as_room_lists(env: Env) -> None:
    c = env.client
    owner = await c.register()
    room_id = await c.create_room(owner)
    path = f"/directory/list/appservice/net1/{room_id}"
    status, _ = await c.request("PUT", path, {"visibility": "public"}, owner.access_token)
    assert status == 403  # only an AS keeps a network list
    status, _ = await c.request("PUT", path, {"visibility": "public"}, env.as1_token)
    assert status == 200

    async def listed(body: dict[str, Any]) -> list[str]:
        status, got = await c.request("POST", "/publicRooms", body, owner.access_token)
        assert status == 200, got
        return [r["room_id"] for r in got["chunk"]]

    assert room_id not in await listed({})
    assert room_id in await listed({"third_party_instance_id": "AS-1|net1"})
    assert room_id not in await listed({"third_party_instance_id": "AS-2|net1"})
    assert room_id in await listed({"include_all_networks": True})
    status, _ = await c.request("DELETE", path, token=env.as1_token)
    assert status == 200
    assert room_id not in await listed({"third_party_instance_id": "AS-1|net1"})
    status, _ = await c.request("PUT", "/directory/list/appservice/net1/!nope:x",
                                {"visibility": "public"}, env.as1_token)
    assert status == 404


async def test_ping(env: Env) -> None:
    c = env.client
    seen: list[dict[str, Any]] = []

    async def ping(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({})

    env.as1.handlers["ping"] = ping
    status, body = await c.request("POST", "/_matrix/client/v1/appservice/AS-1/ping",
                                   {"transaction_id": "meow"}, env.as1_token)
    assert status == 200 and isinstance(body["duration_ms"], int)
    assert seen == [{"transaction_id": "meow"}]
    status, body = await c.request("POST", "/_matrix/client/v1/appservice/AS-1/ping", {},
                                   env.as2_token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # AS-2 has no ping handler: its 404 comes back as a bad status.
    status, body = await c.request("POST", "/_matrix/client/v1/appservice/AS-2/ping", {},
                                   env.as2_token)
    assert (status, body["errcode"], body["status"]) == (502, "M_BAD_STATUS", 404)


# ---------------------------------------------------------------------- durability


async def test_pending_transaction_survives_a_restart(fresh_database: str,
                                                      tmp_path: Path) -> None:
    """A transaction the AS has not accepted is in the database: the next process sends the
    same id with the same events, and the AS's position does not move past them meanwhile."""
    mock_as = MockAS("hs-token-r", fail_transactions=10**6)
    mock = web.Application()
    mock.router.add_route("*", "/as/_matrix/app/v1/{tail:.*}", mock_as.handle)
    runner = web.AppRunner(mock)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    reg = registration(1, f"http://127.0.0.1:{port}/as", "as-token-r", "hs-token-r")
    config = replace(make_config(tmp_path), app_services=(parse_registration(reg, SERVER),),
                     outbound_allow=("127.0.0.0/8",))
    try:
        async with aiohttp.ClientSession() as session:
            async for srv in start_server(config, fresh_database):
                srv.hs.appservices.sender.backoff_base_ms = 20
                c = Client(srv.url, session)
                owner = await c.register()
                room_id = await c.create_room(owner)
                await as_register_with(c, "as-token-r", "bridge1_r")
                status, _ = await c.request("POST", f"/rooms/{room_id}/invite",
                                            {"user_id": uid("bridge1_r")}, owner.access_token)
                assert status == 200
                for _ in range(200):
                    if len(mock_as.transactions) >= 2:
                        break
                    await asyncio.sleep(0.02)
            failed = list(mock_as.transactions)
            assert len(failed) >= 2 and len({t for t, _ in failed}) == 1
            mock_as.fail_transactions = 0
            async for _srv in start_server(config, fresh_database):
                await mock_as.wait_event(lambda e: e["type"] == "m.room.member"
                                         and e["state_key"] == uid("bridge1_r"))
                accepted = [(t, b) for t, b in mock_as.transactions
                            if not t.startswith("failed:")]
                assert accepted[0] == (failed[0][0].removeprefix("failed:"), failed[0][1])
    finally:
        await runner.cleanup()


async def as_register_with(c: Client, token: str, localpart: str) -> None:
    status, body = await c.request("POST", "/register", {
        "type": "m.login.application_service", "username": localpart, "inhibit_login": True},
        token)
    assert status == 200, body


async def test_as_creates_and_deletes_devices(env: Env) -> None:
    c = env.client
    await as_register(env, env.as1_token, "bridge1_devs", inhibit_login=True)
    me = {"user_id": uid("bridge1_devs")}
    status, _ = await c.request("PUT", "/devices/BRIDGED", {"display_name": "b"},
                                env.as1_token, params=me)
    assert status == 201
    status, _ = await c.request("PUT", "/devices/BRIDGED", {"display_name": "c"},
                                env.as1_token, params=me)
    assert status == 200
    status, body = await c.request("GET", "/devices/BRIDGED", token=env.as1_token, params=me)
    assert (status, body["display_name"]) == (200, "c")
    # A person cannot create a device this way.
    user = await c.register()
    status, _ = await c.request("PUT", "/devices/NEWONE", {}, user.access_token)
    assert status == 404
    # Deletion needs no UIA for an AS.
    status, body = await c.request("DELETE", "/devices/BRIDGED", {}, env.as1_token, params=me)
    assert status == 200, body
    status, _ = await c.request("GET", "/devices/BRIDGED", token=env.as1_token, params=me)
    assert status == 404


async def test_timestamp_massaging(env: Env) -> None:
    c = env.client
    owner = await c.register()
    room_id = await c.create_room(owner, preset="public_chat")
    await as_register(env, env.as1_token, "bridge1_ts", inhibit_login=True)
    me = {"user_id": uid("bridge1_ts")}
    status, _ = await c.request("POST", f"/rooms/{room_id}/join", {}, env.as1_token, params=me)
    assert status == 200
    status, sent = await c.request("PUT", f"/rooms/{room_id}/send/m.room.message/ts1",
                                   {"msgtype": "m.text", "body": "old"}, env.as1_token,
                                   params={**me, "ts": "1234567890123"})
    assert status == 200
    status, ev = await c.request("GET", f"/rooms/{room_id}/event/{sent['event_id']}",
                                 token=owner.access_token)
    assert (status, ev["origin_server_ts"]) == (200, 1234567890123)
    # The AS's own send comes back to it with its transaction id (to tell its echoes).
    pushed = await env.as1.wait_event(lambda e: e["event_id"] == sent["event_id"])
    assert pushed["unsigned"]["transaction_id"] == "ts1"
    assert pushed["origin_server_ts"] == 1234567890123
    status, sent = await c.request("PUT", f"/rooms/{room_id}/state/m.room.topic",
                                   {"topic": "t"}, owner.access_token, params={"ts": "5"})
    assert status == 200  # not an AS: ts ignored
    status, ev = await c.request("GET", f"/rooms/{room_id}/event/{sent['event_id']}",
                                 token=owner.access_token)
    assert ev["origin_server_ts"] > 1_700_000_000_000
    for bad in ("-1", "x", "9" * 17):
        status, body = await c.request("PUT", f"/rooms/{room_id}/send/m.room.message/b{bad}",
                                       {"msgtype": "m.text", "body": "b"}, env.as1_token,
                                       params={**me, "ts": bad})
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), bad
