"""What the request wrapper (homeserver/http.py `matrix_errors`) reports each request to:
metrics, the database's health, and the request log line."""

from __future__ import annotations

import logging
import secrets

from aiohttp import web

from homeserver.errors import Codes, MatrixError
from homeserver.observability.health import RETRY_AFTER_S, DatabaseHealth, is_outage
from homeserver.observability.logs import (
    access_log,
    request_endpoint,
    request_id,
    request_user,
)
from homeserver.observability.metrics import Metrics


class Observer:
    def __init__(self, metrics: Metrics | None, health: DatabaseHealth,
                 log_requests: bool) -> None:
        self.metrics = metrics
        self.health = health
        self.log_requests = log_requests

    def begin(self, request: web.Request) -> tuple[str | None, str | None, str | None] | None:
        """Set the request's log fields; the state is what `end` puts back: the fields' values
        from before, or None for "none were set" (a request's own task, as aiohttp gives each,
        starts with none). Not the variables' reset tokens: a parked long-poll would hold
        three of them (~0.2 kB) for as long as it waits."""
        before = (request_id.get(), request_user.get(), request_endpoint.get())
        request_id.set(secrets.token_hex(6))
        request_user.set(None)
        request_endpoint.set(endpoint_of(request))
        return None if before == (None, None, None) else before

    def unavailable(self, exc: BaseException) -> MatrixError | None:
        """The 503 for a request that failed because the database is unreachable."""
        if not is_outage(exc):
            return None
        self.health.failed(exc)
        if self.metrics is not None:
            self.metrics.db_unavailable.inc()
        return MatrixError(503, Codes.UNKNOWN, "The database is unavailable; try again soon",
                           retry_after_ms=RETRY_AFTER_S * 1000)

    def end(self, request: web.Request, status: int, seconds: float,
            before: tuple[str | None, str | None, str | None] | None) -> None:
        endpoint = request_endpoint.get() or "unknown"
        if self.metrics is not None:
            self.metrics.request_done(request.method, endpoint, status, seconds)
        if self.log_requests and access_log.isEnabledFor(logging.INFO):
            access_log.info("%s %s %d %.1f ms", request.method, endpoint, status,
                            seconds * 1000, extra={"method": request.method,
                                                   "status": status,
                                                   "duration_ms": round(seconds * 1000, 2)})
        for var, value in zip((request_id, request_user, request_endpoint),
                              before or (None, None, None), strict=True):
            var.set(value)


def endpoint_of(request: web.Request) -> str:
    """The route's pattern (bounded label values), not the path with its ids."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is not None:
        return str(resource.canonical)
    return "unmatched"
