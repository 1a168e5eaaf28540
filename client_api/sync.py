"""GET /sync: the long poll. (The WebSocket upgrade of the same request is issue 3.)"""

from __future__ import annotations

from collections import OrderedDict

from aiohttp import web

from client_api import websocket
from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.events.filter import SyncFilter
from homeserver.http import (
    json_response,
    park,
    parse_json_object,
    query_bool,
    query_int,
    validate,
)
from homeserver.streams.tokens import SyncToken

routes = web.RouteTableDef()

MAX_CACHED_FILTERS = 1024
MAX_CACHED_INLINE_CHARS = 4096


class SyncFilters:
    """Parsed sync filters, shared by the requests that name the same one.

    Clients send the same filter with every poll (by id, or the same inline JSON), and a parked
    poll keeps its filter for as long as it waits: sharing one parsed `SyncFilter` (immutable)
    saves the parse, the schema check and a database read per request, and ~0.8 kB per parked
    poll. Stored filters never change once created, so an id's parse stays right; only parses
    that succeeded are kept, least recently used first out."""

    def __init__(self, size: int = MAX_CACHED_FILTERS) -> None:
        self._size = size
        self._parsed: OrderedDict[tuple[str, str], SyncFilter] = OrderedDict()

    def _get(self, key: tuple[str, str]) -> SyncFilter | None:
        flt = self._parsed.get(key)
        if flt is not None:
            self._parsed.move_to_end(key)
        return flt

    def _put(self, key: tuple[str, str], flt: SyncFilter) -> None:
        self._parsed[key] = flt
        if len(self._parsed) > self._size:
            self._parsed.popitem(last=False)

    async def get(self, request: web.Request, user_id: str) -> SyncFilter:
        raw = request.query.get("filter")
        if raw is None:
            return SyncFilter()
        if raw.lstrip().startswith("{"):
            key = ("", raw)  # the same text is the same filter, whoever sends it
            flt = self._get(key)
            if flt is None:
                body = parse_json_object(raw, "filter")
                validate(body, "filter")  # the same schema as POST /user/{userId}/filter
                flt = SyncFilter.parse(body)
                if len(raw) <= MAX_CACHED_INLINE_CHARS:
                    self._put(key, flt)
            return flt
        key = (user_id, raw)
        flt = self._get(key)
        if flt is None:
            flt = SyncFilter.parse(await ctx(request).filters.get_filter(user_id, raw))
            self._put(key, flt)
        return flt


FILTERS: web.AppKey[SyncFilters] = web.AppKey("parley_sync_filters", SyncFilters)


def setup(app: web.Application) -> None:
    """Give the app its filter cache (called in make_app)."""
    app[FILTERS] = SyncFilters()


def _since(request: web.Request) -> SyncToken | None:
    """The `since` token (a function of its own so that the handler, whose frame a parked poll
    keeps, holds the parsed token but not also its text)."""
    raw = request.query.get("since")
    return SyncToken.parse(raw) if raw else None


@routes.get("/_matrix/client/{v:(v3|r0)}/sync")
async def sync(request: web.Request) -> web.StreamResponse:
    requester = await auth(request)
    c = ctx(request)
    since = _since(request)
    timeout = query_int(request, "timeout", 0, 0, 600_000)
    full_state = query_bool(request, "full_state", False)
    set_presence = request.query.get("set_presence", "online")
    if set_presence not in ("online", "offline", "unavailable"):
        raise MatrixError(400, Codes.INVALID_PARAM, "invalid set_presence")
    flt = await request.app[FILTERS].get(request, requester.user_id)
    if websocket.is_upgrade(request):
        return await websocket.serve(request, requester, since, flt, full_state, set_presence)
    if c.presence is not None:
        await c.presence.heartbeat(requester.user_id, requester.device_id, set_presence,
                                   grace_ms=timeout)
    if since is not None and timeout > 0 and not full_state:
        park(request)  # this one may wait long
    result = await c.sync.sync(requester, since, flt, timeout, full_state)
    return json_response(result.body)
