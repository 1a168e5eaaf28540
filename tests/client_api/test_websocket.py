"""/sync over a WebSocket (client_api/websocket.py, docs/websocket.md): pushed batches, requests
with ids and their errors, typing/receipts/to-device, resume with since, back-pressure on a slow
reader, auth before the upgrade, and no task left behind when a socket closes."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from client_api import websocket
from client_api.context import CTX
from tests.conftest import Server
from tests.helpers import Client, User

TIMEOUT = 10.0


class Socket:
    """An aiohttp client WebSocket with helpers to wait for replies and pushed batches."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.replies: dict[Any, dict[str, Any]] = {}
        self.batches: list[dict[str, Any]] = []
        self.next_batch: str | None = None
        self.cursor = 0

    async def _read_one(self, timeout: float) -> None:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
        data = msg.json()
        if "type" in data:
            assert data["type"] == "sync", data
            self.batches.append(data["body"])
            self.next_batch = data["body"]["next_batch"]
        else:
            self.replies[data["id"]] = data

    async def request(self, method: str, params: dict[str, Any] | None = None,
                      rid: Any = None) -> dict[str, Any]:
        rid = rid if rid is not None else secrets.token_hex(4)
        frame: dict[str, Any] = {"id": rid, "method": method}
        if params is not None:
            frame["params"] = params
        await self.ws.send_json(frame)
        return await self.reply(rid)

    async def reply(self, rid: Any) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            while rid not in self.replies:
                await self._read_one(TIMEOUT)
        return self.replies.pop(rid)

    async def batch(self) -> dict[str, Any]:
        """The next pushed sync body not yet looked at."""
        return await self.until(lambda b: True)

    async def until(self, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Read pushed batches (those not yet looked at first) until one satisfies `pred`."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                while self.cursor < len(self.batches):
                    body = self.batches[self.cursor]
                    self.cursor += 1
                    if pred(body):
                        return body
                await self._read_one(TIMEOUT)


def ws_url(server: Server, **params: str) -> str:
    from urllib.parse import urlencode
    q = ("?" + urlencode(params)) if params else ""
    return server.url + "/_matrix/client/v3/sync" + q


@pytest.fixture
async def open_ws(server: Server, c: Client) -> AsyncIterator[Callable[..., Any]]:
    opened: list[aiohttp.ClientWebSocketResponse] = []

    async def connect(user: User, **params: str) -> Socket:
        ws = await c.session.ws_connect(
            ws_url(server, **params), headers={"Authorization": f"Bearer {user.access_token}"})
        opened.append(ws)
        return Socket(ws)

    yield connect
    for ws in opened:
        await ws.close()


def timeline(body: dict[str, Any], room: str) -> list[dict[str, Any]]:
    r = body.get("rooms", {}).get("join", {}).get(room, {})
    return list(r.get("timeline", {}).get("events", []))


def ephemeral(body: dict[str, Any], room: str, etype: str) -> list[dict[str, Any]]:
    r = body.get("rooms", {}).get("join", {}).get(room, {})
    return [e for e in r.get("ephemeral", {}).get("events", []) if e["type"] == etype]


def sessions_of(server: Server, user: User) -> list[websocket.WebSocketSession]:
    return [s for s in server.app[websocket.SOCKETS] if s.requester.user_id == user.user_id]


def ws_tasks(user: User) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("parley-ws-")
            and t.get_name().endswith(":" + user.user_id)]


async def pair(c: Client) -> tuple[User, User, str]:
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    return alice, bob, room


async def test_initial_sync_then_pushed_batches(c: Client, open_ws: Any) -> None:
    alice, bob, room = await pair(c)
    sock = await open_ws(bob)
    first = await sock.batch()
    assert isinstance(first["next_batch"], str)
    assert any(e["type"] == "m.room.create" for e in timeline(first, room))
    e1 = await c.send(alice, room, "one")
    pushed = await sock.until(lambda b: bool(timeline(b, room)))
    assert [e["event_id"] for e in timeline(pushed, room)] == [e1]
    assert pushed["next_batch"] != first["next_batch"]
    e2 = await c.send(alice, room, "two")
    pushed = await sock.until(lambda b: e2 in {e["event_id"] for e in timeline(b, room)})
    # The pushed body is what /sync returns for the same since token.
    http = await c.sync(bob, first["next_batch"])
    assert [e["event_id"] for e in timeline(http, room)] == [e1, e2]


