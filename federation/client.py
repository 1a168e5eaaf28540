"""Outbound federation requests: discovery, the outbound address policy, TLS, X-Matrix.

Every request resolves the destination (federation/discovery.py, cached for a while), resolves
the host to addresses itself and connects only to one the outbound policy permits (so a name
cannot smuggle a private address past it), verifies the certificate against the name the spec
says (`tls_name`), and signs the request with our key unless it is a key request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import orjson
from yarl import URL

from federation.discovery import (
    DnsSrv,
    ServerAddress,
    SrvLookup,
    is_ip_literal,
    resolve,
    split_server_name,
)
from federation.xmatrix import sign_request
from homeserver.federation.transport import RemoteError, Unreachable
from homeserver.outbound import OutboundPolicy
from homeserver.signing import ServerSigningKey

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
ADDRESS_CACHE_S = 600.0


class FederationError(RemoteError):
    """The remote answered with an error (`status` >= 300) or with a body that is not JSON."""


class FederationUnreachable(Unreachable):
    """No permitted address answered (refused by policy, DNS, connection, TLS, timeout)."""


class FederationClient:
    def __init__(self, key: ServerSigningKey, policy: OutboundPolicy, ssl_ctx: ssl.SSLContext,
                 srv: SrvLookup | None = None, well_known_port: int = 443,
                 timeout_s: float = 60.0) -> None:
        self.key = key
        self._policy = policy
        self._ssl = ssl_ctx
        self._srv: SrvLookup = srv or DnsSrv()
        self._well_known_port = well_known_port
        self._timeout = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._addresses: dict[str, tuple[float, ServerAddress]] = {}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=200, limit_per_host=20,
                                               use_dns_cache=False),
                auto_decompress=True)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------ where to connect

    async def _ips(self, host: str, port: int) -> list[str]:
        if is_ip_literal(host):
            ips = [host]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM)
            except OSError as e:
                raise FederationUnreachable(f"cannot resolve {host}: {e}") from e
            ips = list(dict.fromkeys(str(i[4][0]) for i in infos))
        allowed = [ip for ip in ips if self._policy.permits(ip)]
        if not allowed:
            raise FederationUnreachable(f"{host} resolves to no permitted address")
        return allowed

    async def _well_known(self, host: str) -> str | None:
        addr = ServerAddress(host, self._well_known_port,
                             host if self._well_known_port == 443
                             else f"{host}:{self._well_known_port}", host)
        try:
            status, body = await self._send(addr, "GET", "/.well-known/matrix/server", None,
                                            None, timeout=10.0)
        except FederationUnreachable:
            return None
        if status != 200 or not isinstance(body, dict):
            return None
        server = body.get("m.server")
        if not isinstance(server, str):
            return None
        try:
            split_server_name(server)
        except ValueError:
            return None
        return server

    async def address(self, destination: str) -> ServerAddress:
        cached = self._addresses.get(destination)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            addr = await resolve(destination, self._well_known, self._srv)
        except ValueError as e:
            raise FederationUnreachable(str(e)) from e
        self._addresses[destination] = (now + ADDRESS_CACHE_S, addr)
        return addr

    # ------------------------------------------------------------------ requests

    async def _send(self, addr: ServerAddress, method: str, uri: str, body: bytes | None,
                    auth: str | None, timeout: float) -> tuple[int, Any]:
        headers = {"Host": addr.host_header}
        if auth is not None:
            headers["Authorization"] = auth
        if body is not None:
            headers["Content-Type"] = "application/json"
        last: Exception | None = None
        for ip in await self._ips(addr.host, addr.port):
            host = f"[{ip}]" if ":" in ip else ip
            url = URL(f"https://{host}:{addr.port}{uri}", encoded=True)
            try:
                async with self._http().request(
                        method, url, data=body, headers=headers, allow_redirects=False,
                        server_hostname=addr.tls_name,
                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                    # read(n) gives what has arrived (up to n), not the whole body: a large
                    # answer (a send_join of a big room) comes in many chunks.
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        size += len(chunk)
                        if size > MAX_RESPONSE_BYTES:
                            raise FederationError(resp.status, {"error": "response too large"})
                        chunks.append(chunk)
                    raw = b"".join(chunks)
                    try:
                        data = orjson.loads(raw) if raw else None
                    except orjson.JSONDecodeError:
                        data = raw[:200].decode(errors="replace")
                    return resp.status, data
            except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as e:
                last = e
                continue
        raise FederationUnreachable(f"{addr.host}:{addr.port}: {last}")

    async def request(self, destination: str, method: str, uri_path: str, *,
                      query: dict[str, Any] | None = None, body: Any = None,
                      signed: bool = True, timeout: float | None = None) -> Any:
        """A JSON request to `destination`; returns the decoded JSON of a 2xx answer.

        Raises:
            FederationError: the remote answered with a non-2xx status or non-JSON.
            FederationUnreachable: it could not be reached.
        """
        uri = uri_path
        if query:
            uri += "?" + urlencode(query, doseq=True, quote_via=quote)
        raw = orjson.dumps(body) if body is not None else None
        auth = sign_request(self.key, method, uri, destination, body) if signed else None
        addr = await self.address(destination)
        status, data = await self._send(addr, method, uri, raw, auth, timeout or self._timeout)
        if not 200 <= status < 300 or not isinstance(data, (dict, list)):
            raise FederationError(status, data)
        return data

    # ------------------------------------------------------------------ streamed answers

    @asynccontextmanager
    async def stream(self, destination: str, uri: str, *, signed: bool = True,
                     timeout: float | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """A GET of `uri` (path and query, encoded) on `destination` whose answer, of any
        status, the caller reads as it arrives (media). Raises FederationUnreachable."""
        headers: dict[str, str] = {}
        if signed:
            headers["Authorization"] = sign_request(self.key, "GET", uri, destination, None)
        addr = await self.address(destination)
        headers["Host"] = addr.host_header
        async with self._open("https", addr.host, addr.port, addr.tls_name, uri, headers,
                              timeout or self._timeout) as resp:
            yield resp

    @asynccontextmanager
    async def stream_url(self, url: str, *, timeout: float | None = None
                         ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A plain GET of an http(s) URL another server pointed us to (a media `Location`),
        connecting only to addresses the outbound policy permits; redirects are not
        followed. Raises FederationUnreachable."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as e:
            raise FederationUnreachable(f"bad URL: {e}") from e
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FederationUnreachable("not an http(s) URL")
        host = parts.hostname
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Host": parts.netloc.rpartition("@")[2]}
        async with self._open(parts.scheme, host, port, host, target, headers,
                              timeout or self._timeout) as resp:
            yield resp

    @asynccontextmanager
    async def _open(self, scheme: str, host: str, port: int, tls_name: str, target: str,
                    headers: dict[str, str], timeout: float
                    ) -> AsyncIterator[aiohttp.ClientResponse]:
        last: Exception | None = None
        for ip in await self._ips(host, port):
            literal = f"[{ip}]" if ":" in ip else ip
            url = URL(f"{scheme}://{literal}:{port}{target}", encoded=True)
            try:
                resp = await self._http().get(
                    url, headers=headers, allow_redirects=False,
                    server_hostname=tls_name if scheme == "https" else None,
                    timeout=aiohttp.ClientTimeout(sock_connect=min(timeout, 20.0),
                                                  sock_read=timeout))
            except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as e:
                last = e
                continue
            try:
                yield resp
            finally:
                resp.release()
            return
        raise FederationUnreachable(f"{host}:{port}: {last}")

    # ------------------------------------------------------------------ RemoteKeySource

    async def fetch_server_keys(self, server_name: str) -> Any:
        return await self.request(server_name, "GET", "/_matrix/key/v2/server", signed=False,
                                  timeout=15.0)

    async def query_notary(self, notary: str, server_name: str, key_ids: list[str]) -> Any:
        body: dict[str, Any] = {"server_keys": {server_name: {k: {} for k in key_ids}}}
        resp = await self.request(notary, "POST", "/_matrix/key/v2/query", body=body,
                                  signed=False, timeout=15.0)
        return resp.get("server_keys") if isinstance(resp, dict) else None
