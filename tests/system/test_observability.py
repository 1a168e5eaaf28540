"""Observability: /metrics on its own listener parses with prometheus-client's parser and moves
with traffic; /health; JSON log lines; and a PostgreSQL restart (of a PostgreSQL this test
starts itself) under load answers 503 with Retry-After, logs one line at its start and one at
its end, and loses nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from homeserver.app import build_homeserver, start_listeners
from homeserver.observability.logs import JsonFormatter
from homeserver.signing import ServerSigningKey
from homeserver.storage.database import Database
from tests.conftest import free_port
from tests.conftest import test_config as make_config
from tests.helpers import Client


@asynccontextmanager
async def _serve(cfg: Any, dsn: str) -> AsyncIterator[Any]:
    db = await Database.connect(dsn, 2, 10)
    hs = await build_homeserver(cfg, db, ServerSigningKey.generate(cfg.server_name))
    runners = await start_listeners(hs)
    try:
        yield hs
    finally:
        for r in reversed(runners):
            await r.cleanup()
        await db.close()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
         **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name
               and all(dict(ls).get(k) == want for k, want in labels.items()))


async def test_metrics_parse_and_move_with_traffic(fresh_database: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    cfg = replace(make_config(tmp_path), metrics_listen_port=metrics_port)
    async with _serve(cfg, fresh_database):
        base = f"http://127.0.0.1:{cfg.listen_port}"
        murl = f"http://127.0.0.1:{metrics_port}/metrics"
        async with aiohttp.ClientSession() as s:
            async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
                async with s.get(murl) as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"].startswith("text/plain")
                    return _samples(await resp.text())

            c = Client(base, s)
            before = await scrape()
            user = await c.register()
            room = await c.create_room(user)
            for i in range(5):
                await c.send(user, room, f"m{i}")
            sync = await c.sync(user)

            async def wait_and_send() -> None:
                await asyncio.sleep(0.2)
                await c.send(user, room, "wake")

            waiter = asyncio.ensure_future(wait_and_send())
            await c.sync(user, since=sync["next_batch"], timeout=5000)
            await waiter
            after = await scrape()
            send = "/_matrix/client/{v}/rooms/{room_id}/send/{event_type}/{txn_id}"
            assert _sum(after, "parley_http_requests_total", endpoint=send, status="200") - \
                _sum(before, "parley_http_requests_total", endpoint=send, status="200") == 6
            assert _sum(after, "parley_http_request_duration_seconds_count", endpoint=send) >= 6
            assert _sum(after, "parley_events_persisted_total") - \
                _sum(before, "parley_events_persisted_total") >= 6
            assert _sum(after, "parley_event_persist_duration_seconds_count") > 0
            assert _sum(after, "parley_sync_wake_to_response_seconds_count") >= 1
            assert _sum(after, "parley_db_pool_max_connections") == 10
            assert ("process_cpu_seconds_total", ()) in after
            # (every server in this process shares the loop: the test session's server too)
            assert _sum(after, "parley_background_tasks", task="last-seen-flush") >= 1
            assert ("parley_websocket_connections", ()) in after
            assert ("parley_pusher_backlog", ()) in after

            # /metrics is not served on the client port; /health is on both
            async with s.get(base + "/metrics") as resp:
                assert resp.status == 404
            for url in (base + "/health", f"http://127.0.0.1:{metrics_port}/health"):
                async with s.get(url) as resp:
                    assert resp.status == 200 and await resp.text() == "OK"


def test_json_log_lines_carry_the_request() -> None:
    from homeserver.observability.logs import request_endpoint, request_id, request_user

    tokens = (request_id.set("abc123"), request_user.set("@a:b"),
              request_endpoint.set("/_matrix/client/{v}/sync"))
    try:
        record = logging.LogRecord("parley.access", logging.INFO, "x", 1, "%s %d", ("GET", 200),
                                   None)
        record.duration_ms = 1.5
        line = json.loads(JsonFormatter().format(record))
    finally:
        for var, tok in zip((request_id, request_user, request_endpoint), tokens, strict=True):
            var.reset(tok)
    assert line["request_id"] == "abc123" and line["user"] == "@a:b"
    assert line["endpoint"] == "/_matrix/client/{v}/sync" and line["duration_ms"] == 1.5
    assert line["msg"] == "GET 200" and line["level"] == "INFO"


async def test_request_log_lines(fresh_database: str, tmp_path: Path,
                                 caplog: pytest.LogCaptureFixture) -> None:
    cfg = replace(make_config(tmp_path), log_requests=True)
    caplog.set_level(logging.INFO, logger="parley.access")
    async with _serve(cfg, fresh_database):
        async with aiohttp.ClientSession() as s:
            c = Client(f"http://127.0.0.1:{cfg.listen_port}", s)
            user = await c.register()
            caplog.clear()
            await c.request("GET", "/account/whoami", token=user.access_token)
    lines = [r for r in caplog.records if r.name == "parley.access"]
    assert len(lines) == 1
    formatted = json.loads(JsonFormatter().format(lines[0]))
    assert formatted["status"] == 200 and formatted["method"] == "GET"
    assert formatted["duration_ms"] >= 0
    assert "/account/whoami" in formatted["msg"]


# -- a database outage ------------------------------------------------------------------------

class OwnPostgres:
    """An embedded PostgreSQL this test starts, stops and starts again (pgserver)."""

    def __init__(self, root: Path) -> None:
        import pgserver

        self.server = pgserver.get_server(root / "pg", cleanup_mode="stop")
        info = self.server._postmaster_info
        assert info is not None and info.socket_dir is not None
        self.socket_dir = info.socket_dir
        self.uri = self.server.get_uri("postgres")

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l",
                     str(self.server.log), "start")


@pytest.fixture
def own_postgres() -> Any:
    with tempfile.TemporaryDirectory(prefix="parley-outage-") as d:
        pg = OwnPostgres(Path(d))
        try:
            yield pg
        finally:
            try:
                pg.stop()
            except Exception:
                pass


async def test_database_restart_under_load(own_postgres: OwnPostgres, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    import asyncpg

    conn = await asyncpg.connect(own_postgres.uri)
    name = "parley_outage_" + secrets.token_hex(4)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    dsn = own_postgres.uri.replace("/postgres?", f"/{name}?")
    cfg = make_config(tmp_path)
    caplog.set_level(logging.WARNING)
    async with _serve(cfg, dsn):
        async with aiohttp.ClientSession() as s:
            c = Client(f"http://127.0.0.1:{cfg.listen_port}", s)
            user = await c.register()
            room = await c.create_room(user)
            acked: list[str] = []
            statuses: dict[int, int] = {}
            stop = asyncio.Event()

            async def sender(n: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    status, body = await c.request(
                        "PUT", f"/rooms/{room}/send/m.room.message/s{n}-{i}",
                        {"msgtype": "m.text", "body": f"{n}-{i}"}, user.access_token)
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        acked.append(body["event_id"])
                    else:
                        assert status == 503, body
                        assert body["errcode"] == "M_UNKNOWN" and body["retry_after_ms"] > 0
                    await asyncio.sleep(0.02)

            senders = [asyncio.ensure_future(sender(n)) for n in range(4)]
            await asyncio.sleep(0.5)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, own_postgres.stop)
            await asyncio.sleep(3.0)
            async with s.get(c.base + "/health") as resp:
                assert resp.status == 503
            # a 503 carries Retry-After
            async with s.put(c.base + f"/_matrix/client/v3/rooms/{room}/send/m.room.message/x1",
                             json={"msgtype": "m.text", "body": "x"},
                             headers={"Authorization": f"Bearer {user.access_token}"}) as resp:
                assert resp.status == 503 and int(resp.headers["Retry-After"]) >= 1
            await loop.run_in_executor(None, own_postgres.start)
            for _ in range(100):  # recovery: sends succeed again
                if statuses.get(200, 0) and acked and (await c.request(
                        "GET", "/account/whoami", token=user.access_token))[0] == 200:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*senders)
            assert statuses.get(503, 0) > 0 and set(statuses) <= {200, 503}, statuses
            after = await c.send(user, room, "after the outage")
            # nothing acknowledged was lost
            status, body = await c.request("GET", f"/rooms/{room}/messages",
                                           token=user.access_token,
                                           params={"dir": "b", "limit": "1000"})
            stored = {e["event_id"] for e in body["chunk"]}
            assert after in stored
            assert set(acked) <= stored
            async with s.get(c.base + "/health") as resp:
                assert resp.status == 200
    starts = [r for r in caplog.records if "database unreachable" in r.getMessage()]
    ends = [r for r in caplog.records if "database reachable again" in r.getMessage()]
    assert len(starts) == 1 and len(ends) == 1, [r.getMessage() for r in caplog.records]
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert not tracebacks