async def test_send_with_ack(c: Client, open_ws: Any) -> None:
    alice, bob, room = await pair(c)
    start = await c.sync(alice)
    sock = await open_ws(bob)
    await sock.batch()
    reply = await sock.request("send", {"room_id": room, "type": "m.room.message",
                                        "content": {"msgtype": "m.text", "body": "hey"},
                                        "txn_id": "t1"}, rid="r-1")
    assert reply["id"] == "r-1"
    event_id = reply["result"]["event_id"]
    assert event_id.startswith("$")
    # Resending the same txn_id is idempotent, as over HTTP.
    again = await sock.request("send", {"room_id": room, "type": "m.room.message",
                                        "content": {"msgtype": "m.text", "body": "hey"},
                                        "txn_id": "t1"}, rid=7)
    assert again == {"id": 7, "result": {"event_id": event_id}}
    # The other user's long poll sees it...
    got = await c.sync(alice, start["next_batch"], timeout=5000)
    assert [e["event_id"] for e in timeline(got, room)] == [event_id]
    assert "transaction_id" not in timeline(got, room)[0].get("unsigned", {})
    # ...and the sender's own pushed sync carries its transaction id.
    mine = await sock.until(lambda b: bool(timeline(b, room)))
    ev = timeline(mine, room)[0]
    assert ev["event_id"] == event_id
    assert ev["unsigned"]["transaction_id"] == "t1"
    # State events too, with the room's power levels applied as over HTTP.
    reply = await sock.request("state", {"room_id": room, "type": "m.room.topic",
                                         "content": {"topic": "ws"}})
    assert reply["error"]["errcode"] == "M_FORBIDDEN"
    own = await c.create_room(bob, preset="public_chat")
    reply = await sock.request("state", {"room_id": own, "type": "m.room.topic",
                                         "content": {"topic": "ws"}})
    assert reply["result"]["event_id"].startswith("$")
    status, topic = await c.request("GET", f"/rooms/{own}/state/m.room.topic", None,
                                    bob.access_token)
    assert status == 200 and topic == {"topic": "ws"}


async def test_canonical_alias_is_checked_over_the_socket(server: Server, c: Client,
                                                         open_ws: Any) -> None:
    """The state method applies the same m.room.canonical_alias rule as PUT /state."""
    sn = server.config.server_name
    owner = await c.register()
    mine, theirs = "wsa" + secrets.token_hex(4), "wsb" + secrets.token_hex(4)
    room = await c.create_room(owner, preset="public_chat", room_alias_name=mine)
    await c.create_room(owner, preset="public_chat", room_alias_name=theirs)
    sock = await open_ws(owner)
    await sock.batch()
    for content, errcode in (({"alias": f"#{theirs}:{sn}"}, "M_BAD_ALIAS"),
                             ({"alias": f"#{mine}:{sn}", "alt_aliases": [f"#x{mine}:{sn}"]},
                              "M_BAD_ALIAS"),
                             ({"alias": "no-hash"}, "M_INVALID_PARAM")):
        reply = await sock.request("state", {"room_id": room, "type": "m.room.canonical_alias",
                                             "content": content})
        assert reply["error"]["errcode"] == errcode, (content, reply)
    status, body = await c.request("GET", f"/rooms/{room}/state/m.room.canonical_alias", None,
                                   owner.access_token)
    assert body == {"alias": f"#{mine}:{sn}"}
    reply = await sock.request("state", {"room_id": room, "type": "m.room.canonical_alias",
                                         "content": {"alias": f"#{mine}:{sn}",
                                                     "alt_aliases": [f"#{mine}:{sn}"]}})
    assert reply["result"]["event_id"].startswith("$"), reply


