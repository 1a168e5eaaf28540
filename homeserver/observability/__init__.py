"""Seeing that the server is healthy (docs/admin.md): Prometheus metrics, the database's
health (503 with Retry-After while PostgreSQL is unreachable), and request logs as text or
JSON lines."""
