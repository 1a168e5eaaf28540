"""Shared aiohttp glue: Matrix error bodies, JSON bodies validated by JSON Schema, CORS.

Also the input limits every request passes before any handler: path and query text PostgreSQL
can store, bodies no deeper than `MAX_JSON_DEPTH` (homeserver/json_input.py), integer and enum
query parameters parsed strictly, and Matrix JSON even for the errors aiohttp's HTTP parser
answers itself (`MatrixAppRunner`)."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import cache
from importlib.resources import files
from typing import Any, Protocol

import jsonschema
import orjson
from aiohttp import web, web_protocol
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from homeserver.errors import Codes, MatrixError, UIARequired
from homeserver.events.validation import MAX_SAFE_INT
from homeserver.json_input import MAX_JSON_DEPTH, json_problem, text_problem

log = logging.getLogger(__name__)

MAX_PATH_PARAM_BYTES = 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
}


def json_response(body: Any, status: int = 200) -> web.Response:
    resp = web.Response(body=orjson.dumps(body), status=status,
                        content_type="application/json")
    resp.headers.update(CORS_HEADERS)
    return resp


def error_response(err: MatrixError) -> web.Response:
    return json_response(err.to_dict(), err.status)


class RequestObserver(Protocol):
    """Told about every request (homeserver/observability/observer.py): metrics, the
    database's health and the request log line."""

    def begin(self, request: web.Request) -> Any: ...

    def unavailable(self, exc: BaseException) -> MatrixError | None: ...

    def end(self, request: web.Request, status: int, seconds: float, state: Any) -> None: ...


OBSERVER: web.AppKey[RequestObserver] = web.AppKey("parley_observer")


