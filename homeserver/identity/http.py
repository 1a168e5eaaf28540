"""Outbound HTTP to the services a client or the operator names (identity servers, a CAS
server, reCAPTCHA): one session, the shared outbound address policy applied after DNS (so a
client cannot make the homeserver reach into a denied range by naming an identity server
there), and TLS verified against the system roots plus the operator's extra CA files."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from homeserver.outbound import OutboundPolicy
from homeserver.outbound_resolver import PolicyResolver

TIMEOUT_S = 15.0
MAX_BODY = 1024 * 1024


class ExternalError(Exception):
    """The service could not be reached, refused by the policy, or answered too much."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        """The body as JSON, or None if it is not JSON."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


class ExternalHttp:
    def __init__(self, policy: OutboundPolicy, tls: ssl.SSLContext,
                 timeout_s: float = TIMEOUT_S) -> None:
        self._policy = policy
        self._tls = tls
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=PolicyResolver(self._policy),
                                               use_dns_cache=False, limit=50, ssl=self._tls),
                timeout=self._timeout, headers={"User-Agent": "Parley"})
        return self._session

    async def request(self, method: str, url: str, *, json: Any = None,
                      data: dict[str, str] | None = None,
                      headers: dict[str, str] | None = None,
                      params: dict[str, str] | None = None) -> Reply:
        """One request; redirects are not followed (a service that answers elsewhere is
        answering something else)."""
        try:
            async with self._http().request(method, url, json=json, data=data, headers=headers,
                                            params=params, allow_redirects=False) as resp:
                body = await resp.content.read(MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    raise ExternalError(f"{url}: answer larger than {MAX_BODY} bytes")
                return Reply(resp.status, body, resp.content_type)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            raise ExternalError(f"{url}: {e or type(e).__name__}") from None
