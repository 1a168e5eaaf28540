"""Which errors count as "the database is unreachable" (a 503 and no traceback) rather than a
bug: table-driven over the errors asyncpg raises while PostgreSQL restarts."""

from __future__ import annotations

import asyncpg
import pytest

from homeserver.storage.database import is_connection_failure


def _caused(outer: Exception, cause: BaseException) -> Exception:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize("exc, outage", [
    (asyncpg.CannotConnectNowError("the database system is starting up"), True),
    (asyncpg.AdminShutdownError("terminating connection"), True),
    (asyncpg.ConnectionDoesNotExistError("connection was closed in the middle"), True),
    (ConnectionRefusedError(111, "Connection refused"), True),
    (asyncpg.InterfaceError("connection is closed"), True),
    (asyncpg.InternalClientError("cannot switch to state 11; another operation (2) is in "
                                 "progress"), True),
    (asyncpg.InternalClientError("PoolConnectionHolder.release() called on a free connection "
                                 "holder"), True),
    (_caused(RuntimeError("wrapped"), ConnectionRefusedError(111, "refused")), True),
    (asyncpg.InternalClientError("something else"), False),
    (asyncpg.UniqueViolationError("duplicate key"), False),
    (ValueError("a bug"), False),
])
def test_is_connection_failure(exc: BaseException, outage: bool) -> None:
    assert is_connection_failure(exc) is outage
