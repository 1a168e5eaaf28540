"""Which addresses this server may connect to on its own initiative (federation, key fetches).

One policy for all outbound HTTP: a deny list (by default the private, loopback, link-local and
reserved ranges, as Synapse's `ip_range_blacklist`) and an allow list that wins over it (loopback
tests allow 127.0.0.0/8 and ::1). It is applied to the resolved address, after DNS, so a name
that resolves into a denied range is refused as an IP literal would be.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DENY = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::1/128", "::/128", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8", "fec0::/10",
)


def parse_ranges(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses); raises ValueError on a bad one."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = parse_ranges(DEFAULT_DENY)

    def permits(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allow if net.version == ip.version):
            return True
        return not any(ip in net for net in self.deny if net.version == ip.version)
