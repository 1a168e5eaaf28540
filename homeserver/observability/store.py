"""SQL the metrics and the health check read: queue depths and a liveness ping."""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Conn


class ObservabilityStore:
    async def ping(self, conn: Conn) -> None:
        await conn.fetchval("SELECT 1")

    async def federation_queues(self, conn: Conn) -> list[asyncpg.Record]:
        """Per destination: PDUs waiting in the outbox and consecutive failures."""
        return list(await conn.fetch(
            "SELECT d.destination, COALESCE(o.n, 0) AS depth, COALESCE(f.failures, 0)"
            " AS failures FROM (SELECT destination FROM federation_outbox UNION"
            " SELECT destination FROM federation_destinations) d"
            " LEFT JOIN (SELECT destination, count(*) AS n FROM federation_outbox"
            "            GROUP BY destination) o ON o.destination = d.destination"
            " LEFT JOIN federation_destinations f ON f.destination = d.destination"))

    async def pusher_backlog(self, conn: Conn) -> int:
        """Notifications past their pusher's position, summed over pushers."""
        return int(await conn.fetchval(
            "SELECT count(*) FROM pushers p JOIN push_notifications n"
            " ON n.user_id = p.user_id AND n.stream_ordering > p.position"))
