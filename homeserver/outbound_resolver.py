"""DNS answers filtered by the outbound policy, for aiohttp clients that connect to addresses
users choose (push gateways, URL previews): checked after resolution, so a name that points
into a denied range is refused like the address itself."""

from __future__ import annotations

import socket
from collections.abc import Callable

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from homeserver.outbound import OutboundPolicy


class PolicyResolver(AbstractResolver):
    def __init__(self, policy: OutboundPolicy,
                 refuse: Callable[[str], Exception] = OSError) -> None:
        self._policy = policy
        self._refuse = refuse  # builds what to raise, from a message
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        infos = await self._inner.resolve(host, port, family)
        allowed = [i for i in infos if self._policy.permits(i["host"])]
        if not allowed:
            raise self._refuse(f"{host} resolves to no address the outbound policy permits")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
