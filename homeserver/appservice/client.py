"""HTTP requests to application services (spec "Homeserver -> Application Service API"):
transactions, user and room alias queries, third-party lookups and ping.

Every request carries `Authorization: Bearer <hs_token>` (spec v1.4; the legacy
`access_token` query parameter is not sent: an AS comparing the query to the fields it asked
for would see an extra one). Connections go through the shared outbound policy
(homeserver/outbound.py): an AS on a private or loopback address needs its range in the
policy's allow list. TLS is verified against the system CAs plus the configured extra CA file.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from homeserver.appservice.registration import AppService
from homeserver.outbound import OutboundPolicy
from homeserver.outbound_resolver import PolicyResolver

PREFIX = "/_matrix/app/v1"


class AppServiceUnreachable(Exception):
    """No answer (connection refused, TLS failure, timeout, or a denied address)."""

    def __init__(self, msg: str, timeout: bool = False) -> None:
        super().__init__(msg)
        self.timeout = timeout


class AppServiceHttpError(Exception):
    """The AS answered with a status that is not 2xx."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"application service answered {status}")
        self.status = status
        self.body = body


class AppServiceClient:
    def __init__(self, policy: OutboundPolicy, tls: ssl.SSLContext | None = None,
                 query_timeout_s: float = 10.0) -> None:
        self._policy = policy
        self._tls = tls if tls is not None else ssl.create_default_context()
        self.query_timeout_s = query_timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=PolicyResolver(self._policy),
                                               use_dns_cache=False, limit=50, ssl=self._tls))
        return self._session

    def denied_hosts(self, services: Iterable[AppService]) -> list[tuple[str, str]]:
        """(AS id, host) of the services whose URL names a loopback name or an address the
        outbound policy denies: every request to them will fail, which an operator should
        hear of at start rather than from a silent bridge."""
        out = []
        for s in services:
            host = (urlsplit(s.url).hostname or "") if s.url else ""
            address = "127.0.0.1" if host == "localhost" else host.strip("[]")
            try:
                ipaddress.ip_address(address)
            except ValueError:
                continue
            if not self._policy.permits(address):
                out.append((s.id, host))
        return out

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, service: AppService, method: str, path: str,
                      body: Any = None, query: Mapping[str, str] | None = None,
                      timeout_s: float | None = None,
                      raw: bytes | None = None) -> tuple[int, bytes]:
        """(status, body) of one request; raises AppServiceUnreachable when there is no
        answer. `path` is below the service's url, already percent-encoded."""
        if service.url is None:
            raise AppServiceUnreachable("the application service has no url")
        url = service.url + path
        host = urlsplit(url).hostname or ""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None and not self._policy.permits(str(literal)):
            raise AppServiceUnreachable(f"{host} is not an address the outbound policy permits")
        data = raw if raw is not None else orjson.dumps(body) if body is not None else None
        headers = {"Authorization": f"Bearer {service.hs_token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.query_timeout_s)
        try:
            async with self._http().request(method, url, data=data, params=query,
                                            headers=headers, timeout=timeout) as resp:
                return resp.status, await resp.read()
        except TimeoutError as e:
            raise AppServiceUnreachable("timed out", timeout=True) from e
        except (aiohttp.ClientError, OSError, ValueError) as e:
            raise AppServiceUnreachable(str(e) or type(e).__name__) from e

    async def _json(self, service: AppService, path: str,
                    query: Mapping[str, str] | None = None) -> Any:
        status, raw = await self.request(service, "GET", path, query=query)
        if not 200 <= status < 300:
            raise AppServiceHttpError(status, raw.decode("utf-8", "replace")[:1000])
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise AppServiceHttpError(status, "not JSON") from e

    # ------------------------------------------------------------------ the API

    async def send_transaction(self, service: AppService, txn_id: int, body: bytes,
                               timeout_s: float) -> None:
        """PUT /transactions/{txnId}; raises unless the AS answered 2xx in time."""
        if service.url is None:
            return  # an AS without a url takes no traffic
        status, raw = await self.request(service, "PUT", f"{PREFIX}/transactions/{txn_id}",
                                         raw=body, timeout_s=timeout_s)
        if not 200 <= status < 300:
            raise AppServiceHttpError(status, raw.decode("utf-8", "replace")[:1000])

    async def query_user(self, service: AppService, user_id: str) -> bool:
        """GET /users/{userId}: whether the AS says it now exists (2xx)."""
        try:
            status, _ = await self.request(service, "GET",
                                           f"{PREFIX}/users/{quote(user_id, safe='')}")
        except AppServiceUnreachable:
            return False
        return 200 <= status < 300

    async def query_alias(self, service: AppService, alias: str) -> bool:
        """GET /rooms/{roomAlias}: whether the AS says it made the alias (2xx)."""
        try:
            status, _ = await self.request(service, "GET",
                                           f"{PREFIX}/rooms/{quote(alias, safe='')}")
        except AppServiceUnreachable:
            return False
        return 200 <= status < 300

    async def thirdparty(self, service: AppService, kind: str, protocol: str | None,
                         query: Mapping[str, str]) -> Any:
        """GET /thirdparty/{kind}[/{protocol}] (kind: protocol, user or location); the
        parsed answer, or raises."""
        path = f"{PREFIX}/thirdparty/{kind}"
        if protocol is not None:
            path += "/" + quote(protocol, safe="")
        return await self._json(service, path, query)

    async def ping(self, service: AppService, txn_id: str | None) -> int:
        """POST /ping; the round trip in milliseconds, or raises."""
        body: dict[str, str] = {} if txn_id is None else {"transaction_id": txn_id}
        start = time.monotonic()
        status, raw = await self.request(service, "POST", f"{PREFIX}/ping", body=body,
                                         timeout_s=self.query_timeout_s)
        if not 200 <= status < 300:
            raise AppServiceHttpError(status, raw.decode("utf-8", "replace")[:1000])
        return int((time.monotonic() - start) * 1000)