async def test_errors_carry_the_request_id(c: Client, open_ws: Any) -> None:
    alice, bob, room = await pair(c)
    outsider = await c.register()
    sock = await open_ws(bob)
    await sock.batch()
    await sock.ws.send_str("{not json")
    assert (await sock.reply(None))["error"]["errcode"] == "M_NOT_JSON"
    await sock.ws.send_str("[1, 2]")
    assert (await sock.reply(None))["error"]["errcode"] == "M_BAD_JSON"
    await sock.ws.send_json({"id": {"x": 1}, "method": "ping"})
    assert (await sock.reply(None))["error"]["errcode"] == "M_BAD_JSON"
    await sock.ws.send_bytes(b"\xff\xfe")
    assert (await sock.reply(None))["error"]["errcode"] == "M_NOT_JSON"
    r = await sock.request("frobnicate", {}, rid="a")
    assert r["id"] == "a" and r["error"]["errcode"] == "M_UNRECOGNIZED"
    r = await sock.request("send", [1], rid="b")  # type: ignore[arg-type]
    assert r["id"] == "b" and r["error"]["errcode"] == "M_BAD_JSON"
    r = await sock.request("send", {"room_id": room, "type": "m.room.message",
                                    "content": {}}, rid="c")
    assert r["id"] == "c" and r["error"]["errcode"] == "M_MISSING_PARAM"
    r = await sock.request("send", {"room_id": "nope", "type": "m.room.message",
                                    "content": {}, "txn_id": "x"}, rid="d")
    assert r["error"]["errcode"] == "M_INVALID_PARAM"
    r = await sock.request("send", {"room_id": room, "type": "m.room.message",
                                    "content": "text", "txn_id": "x"}, rid="e")
    assert r["error"]["errcode"] == "M_BAD_JSON"
    r = await sock.request("state", {"room_id": room, "type": "m.room.member",
                                     "state_key": bob.user_id, "content": {}}, rid="f")
    assert r["error"]["errcode"] == "M_BAD_JSON"
    # Matrix errors from the services come back unchanged, with the id.
    other_room = await c.create_room(outsider, preset="private_chat")
    r = await sock.request("send", {"room_id": other_room, "type": "m.room.message",
                                    "content": {"body": "x"}, "txn_id": "y"}, rid=42)
    assert r["id"] == 42 and r["error"]["errcode"] == "M_FORBIDDEN"
    r = await sock.request("send", {"room_id": "!missing:parley.test", "type": "m.room.message",
                                    "content": {"body": "x"}, "txn_id": "z"}, rid=43)
    assert r["id"] == 43 and r["error"]["errcode"] == "M_NOT_FOUND"
    # The socket is still alive and in order.
    assert await sock.request("ping", rid="p") == {"id": "p", "result": {}}


