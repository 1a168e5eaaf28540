"""GET /health (on the client listener and the metrics listener) and GET /metrics (only on
the metrics listener, `PARLEY_METRICS_LISTEN`, so it is never public by accident)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from homeserver.observability.health import DatabaseHealth
from homeserver.observability.metrics import Metrics

HEALTH: web.AppKey[DatabaseHealth] = web.AppKey("parley_health", DatabaseHealth)
METRICS: web.AppKey[Metrics] = web.AppKey("parley_metrics", Metrics)

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """200 "OK" when the database answers, 503 when it does not."""
    if await request.app[HEALTH].ping():
        return web.Response(text="OK")
    return web.Response(status=503, text="database unreachable", headers={"Retry-After": "2"})


async def metrics(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    await m.refresh()
    return web.Response(body=m.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_metrics_app(m: Metrics, db_health: DatabaseHealth) -> web.Application:
    app = web.Application()
    app[METRICS], app[HEALTH] = m, db_health
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    return app
