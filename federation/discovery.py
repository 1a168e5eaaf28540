"""Resolving a server name to where to connect (server-server API, "Resolving server names").

The order is the spec's: an IP literal or an explicit port is contacted directly; otherwise
/.well-known/matrix/server may delegate to another name (which is resolved the same way, minus
the well-known step); then the SRV records `_matrix-fed._tcp` and the legacy `_matrix._tcp`;
then port 8448. `resolve` is pure over two injected lookups, so every branch is table-tested;
`DnsSrv` is the real SRV lookup (dnspython).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

DEFAULT_PORT = 8448
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,255}$")

WellKnown = Callable[[str], Awaitable[str | None]]  # hostname -> m.server value, or None
SrvLookup = Callable[[str], Awaitable[list[tuple[str, int]]]]  # record -> (target, port)s


@dataclass(frozen=True, slots=True)
class ServerAddress:
    host: str  # what to connect to: a hostname to resolve, or an IP
    port: int
    host_header: str  # the Host header to send
    tls_name: str  # the name the certificate must be valid for (an IP for an IP literal)


def split_server_name(name: str) -> tuple[str, int | None]:
    """(host, port) of a server name; the host of an IPv6 literal without brackets.

    Raises:
        ValueError: not a valid server name.
    """
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            raise ValueError("unterminated IPv6 literal")
        host, rest = name[1:end], name[end + 1:]
        ipaddress.IPv6Address(host)
    else:
        host, sep, port_s = name.partition(":")
        rest = sep + port_s
        if not _HOST.match(host):
            raise ValueError(f"bad server name {name!r}")
    if not rest:
        return host, None
    if not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6:
        raise ValueError(f"bad port in server name {name!r}")
    port = int(rest[1:])
    if not 0 < port < 65536:
        raise ValueError(f"bad port in server name {name!r}")
    return host, port


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _srv(host: str, srv: SrvLookup) -> tuple[str, int] | None:
    for record in (f"_matrix-fed._tcp.{host}", f"_matrix._tcp.{host}"):
        try:
            found = await srv(record)
        except Exception:
            found = []
        if found:
            return found[0]
    return None


async def resolve(name: str, well_known: WellKnown, srv: SrvLookup) -> ServerAddress:
    """Where to send requests for server `name`.

    Raises:
        ValueError: `name` (or the name it delegates to) is not a valid server name.
    """
    host, port = split_server_name(name)
    if is_ip_literal(host) or port is not None:
        return ServerAddress(host, port or DEFAULT_PORT, name, host)
    delegated = None
    try:
        delegated = await well_known(host)
    except Exception:
        delegated = None
    if delegated:
        dhost, dport = split_server_name(delegated)
        if is_ip_literal(dhost) or dport is not None:
            return ServerAddress(dhost, dport or DEFAULT_PORT, delegated, dhost)
        found = await _srv(dhost, srv)
        if found is not None:
            return ServerAddress(found[0], found[1], dhost, dhost)
        return ServerAddress(dhost, DEFAULT_PORT, dhost, dhost)
    found = await _srv(host, srv)
    if found is not None:
        return ServerAddress(found[0], found[1], host, host)
    return ServerAddress(host, DEFAULT_PORT, host, host)


class DnsSrv:
    """SRV lookups through dnspython's asyncio resolver, ordered by priority then weight."""

    async def __call__(self, record: str) -> list[tuple[str, int]]:
        import dns.asyncresolver
        import dns.exception

        try:
            answer = await dns.asyncresolver.resolve(record, "SRV", lifetime=5.0)
        except dns.exception.DNSException:
            return []
        rows = sorted(answer, key=lambda r: (r.priority, -r.weight))
        out = []
        for r in rows:
            target = str(r.target).rstrip(".")
            if target:  # "." means the service is not offered here
                out.append((target, int(r.port)))
        return out