async def test_rate_limit_applies_to_socket_sends(server: Server, c: Client, open_ws: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob, room = await pair(c)
    sock = await open_ws(bob)
    await sock.batch()
    monkeypatch.setattr(server.app[CTX].limiter, "enabled", True)
    burst = server.config.rate_limits.message.burst_count
    errors = []
    for i in range(int(burst) * 3):
        r = await sock.request("send", {"room_id": room, "type": "m.room.message",
                                        "content": {"body": str(i)}, "txn_id": f"rl{i}"})
        if "error" in r:
            errors.append(r["error"])
            break
    assert errors and errors[0]["errcode"] == "M_LIMIT_EXCEEDED"
    assert errors[0]["retry_after_ms"] > 0


async def test_typing_receipts_and_to_device(c: Client, open_ws: Any) -> None:
    alice, bob, room = await pair(c)
    a_sock, b_sock = await open_ws(alice), await open_ws(bob)
    await a_sock.batch()
    await b_sock.batch()

    r = await a_sock.request("typing", {"room_id": room, "typing": True, "timeout": 20000})
    assert r == {"id": r["id"], "result": {}}, r
    b = await b_sock.until(lambda b: bool(ephemeral(b, room, "m.typing")))
    assert ephemeral(b, room, "m.typing")[0]["content"]["user_ids"] == [alice.user_id]
    r = await a_sock.request("typing", {"room_id": room, "typing": False})
    assert "result" in r, r
    await b_sock.until(lambda b: any(e["content"]["user_ids"] == []
                                     for e in ephemeral(b, room, "m.typing")))
    r = await a_sock.request("typing", {"room_id": room, "typing": "yes"})
    assert r["error"]["errcode"] == "M_BAD_JSON"

    event_id = await c.send(bob, room, "read me")
    r = await a_sock.request("receipt", {"room_id": room, "receipt_type": "m.read",
                                         "event_id": event_id})
    assert "result" in r, r
    b = await b_sock.until(lambda b: bool(ephemeral(b, room, "m.receipt")))
    content = ephemeral(b, room, "m.receipt")[0]["content"]
    assert alice.user_id in content[event_id]["m.read"]
    r = await a_sock.request("receipt", {"room_id": room, "receipt_type": "m.bogus",
                                         "event_id": event_id})
    assert r["error"]["errcode"] in ("M_INVALID_PARAM", "M_BAD_JSON")

    r = await a_sock.request("to_device", {
        "type": "m.test", "txn_id": "td1",
        "messages": {bob.user_id: {bob.device_id: {"secret": 1}}}})
    assert "result" in r, r
    b = await b_sock.until(lambda b: bool(b.get("to_device", {}).get("events")))
    assert b["to_device"]["events"] == [
        {"type": "m.test", "sender": alice.user_id, "content": {"secret": 1}}]
    # The same txn id is not delivered twice.
    await a_sock.request("to_device", {
        "type": "m.test", "txn_id": "td1",
        "messages": {bob.user_id: {bob.device_id: {"secret": 1}}}})
    r = await a_sock.request("to_device", {"type": "m.test", "txn_id": "td2",
                                           "messages": {"not-a-user": {}}})
    assert r["error"]["errcode"] == "M_BAD_JSON"
    await c.send(alice, room, "marker")
    b = await b_sock.until(lambda b: bool(timeline(b, room)))
    assert not b.get("to_device", {}).get("events")


async def test_to_device_batch_is_resent_if_connection_drops(c: Client, open_ws: Any) -> None:
    alice, bob, _room = await pair(c)
    b_sock = await open_ws(bob)
    await b_sock.batch()
    since = b_sock.next_batch
    assert since is not None
    status, body = await c.request(
        "PUT", "/sendToDevice/m.test/drop1",
        {"messages": {bob.user_id: {bob.device_id: {"n": 1}}}}, alice.access_token)
    assert status == 200, body
    b = await b_sock.until(lambda b: bool(b.get("to_device", {}).get("events")))
    assert b["to_device"]["events"][0]["content"] == {"n": 1}
    # Pretend that batch was lost in transit: resume from the token before it.
    await b_sock.ws.close()
    again = await c.sync(bob, since)
    assert [e["content"] for e in again["to_device"]["events"]] == [{"n": 1}]


async def test_reconnect_with_next_batch_misses_nothing(c: Client, open_ws: Any) -> None:
    alice, bob, room = await pair(c)
    sock = await open_ws(bob)
    await sock.batch()
    e0 = await c.send(alice, room, "before")
    await sock.until(lambda b: e0 in {e["event_id"] for e in timeline(b, room)})
    since = sock.next_batch
    assert since is not None
    await sock.ws.close()
    sent = [await c.send(alice, room, f"while away {i}") for i in range(3)]
    sock2 = await open_ws(bob, since=since)
    got: list[str] = []

    def has_all(b: dict[str, Any]) -> bool:
        got.extend(e["event_id"] for e in timeline(b, room))
        return set(sent) <= set(got)

    await sock2.until(has_all)
    assert got == sent
    # And new events keep coming on the new socket.
    e4 = await c.send(alice, room, "after")
    await sock2.until(lambda b: e4 in {e["event_id"] for e in timeline(b, room)})


async def test_access_token_in_query_and_filter(server: Server, c: Client) -> None:
    alice, bob, room = await pair(c)
    for i in range(4):
        await c.send(alice, room, f"m{i}")
    flt = '{"room": {"timeline": {"limit": 2}}}'
    async with c.session.ws_connect(
            ws_url(server, access_token=bob.access_token, filter=flt)) as ws:
        sock = Socket(ws)
        first = await sock.batch()
        assert len(timeline(first, room)) == 2
        assert first["rooms"]["join"][room]["timeline"]["limited"] is True


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_auth_errors_before_upgrade(server: Server, c: Client, token: str | None) -> None:
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with c.session.get(ws_url(server), headers=headers) as resp:
        assert resp.status == 401
        body = await resp.json()
    assert body["errcode"] == ("M_MISSING_TOKEN" if token is None else "M_UNKNOWN_TOKEN")
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await c.session.ws_connect(ws_url(server), headers={
            "Authorization": f"Bearer {token}"} if token else None)
    assert exc.value.status == 401
    # A bad since token is a 400 before the upgrade as well.
    user = await c.register()
    async with c.session.get(ws_url(server, since="garbage"), headers={
            **headers, "Authorization": f"Bearer {user.access_token}"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["errcode"] == "M_INVALID_PARAM"


async def test_logout_closes_the_socket(c: Client, open_ws: Any) -> None:
    alice, bob, room = await pair(c)
    sock = await open_ws(bob)
    await sock.batch()
    status, _ = await c.request("POST", "/logout", {}, bob.access_token)
    assert status == 200
    # A request after the logout is refused with M_UNKNOWN_TOKEN, unless the socket is closed
    # first (the sync loop may find the token gone before the request is read): either way
    # the socket ends with CLOSE_UNKNOWN_TOKEN, and nothing but that error is answered.
    try:
        await sock.ws.send_json({"id": "after-logout", "method": "ping"})
    except ConnectionError:
        pass
    await c.send(alice, room, "wake the sync loop")
    msg = await sock.ws.receive(timeout=TIMEOUT)
    while msg.type is aiohttp.WSMsgType.TEXT:
        data = msg.json()
        if data.get("id") == "after-logout":
            assert data["error"]["errcode"] == "M_UNKNOWN_TOKEN", data
        msg = await sock.ws.receive(timeout=TIMEOUT)
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert msg.data == websocket.CLOSE_UNKNOWN_TOKEN


async def test_ping_counts_as_presence_heartbeat(server: Server, c: Client, open_ws: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, str]] = []

    class Recorder:
        async def heartbeat(self, user_id: str, device_id: str, set_presence: str = "online",
                            grace_ms: int = 0) -> None:
            calls.append((user_id, device_id, set_presence))

    monkeypatch.setattr(server.app[CTX], "presence", Recorder())
    monkeypatch.setattr(websocket, "PRESENCE_EVERY_S", 0.0)  # no throttling for this test
    user = await c.register()
    sock = await open_ws(user, set_presence="unavailable")
    await sock.batch()
    assert calls == [(user.user_id, user.device_id, "unavailable")]
    await sock.ws.ping(b"hello")  # a protocol-level ping is answered and counts
    await sock.request("ping")
    assert len(calls) >= 3
    assert set(calls) == {(user.user_id, user.device_id, "unavailable")}


async def test_closing_the_socket_leaves_no_task(server: Server, c: Client) -> None:
    user = await c.register()
    ws = await c.session.ws_connect(
        ws_url(server), headers={"Authorization": f"Bearer {user.access_token}"})
    await Socket(ws).batch()
    assert len(ws_tasks(user)) == 2  # the reader and the parked sync
    assert len(sessions_of(server, user)) == 1
    await ws.close()
    async with asyncio.timeout(TIMEOUT):
        while ws_tasks(user) or sessions_of(server, user):
            await asyncio.sleep(0.01)
    # The same when the client just drops the TCP connection.
    ws = await c.session.ws_connect(
        ws_url(server), headers={"Authorization": f"Bearer {user.access_token}"})
    await Socket(ws).batch()
    assert len(ws_tasks(user)) == 2
    transport = ws._response.connection.transport  # type: ignore[union-attr]
    assert transport is not None
    transport.abort()
    async with asyncio.timeout(TIMEOUT):
        while ws_tasks(user) or sessions_of(server, user):
            await asyncio.sleep(0.01)


def small_rcvbuf_socket(addr_info: Any) -> socket.socket:
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def test_slow_reader_is_cut_off_with_bounded_memory(
        server: Server, c: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    bound = 256 * 1024
    monkeypatch.setattr(websocket, "MAX_BUFFER_BYTES", bound)
    monkeypatch.setattr(websocket, "SEND_TIMEOUT_S", 1.0)
    alice, bob, room = await pair(c)
    flt = '{"room": {"timeline": {"limit": 5}}}'
    big = "x" * 40_000
    batch_bound = 5 * (len(big) + 2_000) + 10_000  # one batch at the most: 5 events
    connector = aiohttp.TCPConnector(socket_factory=small_rcvbuf_socket)
    async with aiohttp.ClientSession(connector=connector) as slow:
        ws = await slow.ws_connect(ws_url(server, filter=flt),
                                   headers={"Authorization": f"Bearer {bob.access_token}"})
        await Socket(ws).batch()
        [session] = sessions_of(server, bob)
        peak = 0
        sent = 0
        # The client reads nothing from here on while alice sends large messages.
        last_event = ""
        while session.close_code is None and sent < 400:
            last_event = await c.send(alice, room, big)
            sent += 1
            peak = max(peak, session.buffered_bytes())
        async with asyncio.timeout(TIMEOUT):
            while session.close_code is None:
                peak = max(peak, session.buffered_bytes())
                await asyncio.sleep(0.01)
        assert session.close_code == websocket.CLOSE_SLOW_CONSUMER
        assert sent < 400
        assert peak <= bound + batch_bound, (peak, sent)
        # Reading now drains what was buffered and ends with the close code and its reason.
        last_batch: str | None = None
        async with asyncio.timeout(TIMEOUT):
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                last_batch = msg.json()["body"]["next_batch"]
        assert msg.type is aiohttp.WSMsgType.CLOSE, msg
        assert msg.data == websocket.CLOSE_SLOW_CONSUMER
        assert msg.extra == websocket.SLOW_CONSUMER_REASON
        async with asyncio.timeout(TIMEOUT):
            while ws_tasks(bob) or sessions_of(server, bob):
                await asyncio.sleep(0.01)
    # The client resumes with its last next_batch and gets the latest messages.
    assert last_batch is not None
    resumed = await c.sync(bob, last_batch, filter=flt)
    assert timeline(resumed, room)[-1]["event_id"] == last_event
