"""Prometheus metrics (prometheus-client), served on their own listener
(`PARLEY_METRICS_LISTEN`, admin_api/observability.py).

Each server has its own `CollectorRegistry` (no module-level metric objects: tests run several
servers in one process). What code updates on the hot path is a counter or histogram
observation; gauges of things that already exist (waiting long-polls, open WebSockets, the
DB pool) are read when Prometheus scrapes, and the queue depths that live in the database
(federation outbox per destination, pusher backlog) are read by `refresh` just before each
scrape, so no timer or extra query runs between scrapes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from homeserver.observability.store import ObservabilityStore
from homeserver.storage.database import Database

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)


class _BackgroundTasks(Collector):
    """Named asyncio tasks now running (the background services' loops, per name)."""

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("parley_background_tasks",
                                   "Running background tasks by name", labels=["task"])
        counts: dict[str, int] = {}
        try:
            tasks = asyncio.all_tasks()
        except RuntimeError:  # no running loop (not scraped from the server's loop)
            tasks = set()
        for task in tasks:
            name = task.get_name()
            if name.startswith("Task-") or task.done():
                continue
            name = name.split("-job-")[0]  # admin jobs: one series, not one per job
            counts[name] = counts.get(name, 0) + 1
        for name, n in sorted(counts.items()):
            family.add_metric([name], n)
        yield family


class Metrics:
    def __init__(self, db: Database, store: ObservabilityStore) -> None:
        self._db = db
        self._store = store
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)
        r.register(_BackgroundTasks())
        self.requests = Counter("parley_http_requests", "HTTP requests answered",
                                ["method", "endpoint", "status"], registry=r)
        self.request_seconds = Histogram(
            "parley_http_request_duration_seconds", "Time to answer an HTTP request",
            ["method", "endpoint", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.events_persisted = Counter("parley_events_persisted",
                                        "Events written to the database", registry=r)
        self.persist_seconds = Histogram(
            "parley_event_persist_duration_seconds",
            "Time of one event write (a group commit counts once)", buckets=LATENCY_BUCKETS,
            registry=r)
        self.wake_seconds = Histogram(
            "parley_sync_wake_to_response_seconds",
            "From a notifier wake-up to the woken long-poll's answer", buckets=LATENCY_BUCKETS,
            registry=r)
        self.db_unavailable = Counter("parley_database_unavailable_responses",
                                      "Requests answered 503 during a database outage",
                                      registry=r)
        self.sync_waiters = Gauge("parley_sync_waiting_users",
                                  "Users with a long-poll waiting for news", registry=r)
        self.websockets = Gauge("parley_websocket_connections", "Open sync WebSockets",
                                registry=r)
        self.db_pool_size = Gauge("parley_db_pool_connections",
                                  "Connections in the database pool", registry=r)
        self.db_pool_idle = Gauge("parley_db_pool_idle_connections",
                                  "Idle connections in the database pool", registry=r)
        self.db_pool_max = Gauge("parley_db_pool_max_connections",
                                 "Most connections the pool opens", registry=r)
        self.federation_queue = Gauge("parley_federation_queue_depth",
                                      "PDUs waiting to be sent, per destination",
                                      ["destination"], registry=r)
        self.federation_failures = Gauge(
            "parley_federation_destination_failures",
            "Consecutive failed transactions, per destination", ["destination"], registry=r)
        self.pusher_backlog = Gauge("parley_pusher_backlog",
                                    "Notifications not yet delivered to push gateways",
                                    registry=r)
        pool = db.pool
        self.db_pool_size.set_function(lambda: pool.get_size())
        self.db_pool_idle.set_function(lambda: pool.get_idle_size())
        self.db_pool_max.set_function(lambda: pool.get_max_size())

    def watch(self, waiting_users: Callable[[], int], websockets: Callable[[], int]) -> None:
        self.sync_waiters.set_function(waiting_users)
        self.websockets.set_function(websockets)

    def written(self, count: int, seconds: float) -> None:
        self.events_persisted.inc(count)
        self.persist_seconds.observe(seconds)

    def request_done(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(method, endpoint, str(status)).inc()
        self.request_seconds.labels(method, endpoint, str(status)).observe(seconds)

    async def refresh(self) -> None:
        """Read the queue depths kept in the database (skipped when it is unreachable)."""
        try:
            async with asyncio.timeout(2.0), self._db.connection() as conn:
                queues = await self._store.federation_queues(conn)
                backlog = await self._store.pusher_backlog(conn)
        except Exception:
            return
        self.federation_queue.clear()
        self.federation_failures.clear()
        for q in queues:
            self.federation_queue.labels(q["destination"]).set(int(q["depth"]))
            self.federation_failures.labels(q["destination"]).set(int(q["failures"]))
        self.pusher_backlog.set(backlog)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
