"""A parked /sync long-poll on a keep-alive connection: requests pipelined behind it, whole or in
pieces, and requests after it, are all answered, in order (the connection sheds its parser state
while the poll waits, see MatrixRequestHandler.park)."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from typing import Any

import orjson

from homeserver.http import MatrixRequestHandler
from tests.conftest import Server
from tests.helpers import Client, User


class Conn:
    """One keep-alive HTTP/1.1 connection, written and read by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: Server) -> Conn:
        reader, writer = await asyncio.open_connection(server.config.listen_host,
                                                       server.config.listen_port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> tuple[int, Any]:
        async with asyncio.timeout(10):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip()
                       for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await self.reader.readexactly(int(headers["content-length"]))
        return int(lines[0].split()[1]), orjson.loads(body)

    def close(self) -> None:
        self.writer.close()


def get(path: str, user: User | None = None) -> bytes:
    auth = f"Authorization: Bearer {user.access_token}\r\n" if user else ""
    return f"GET /_matrix/client{path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()


def poll(user: User, since: str, timeout_ms: int) -> bytes:
    return get(f"/v3/sync?since={since}&timeout={timeout_ms}", user)


async def start(c: Client) -> tuple[User, str]:
    u = await c.register()
    return u, (await c.sync(u))["next_batch"]


async def test_request_pipelined_behind_a_parked_poll(c: Client, server: Server) -> None:
    u, since = await start(c)
    conn = await Conn.open(server)
    try:
        started = time.monotonic()
        await conn.send(poll(u, since, 400) + get("/versions"))
        status, body = await conn.response()
        assert status == 200 and "next_batch" in body
        assert time.monotonic() - started >= 0.35  # it did wait
        status, body = await conn.response()
        assert status == 200 and "v1.1" in body["versions"]
    finally:
        conn.close()


async def test_request_split_while_a_poll_is_parked(c: Client, server: Server) -> None:
    u, since = await start(c)
    conn = await Conn.open(server)
    try:
        await conn.send(poll(u, since, 600))
        await asyncio.sleep(0.2)  # parked
        nxt = get("/versions")
        await conn.send(nxt[:20])
        await asyncio.sleep(0.1)
        await conn.send(nxt[20:])
        status, body = await conn.response()
        assert status == 200 and "next_batch" in body
        status, body = await conn.response()
        assert status == 200 and "v1.1" in body["versions"]
        # and the connection goes on serving
        await conn.send(get(f"/v3/sync?since={since}&timeout=0", u))
        status, body = await conn.response()
        assert status == 200 and "next_batch" in body
    finally:
        conn.close()


async def test_partial_request_sent_with_the_poll(c: Client, server: Server) -> None:
    u, since = await start(c)
    conn = await Conn.open(server)
    try:
        nxt = get("/versions")
        await conn.send(poll(u, since, 400) + nxt[:25])
        await asyncio.sleep(0.2)
        await conn.send(nxt[25:])
        assert (await conn.response())[0] == 200
        status, body = await conn.response()
        assert status == 200 and "v1.1" in body["versions"]
    finally:
        conn.close()


async def test_put_with_body_pipelined_behind_a_parked_poll(c: Client, server: Server) -> None:
    u, since = await start(c)
    room = await c.create_room(u)
    since = (await c.sync(u, since))["next_batch"]
    content = orjson.dumps({"msgtype": "m.text", "body": "behind the poll\r\n\r\n"})
    put = (f"PUT /_matrix/client/v3/rooms/{room}/send/m.room.message/{uuid.uuid4().hex}"
           f" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {u.access_token}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(content)}\r\n\r\n").encode()
    conn = await Conn.open(server)
    try:
        await conn.send(poll(u, since, 300) + put + content[:10])
        await asyncio.sleep(0.1)
        await conn.send(content[10:])
        status, body = await conn.response()
        assert status == 200 and "join" not in body.get("rooms", {})  # the PUT waits its turn
        status, body = await conn.response()
        assert status == 200, body
        event_id = body["event_id"]
    finally:
        conn.close()
    got = await c.sync(u, since)
    events = got["rooms"]["join"][room]["timeline"]["events"]
    assert [(e["event_id"], e["content"]["body"]) for e in events] == [
        (event_id, "behind the poll\r\n\r\n")]


def parked_connections(since: str) -> list[MatrixRequestHandler]:
    """The server's connections (the test server runs in this process) whose current request
    is a /sync from `since`."""
    return [h for h in gc.get_objects() if isinstance(h, MatrixRequestHandler)
            and h._current_request is not None
            and h._current_request.path.endswith("/sync")
            and f"since={since}" in h._current_request.raw_path]


async def test_what_a_parked_poll_sheds(c: Client, server: Server) -> None:
    """What park() sheds (~1.4 kB per parked poll): the HTTP parser, made again when the next
    bytes arrive, the query's parse and the socket's addresses; the poll still wakes at once
    and the connection goes on serving."""
    u, since = await start(c)
    conn = await Conn.open(server)
    try:
        await conn.send(poll(u, since, 30_000))
        for _ in range(100):
            handlers = parked_connections(since)
            if handlers:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        [handler] = handlers
        request = handler._current_request
        assert request is not None
        assert handler._parser is None
        assert "query" not in request._cache and "query" not in request.rel_url._cache
        assert request._transport_peername is None and "peername" not in handler._cache
        assert request.remote == "127.0.0.1" and request.host == "x"  # worked out before
        started = time.monotonic()
        room = await c.create_room(u)  # wakes the poll
        status, body = await conn.response()
        assert status == 200 and room in body["rooms"]["join"]
        assert time.monotonic() - started < 5
        await conn.send(get("/versions"))  # a new parser reads the next request
        status, body = await conn.response()
        assert status == 200 and "v1.1" in body["versions"]
    finally:
        conn.close()
