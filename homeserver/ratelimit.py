"""Token-bucket rate limiting per (action, key), answering M_LIMIT_EXCEEDED with retry_after_ms.

One dict of buckets, no timers: a bucket refills lazily when it is next looked at.
"""

from __future__ import annotations

import time

from homeserver.config import RateLimit
from homeserver.errors import Codes, MatrixError


class RateLimiter:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        # Per-user message limits a server admin set (homeserver/admin/users.py keeps this
        # in step with the ratelimit_overrides table); 0 per second means no limit.
        self.message_overrides: dict[str, RateLimit] = {}

    def check(self, action: str, key: str, limit: RateLimit, exempt: bool = False) -> None:
        if not self.enabled or exempt:
            return
        if action == "message" and key in self.message_overrides:
            limit = self.message_overrides[key]
            if limit.per_second <= 0 or limit.burst_count <= 0:
                return
        now = time.monotonic()
        tokens, last = self._buckets.get((action, key), (float(limit.burst_count), now))
        tokens = min(float(limit.burst_count), tokens + (now - last) * limit.per_second)
        if tokens < 1.0:
            wait_ms = int((1.0 - tokens) / limit.per_second * 1000) + 1
            self._buckets[(action, key)] = (tokens, now)
            raise MatrixError(429, Codes.LIMIT_EXCEEDED, "Too many requests",
                              retry_after_ms=wait_ms)
        self._buckets[(action, key)] = (tokens - 1.0, now)
        if len(self._buckets) > 200_000:
            self._buckets.clear()
