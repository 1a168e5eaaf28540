"""/sync upgraded to a WebSocket: pushes each sync batch and takes requests on the same socket.

The protocol is documented in docs/websocket.md. One session per socket runs two things:

- a sync task that calls the same `SyncService.sync` as the long poll, from the last next_batch,
  and writes each non-empty result as one message. It computes the next batch only after the
  previous one was written, so a socket never holds more than one pending batch: a slow reader
  gets fewer, coalesced batches rather than a growing queue;
- the read loop (the handler's own task), which answers requests in the order they arrive. It
  never waits for the sync task, so a request is not held up by a parked sync.

Back-pressure: a write that does not complete within `SEND_TIMEOUT_S`, or a transport buffer
above `MAX_BUFFER_BYTES` when a message is about to be written, closes the socket with
`CLOSE_SLOW_CONSUMER` (4008); the client reconnects with its last next_batch and misses nothing.
Memory per socket is thus bounded by about one batch plus `MAX_BUFFER_BYTES`.

To-device messages are deleted once a later `since` acknowledges them. Over a socket the server
chooses that `since` itself, so after a batch that carries to-device messages it sends a ping and
waits for the client's pong (which follows the batch on the wire) before computing the next batch;
a batch lost with the connection is thus resent when the client resumes with its own since.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from client_api.context import ClientContext, access_token, ctx
from client_api.guest_access import GUEST_SOCKET_METHODS
from homeserver.errors import Codes, MatrixError
from homeserver.events.filter import SyncFilter
from homeserver.http import parse_json_object, validate
from homeserver.streams.tokens import SyncToken
from homeserver.types import JsonDict, Requester, is_valid_event_id, is_valid_room_id

log = logging.getLogger(__name__)

# Tunables (module constants so tests can shorten them).
HEARTBEAT_S = 30.0  # server ping interval; a missing pong after half of it closes the socket
PRESENCE_EVERY_S = 10.0  # at most one presence heartbeat per socket this often (forced on connect)
SYNC_TIMEOUT_MS = 30_000  # each parked sync re-checks the access token at least this often
SEND_TIMEOUT_S = 10.0  # a message not written within this is a slow consumer
MAX_BUFFER_BYTES = 1 << 20  # transport write buffer above this is a slow consumer
ACK_TIMEOUT_S = 30.0  # wait for the pong that acknowledges a batch with to-device messages
CLOSE_TIMEOUT_S = 2.0  # wait for the close handshake
ABORT_AFTER_S = 10.0  # then drop whatever is still buffered for a client that does not read
MAX_ID_LENGTH = 255

CLOSE_SLOW_CONSUMER = 4008
CLOSE_UNKNOWN_TOKEN = 4001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_GOING_AWAY = 1001
SLOW_CONSUMER_REASON = "slow consumer: resume with since"

SOCKETS: web.AppKey[set[WebSocketSession]] = web.AppKey("parley_websockets", set)


def setup(app: web.Application) -> None:
    """Register the open-socket set and close every socket on shutdown (called in make_app)."""
    app[SOCKETS] = set()
    app.on_shutdown.append(_close_all)


async def _close_all(app: web.Application) -> None:
    sessions = list(app.get(SOCKETS, ()))
    await asyncio.gather(*(s.close(CLOSE_GOING_AWAY, "server shutting down")
                           for s in sessions), return_exceptions=True)


def is_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def serve(request: web.Request, requester: Requester, since: SyncToken | None,
                flt: SyncFilter, full_state: bool, set_presence: str) -> web.StreamResponse:
    """Upgrade an authenticated, validated /sync request and run the session until it closes."""
    c = ctx(request)
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, autoping=False, compress=False,
                               max_msg_size=c.config.max_request_bytes,
                               timeout=CLOSE_TIMEOUT_S)
    await ws.prepare(request)
    session = WebSocketSession(request, ws, c, requester, since, flt, full_state, set_presence)
    sockets = request.app.get(SOCKETS)
    if sockets is not None:
        sockets.add(session)
    try:
        await session.run()
    finally:
        if sockets is not None:
            sockets.discard(session)
    return ws


class SlowConsumer(Exception):
    pass


class WebSocketSession:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse, c: ClientContext,
                 requester: Requester, since: SyncToken | None, flt: SyncFilter,
                 full_state: bool, set_presence: str) -> None:
        self.request = request
        self.ws = ws
        self.c = c
        self.requester = requester
        self.token = access_token(request) or ""
        self.since = since
        self.flt = flt
        self.full_state = full_state
        self.set_presence = set_presence
        self.close_code: int | None = None
        self._closing: tuple[int, str] | None = None
        self.sync_task: asyncio.Task[None] | None = None
        self._pongs: dict[bytes, asyncio.Future[None]] = {}
        self._ping_ids = itertools.count(1)
        self._last_heartbeat = 0.0
        self._methods: dict[str, Callable[[Any], Awaitable[JsonDict]]] = {
            "send": self._send_event, "state": self._state, "typing": self._typing,
            "receipt": self._receipt, "to_device": self._to_device, "ping": self._ping,
        }

    # -- lifetime -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the read loop and the sync loop until either ends, then close and clean up."""
        await self._heartbeat(force=True)
        name = self.requester.user_id
        reader = asyncio.create_task(self._read_loop(), name=f"parley-ws-read:{name}")
        self.sync_task = asyncio.create_task(self._sync_loop(), name=f"parley-ws-sync:{name}")
        tasks = (reader, self.sync_task)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task, outcome in zip(
                    tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True):
                if isinstance(outcome, Exception):
                    log.error("websocket task %s failed", task.get_name(), exc_info=outcome)
                    self._close_with(CLOSE_INTERNAL_ERROR, "M_UNKNOWN: internal error")
            for fut in self._pongs.values():
                fut.cancel()
            self._pongs.clear()
            await self.close(*(self._closing or (1000, "")))

    def _close_with(self, code: int, reason: str) -> None:
        """Record why the session ends (the first reason wins); run() closes the socket."""
        if self._closing is None:
            self._closing = (code, reason)

    def buffered_bytes(self) -> int:
        """Bytes waiting in this socket's transport write buffer (for back-pressure and tests)."""
        transport = self.request.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    async def close(self, code: int, reason: str) -> None:
        """Close with `code`; a client that does not read the close frame is dropped later."""
        if self.close_code is None:
            self.close_code = code
        transport = self.request.transport
        if not self.ws.closed:
            try:
                async with asyncio.timeout(2 * CLOSE_TIMEOUT_S):
                    await self.ws.close(code=code, message=reason.encode(), drain=False)
            except (TimeoutError, ConnectionError):
                pass
        if transport is not None and transport.get_write_buffer_size() > 0:
            # transport.close() waits for the buffer to flush; bound how long we keep it.
            asyncio.get_running_loop().call_later(ABORT_AFTER_S, transport.abort)

    # -- server -> client -----------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        if self.ws.closed:
            raise ConnectionResetError("socket closed")
        if self.buffered_bytes() > MAX_BUFFER_BYTES:
            raise SlowConsumer
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await self.ws.send_frame(data, WSMsgType.TEXT)
        except TimeoutError:
            raise SlowConsumer from None

    async def _sync_loop(self) -> None:
        since, full_state = self.since, self.full_state
        try:
            while True:
                self.requester = await self.c.sessions.authenticate(
                    self.token, ip=self.request.remote)
                result = await self.c.sync.sync(self.requester, since, self.flt,
                                                SYNC_TIMEOUT_MS, full_state)
                full_state = False
                if result.empty and since is not None:
                    since = result.next_batch
                    continue
                await self._write(orjson.dumps({"type": "sync", "body": result.body}))
                since = result.next_batch
                if result.body.get("to_device", {}).get("events"):
                    await self._await_pong()
        except SlowConsumer:
            self._close_with(CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON)
        except ConnectionError:
            self._close_with(1000, "")
        except MatrixError as e:
            code = CLOSE_UNKNOWN_TOKEN if e.status == 401 else CLOSE_INTERNAL_ERROR
            self._close_with(code, f"{e.errcode}: {e.error}"[:120])

    async def _await_pong(self) -> None:
        """Ping and wait for the pong: the client has then read everything written before."""
        payload = b"ack-%d" % next(self._ping_ids)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs[payload] = fut
        try:
            await self.ws.ping(payload)
            async with asyncio.timeout(ACK_TIMEOUT_S):
                await fut
        except TimeoutError:
            raise SlowConsumer from None
        finally:
            self._pongs.pop(payload, None)

    # -- client -> server -----------------------------------------------------------------------

    async def _heartbeat(self, force: bool = False) -> None:
        presence = self.c.presence
        now = time.monotonic()
        if presence is None or (not force and now - self._last_heartbeat < PRESENCE_EVERY_S):
            return
        self._last_heartbeat = now
        try:
            await presence.heartbeat(self.requester.user_id, self.requester.device_id,
                                     set_presence=self.set_presence,
                                     grace_ms=int(HEARTBEAT_S * 1000))
        except Exception:
            log.exception("presence heartbeat failed for %s", self.requester.user_id)

    async def _read_loop(self) -> None:
        ws = self.ws
        while not ws.closed:
            msg = await ws.receive()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await self._heartbeat()
                reply = await self._handle(msg.data)
                try:
                    await self._write(orjson.dumps(reply))
                except SlowConsumer:
                    self._close_with(CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON)
                    return
                except ConnectionError:
                    return
            elif msg.type is WSMsgType.PING:
                with contextlib.suppress(ConnectionError):
                    await ws.pong(msg.data)
                await self._heartbeat()
            elif msg.type is WSMsgType.PONG:
                fut = self._pongs.get(bytes(msg.data))
                if fut is not None and not fut.done():
                    fut.set_result(None)
                await self._heartbeat()
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                return

    async def _handle(self, raw: str | bytes) -> JsonDict:
        """One request frame -> its reply; never raises for anything the client sent."""
        try:  # the same limits as an HTTP body: depth, storable text (M_NOT_JSON / M_BAD_JSON)
            frame = parse_json_object(raw, "Frame")
        except MatrixError as e:
            return _error(None, e)
        rid = frame.get("id")
        if not isinstance(rid, (str, int)) or isinstance(rid, bool) or (
                isinstance(rid, str) and len(rid) > MAX_ID_LENGTH):
            return _error(None, MatrixError(400, Codes.BAD_JSON,
                                            "id must be a string or an integer"))
        method, params = frame.get("method"), frame.get("params", {})
        if not isinstance(method, str):
            return _error(rid, MatrixError(400, Codes.BAD_JSON, "method must be a string"))
        if not isinstance(params, dict):
            return _error(rid, MatrixError(400, Codes.BAD_JSON, "params must be an object"))
        handler = self._methods.get(method)
        if handler is None:
            return _error(rid, MatrixError(400, Codes.UNRECOGNIZED, f"Unknown method {method!r}"))
        try:
            self.requester = await self.c.sessions.authenticate(self.token,
                                                             ip=self.request.remote)
            if self.requester.is_guest and method not in GUEST_SOCKET_METHODS:
                raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN,
                                  "Guest access is not allowed for this method")
            return {"id": rid, "result": await handler(params)}
        except MatrixError as e:
            return _error(rid, e)
        except Exception:
            log.exception("websocket %s request failed for %s", method, self.requester.user_id)
            return _error(rid, MatrixError(500, Codes.UNKNOWN, "Internal server error"))

    # -- request methods (each mirrors its HTTP endpoint) ---------------------------------------

    async def _send_event(self, p: JsonDict) -> JsonDict:
        room_id, etype = _room_id(p), _string(p, "type")
        txn_id, content = _string(p, "txn_id"), _object(p, "content")
        c, r = self.c, self.requester
        c.limiter.check("message", r.user_id, c.config.rate_limits.message, r.is_admin)
        event_id = await c.rooms.send_message(r, room_id, etype, content, txn_id)
        if c.presence is not None:  # sending is activity (spec: presence "last active")
            await c.presence.note_activity(r.user_id, r.device_id)
        return {"event_id": event_id}

    async def _state(self, p: JsonDict) -> JsonDict:
        room_id, etype, content = _room_id(p), _string(p, "type"), _object(p, "content")
        state_key = p.get("state_key", "")
        if not isinstance(state_key, str):
            raise MatrixError(400, Codes.BAD_JSON, "state_key must be a string")
        return {"event_id": await self.c.rooms.set_state(self.requester, room_id, etype,
                                                         state_key, content)}

    async def _typing(self, p: JsonDict) -> JsonDict:
        service = _service(self.c.typing, "Typing notifications")
        room_id, typing = _room_id(p), p.get("typing")
        if not isinstance(typing, bool):
            raise MatrixError(400, Codes.BAD_JSON, "typing must be a boolean")
        timeout = p.get("timeout", 30_000)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
            raise MatrixError(400, Codes.BAD_JSON, "timeout must be a non-negative integer")
        await service.set_typing(room_id, self.requester.user_id, typing, timeout)
        return {}

    async def _receipt(self, p: JsonDict) -> JsonDict:
        service = _service(self.c.receipts, "Receipts")
        room_id, rtype, event_id = _room_id(p), _string(p, "receipt_type"), _string(p, "event_id")
        if not is_valid_event_id(event_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid event id")
        thread_id = p.get("thread_id")
        if thread_id is not None and not isinstance(thread_id, str):
            raise MatrixError(400, Codes.BAD_JSON, "thread_id must be a string")
        await service.post_receipt(self.requester, room_id, rtype, event_id, thread_id)
        return {}

    async def _to_device(self, p: JsonDict) -> JsonDict:
        service = _service(self.c.to_device, "To-device messaging")
        etype, txn_id = _string(p, "type"), _string(p, "txn_id")
        validate({"messages": p.get("messages")}, "send_to_device")
        await service.send(self.requester, etype, p["messages"], txn_id)
        return {}

    async def _ping(self, p: JsonDict) -> JsonDict:
        await self._heartbeat(force=True)
        return {}


def _error(rid: str | int | None, e: MatrixError) -> JsonDict:
    return {"id": rid, "error": e.to_dict()}


def _service(service: Any, what: str) -> Any:
    if service is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, f"{what} not enabled on this server")
    return service


def _string(p: JsonDict, name: str) -> str:
    v = p.get(name)
    if v is None:
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing parameter {name}")
    if not isinstance(v, str) or not v or len(v) > MAX_ID_LENGTH:
        raise MatrixError(400, Codes.BAD_JSON,
                          f"{name} must be a non-empty string of at most {MAX_ID_LENGTH} chars")
    return v


def _room_id(p: JsonDict) -> str:
    room_id = _string(p, "room_id")
    if not is_valid_room_id(room_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room id")
    return room_id


def _object(p: JsonDict, name: str) -> JsonDict:
    v = p.get(name)
    if not isinstance(v, dict):
        raise MatrixError(400, Codes.BAD_JSON, f"{name} must be a JSON object")
    return v