def matrix_errors(handler: Handler) -> Handler:
    """Wrap a route handler so that what it raises becomes a Matrix error reply.

    Also answers CORS preflight (OPTIONS) and refuses path and query text PostgreSQL cannot
    store, before the handler runs. A wrapper per route (see `add_routes`) and not an aiohttp
    middleware: with any middleware aiohttp adds one of its own to every request, and a parked
    long-poll keeps each frame of its chain alive (~0.25 kB apiece). For the same reason the
    app's `RequestObserver` (metrics, logs, database outages: 503 with Retry-After) is called
    from this one frame rather than from a wrapper of its own."""

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=CORS_HEADERS)
        observer = request.app.get(OBSERVER)
        state = observer.begin(request) if observer is not None else None
        started = time.perf_counter()
        status = 500
        try:
            check_request_text(request)
            resp = await handler(request)
            status = resp.status
            return resp
        except MatrixError as e:
            status = e.status
            return error_response(e)
        except UIARequired as e:
            status = 401
            return json_response(e.body, 401)
        except web.HTTPRequestEntityTooLarge:
            status = 413
            return error_response(MatrixError(413, Codes.TOO_LARGE, "Request body too large"))
        except web.HTTPNotFound:
            status = 404
            return error_response(MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request"))
        except web.HTTPMethodNotAllowed:
            status = 405
            return error_response(MatrixError(405, Codes.UNRECOGNIZED, "Unrecognized request"))
        except web.HTTPException as e:
            status = e.status
            raise
        except ConnectionResetError:
            # The client went away (e.g. while its body was being read): nothing is wrong
            # here and nobody is left to answer; not an error worth a traceback.
            log.debug("client disconnected during %s %s", request.method, request.path)
            status = 400
            return error_response(MatrixError(400, Codes.UNKNOWN, "Connection reset"))
        except Exception as e:
            outage = observer.unavailable(e) if observer is not None else None
            if outage is not None:
                status = 503
                resp = error_response(outage)
                resp.headers["Retry-After"] = str(max(1, outage.extra["retry_after_ms"] // 1000))
                return resp
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(MatrixError(500, Codes.UNKNOWN, "Internal server error"))
        finally:
            if observer is not None:
                observer.end(request, status, time.perf_counter() - started, state)

    return handle


def add_routes(app: web.Application, routes: Iterable[web.AbstractRouteDef]) -> None:
    """`app.add_routes`, each handler wrapped in `matrix_errors`."""
    for route in routes:
        if not isinstance(route, web.RouteDef):
            raise TypeError(f"only plain routes are supported, not {route!r}")
        web.RouteDef(route.method, route.path, matrix_errors(route.handler),
                     route.kwargs).register(app.router)


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    # Package data of client_api, so an installed wheel reads the copy it ships.
    schema = json.loads(files("client_api").joinpath("schemas", f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate(body: Any, schema: str) -> None:
    errors = sorted(_validator(schema).iter_errors(body), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.path) or "body"
        raise MatrixError(400, Codes.BAD_JSON, f"{where}: {err.message}")


def parse_json_object(raw: str | bytes, what: str) -> dict[str, Any]:
    """Parse a JSON object from a body, query parameter or WebSocket frame.

    M_NOT_JSON when it does not parse; M_BAD_JSON when it is not an object, is nested deeper than
    `MAX_JSON_DEPTH` or holds text PostgreSQL cannot store (see homeserver/json_input.py)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        if "depth limit" in str(e):  # orjson's own limit (1024) is valid JSON all the same
            raise MatrixError(400, Codes.BAD_JSON,
                              f"{what} is nested more than {MAX_JSON_DEPTH} levels deep") from None
        raise MatrixError(400, Codes.NOT_JSON, f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise MatrixError(400, Codes.BAD_JSON, f"{what} must be a JSON object")
    problem = json_problem(value)
    if problem is not None:
        raise MatrixError(400, Codes.BAD_JSON, f"{what} is not acceptable: {problem}")
    return value


async def read_json(request: web.Request, schema: str | None = None,
                    allow_empty: bool = False) -> Any:
    """Parse the request body as a JSON object; M_NOT_JSON / M_BAD_JSON / M_TOO_LARGE."""
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            body: Any = {}
        else:
            raise MatrixError(400, Codes.NOT_JSON, "Content not JSON.")
    else:
        body = parse_json_object(raw, "Content")
    if schema is not None:
        validate(body, schema)
    return body


def query_int(request: web.Request, name: str, default: int, minimum: int = 0,
              maximum: int | None = None) -> int:
    """An integer query parameter: ASCII digits, within canonical JSON's range, else
    M_INVALID_PARAM; values above `maximum` are clamped to it."""
    raw = request.query.get(name)
    if raw is None:
        return default
    digits = raw[1:] if raw[:1] == "-" else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 16:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be an integer")
    v = int(raw)
    if abs(v) > MAX_SAFE_INT:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} is out of range")
    if v < minimum:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be >= {minimum}")
    if maximum is not None:
        v = min(v, maximum)
    return v


def query_bool(request: web.Request, name: str, default: bool) -> bool:
    """A boolean query parameter: only `true` or `false` (the spec's boolean), else
    M_INVALID_PARAM."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be true or false")
    return raw == "true"


def query_choice(request: web.Request, name: str, choices: tuple[str, ...],
                 default: str | None = None) -> str:
    """A query parameter from a closed set: M_MISSING_PARAM when required and absent,
    M_INVALID_PARAM when not one of `choices`."""
    raw = request.query.get(name, default)
    if raw is None:
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing query parameter {name}")
    if raw not in choices:
        raise MatrixError(400, Codes.INVALID_PARAM,
                          f"{name} must be one of {', '.join(choices)}")
    return raw


def check_request_text(request: web.Request) -> None:
    """Refuse (400 M_INVALID_PARAM) a path or query parameter PostgreSQL could not store (NUL,
    lone surrogate): every identifier, token and id reaches SQL as text somewhere."""
    for where, items in (("path", request.match_info.items()),
                         ("query", request.query.items())):
        for key, value in items:
            problem = text_problem(key) or text_problem(value)
            if problem is not None:
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  f"The {where} parameter {key!r} {problem}")
            if (where == "path" and key != "tail"
                    and len(value.encode()) > MAX_PATH_PARAM_BYTES):
                # Ids, types, txn ids and keys end up in indexed columns (a btree entry holds
                # at most ~2.7 kB); no identifier the spec defines comes near this.
                raise MatrixError(400, Codes.INVALID_PARAM, f"The path parameter {key!r} "
                                  f"is longer than {MAX_PATH_PARAM_BYTES} bytes")
    problem = text_problem(request.path)
    if problem is not None:
        raise MatrixError(400, Codes.INVALID_PARAM, f"The path {problem}")


# -- errors aiohttp answers itself, before any middleware: over-long request line or headers ---

MAX_REQUEST_LINE_BYTES = 8190  # aiohttp's default for the request line
MAX_HEADER_FIELD_BYTES = 16384  # one header, name and value; kept different from the line limit
# so that the limit an error names tells which of the two was exceeded.


class _MessageQueue(list[Any]):
    """The connection's queue of parsed requests not yet handled (pipelining), as a list.

    aiohttp keeps it in a `deque`, whose first block alone is ~0.7 kB, for every connection
    for its whole life, though it rarely holds more than one request; a list is 56 bytes.
    aiohttp uses only append, popleft, len and truth on it, and caps it at 32 entries.

    A request enters without `raw_headers`, the bytes copy of its headers (~0.5 kB for a
    typical client) that Parley never reads (`request.headers` has them as text): aiohttp
    keeps the message until the request is done, and a long-poll may take minutes."""

    __slots__ = ()

    def append(self, item: Any) -> None:
        message, payload = item
        if getattr(message, "raw_headers", None):
            item = (message._replace(raw_headers=()), payload)
        super().append(item)

    def popleft(self) -> Any:
        return self.pop(0)


class MatrixRequestHandler(RequestHandler):
    """aiohttp's connection handler, but its own error replies are Matrix JSON as well.

    The HTTP parser rejects an over-long request line or header before a request exists, and
    aiohttp then writes a plain-text 400 from `handle_error`; this override writes
    `{"errcode": "M_TOO_LARGE"}` with 414 (line) or 431 (headers) instead, and any other
    unparseable request as 400 M_UNKNOWN.

    It also keeps a connection small while its request waits (`park`): a server with
    thousands of parked long-polls holds one of these per poll."""

    __slots__ = ("_at_boundary", "_parser_shed")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._messages = _MessageQueue()  # type: ignore[assignment]
        self._at_boundary = False  # the bytes received so far end where a request's head ended
        self._parser_shed = False  # park() dropped the parser; the next bytes get a new one

    def data_received(self, data: bytes) -> None:
        if self._parser_shed:
            self._parser_shed = False
            if self._parser is None and not (self._force_close or self._close):
                self._parser = self._new_parser()
        super().data_received(data)
        self._at_boundary = data.endswith(b"\r\n\r\n")

    def _new_parser(self) -> Any:
        """A parser as RequestHandler makes one (aiohttp 3.14's arguments)."""
        manager = self._manager
        return web_protocol.HttpRequestParser(
            self, self._loop, self._read_bufsize, max_line_size=self.max_line_size,
            max_field_size=self.max_field_size, max_headers=self.max_headers,
            payload_exception=web_protocol.RequestPayloadError,
            auto_decompress=(manager._kwargs.get("auto_decompress", True)
                             if manager is not None else True),
            max_msg_queue_size=self._max_msg_queue_size)

    def park(self, request: web.BaseRequest) -> None:
        """`request` is about to wait long (a /sync long-poll): drop what the connection keeps
        that it will not need before the next request.

        - The idle (keep-alive) timer: aiohttp arms it when a connection opens and again after
          each response; while a request is handled it only re-arms itself, yet costs a timer
          (~0.5 kB). `keep_alive(True)` cancels it without changing the connection (one that is
          handling a request is a keep-alive one); aiohttp arms it again after the response.
        - The HTTP parser (~1 kB with its copy of the last request's headers, as text and as
          bytes, which it only lets go when the next request begins). It is dropped, and a
          fresh one made when the next bytes arrive (`data_received`), only when it provably
          holds nothing else: the request has no unread body, no other request is queued, and
          the last bytes received ended a request's head (so no part of a next request is
          inside the parser). Most parked polls get no bytes until their answer is written,
          so they hold no parser at all. (The bytes copy of the request's headers is already
          gone, see `_MessageQueue`.)
        - The request's parsed query (a MultiDict, ~0.2 kB) and the URL derived from its head:
          the handler has read its parameters before it parks, and each is derived again, the
          same, should anything ask later (aiohttp's `reify` caches).
        - The socket's peer and local addresses (two tuples, ~0.2 kB), which the connection
          and the request keep for `request.remote` and `request.host`: both are worked out
          first (and stay cached, as strings the request holds anyway), and the connection
          asks the socket again for the next request."""
        self.keep_alive(True)
        cache = getattr(request, "_cache", None)
        if isinstance(cache, dict):
            for name in ("query", "url"):
                cache.pop(name, None)
            if (hasattr(request, "_transport_peername") and "peername" in self._cache
                    and request.remote is not None and request.host):
                request._transport_peername = request._transport_sockname = None
                self._cache.pop("peername", None)
                self._cache.pop("sockname", None)
        url_cache = getattr(request.rel_url, "_cache", None)  # yarl keeps the query's parse too
        if isinstance(url_cache, dict):
            url_cache.pop("query", None)
        # Only the parser class and arguments `_new_parser` knows (aiohttp 3.14; older ones,
        # whose parser takes no queue size, keep their parser).
        if (getattr(self, "_max_msg_queue_size", None) is not None and self._at_boundary
                and not self._messages and request.content.is_eof()
                and self._payload_parser is None and not self._upgraded
                and type(self._parser) is web_protocol.HttpRequestParser):
            self._parser = None
            self._parser_shed = True

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # a response is half written: only closing is left
            return super().handle_error(request, status, exc, message)
        if isinstance(exc, LineTooLong):
            limit = exc.args[1] if len(exc.args) > 1 else None
            if limit == self.max_line_size:
                err = MatrixError(414, Codes.TOO_LARGE, "Request line too long")
            else:
                err = MatrixError(431, Codes.TOO_LARGE, "Request header too long")
        elif status == 400 and exc is not None and "too many headers" in str(exc).lower():
            err = MatrixError(431, Codes.TOO_LARGE, "Too many request headers")
        elif status < 500:
            err = MatrixError(status, Codes.UNKNOWN, "Malformed HTTP request")
        else:
            self.log_exception("Error handling request", exc_info=exc)
            err = MatrixError(500, Codes.UNKNOWN, "Internal server error")
        log.debug("refused a malformed HTTP request: %s", exc)
        resp = error_response(err)
        resp.force_close()
        return resp


def park(request: web.Request) -> None:
    """Tell the connection that `request` may now wait long (see `MatrixRequestHandler.park`)."""
    protocol = request.protocol
    if isinstance(protocol, MatrixRequestHandler):
        protocol.park(request)


def _routable(handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
              ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The app's handler, but a request whose target is not a path (`OPTIONS *`, CONNECT's
    `host:port`), which no route can take, gets a Matrix reply as well: 204 to OPTIONS (CORS
    preflight, as for every path), else 404 M_UNRECOGNIZED. A plain function that hands back
    the app's coroutine, so a request costs no extra frame."""

    def handle(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        if request.path.startswith("/"):
            return handler(request)
        return _unroutable(request)

    return handle


async def _unroutable(request: web.BaseRequest) -> web.StreamResponse:
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS_HEADERS)
    return error_response(MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request"))


class MatrixServer(web.Server):
    """A `web.Server` whose connections use `MatrixRequestHandler`."""

    def __call__(self) -> RequestHandler:
        return MatrixRequestHandler(self, loop=self._loop, **self._kwargs)


class MatrixAppRunner(web.AppRunner):
    """`web.AppRunner` serving the app through `MatrixServer` (used by `serve` and the tests).

    aiohttp has no public hook for the connection handler class, so this rebuilds the server
    that `AppRunner` made, with the same handler, request factory, loop and options."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", MAX_REQUEST_LINE_BYTES)
        kwargs.setdefault("max_field_size", MAX_HEADER_FIELD_BYTES)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return MatrixServer(_routable(server.request_handler),
                            request_factory=server.request_factory,
                            handler_cancellation=server.handler_cancellation,
                            loop=server._loop, **server._kwargs)
