"""A scripted remote homeserver for federation tests: a real HTTPS server on loopback (with a
certificate from the test CA) that serves its signing key and answers what a test scripts,
and signs requests to the server under test with a real key. It lets a test play the other
side of the protocol exactly, as SyTest's fake servers do: answer /state_ids but not /state,
withhold /event_auth, reply with a v1 send_join only, ...

Requests it gets are recorded (`requests`), so a test can check what was asked of it.
Unscripted paths answer 404 M_UNRECOGNIZED, as a server without the endpoint would.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from federation.client import FederationClient
from federation.tls import client_context, server_context
from homeserver.events.hashing import finalize_event
from homeserver.events.room_versions import ROOM_VERSIONS
from homeserver.federation.keys import own_key_response
from homeserver.outbound import OutboundPolicy, parse_ranges
from homeserver.signing import ServerSigningKey
from tests.conftest import free_port
from tests.federation.conftest import LOOPBACK, FedServer
from tests.federation.pki import Cert

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class Remote:
    name: str
    key: ServerSigningKey
    client: FederationClient  # signed requests from this server
    routes: list[tuple[str, re.Pattern[str], Handler]] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    key_response: Callable[[], dict[str, Any]] | None = None

    def on(self, method: str, pattern: str, handler: Handler) -> None:
        """Answer `method` on paths matching `pattern` (a regex, anchored) with `handler`;
        the latest scripted route for a path wins."""
        self.routes.insert(0, (method, re.compile(pattern + "$"), handler))

    def asked(self, fragment: str) -> list[Seen]:
        return [r for r in self.requests if fragment in r.path]

    def user(self, local: str) -> str:
        return f"@{local}:{self.name}"

    def event(self, rv_id: str, pdu: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Hash and sign a PDU of ours (references given as plain ids)."""
        return finalize_event(dict(pdu), ROOM_VERSIONS[rv_id], self.key, server_name=self.name)

    async def send(self, dest: FedServer, pdus: list[dict[str, Any]],
                   edus: list[dict[str, Any]] | None = None) -> Any:
        txn = f"t{time.monotonic_ns()}"
        return await self.client.request(
            dest.name, "PUT", f"/_matrix/federation/v1/send/{txn}",
            body={"origin": self.name, "origin_server_ts": int(time.time() * 1000),
                  "pdus": pdus, "edus": edus or []})


def json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


@asynccontextmanager
async def scripted_remote(cert: Cert, ca_file: Any) -> AsyncIterator[Remote]:
    port = free_port()
    name = f"localhost:{port}"
    key = ServerSigningKey.generate(name)
    client = FederationClient(key, OutboundPolicy(parse_ranges(LOOPBACK)),
                              client_context(ca_file))
    remote = Remote(name, key, client)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        path = request.path
        remote.requests.append(Seen(request.method, path, dict(request.query), body))
        if path.startswith("/_matrix/key/v2/server"):
            if remote.key_response is not None:
                return json(remote.key_response())
            return json(own_key_response(key, [], int(time.time() * 1000) + 86_400_000))
        for method, pattern, handler in remote.routes:
            if method == request.method and pattern.match(path):
                return await handler(request)
        return json({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, 404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port,
                       ssl_context=server_context(cert.cert, cert.key))
    await site.start()
    try:
        yield remote
    finally:
        await client.close()
        await runner.cleanup()
