"""Fixtures for the admin API tests: a raw HTTP client and a server admin on the session
server (made an admin as `parley register-user --admin` does, then logged in over HTTP)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import Server
from tests.helpers import Client, User


@pytest.fixture
async def c(server: Server) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as s:
        yield Client(server.url, s)


async def make_admin(c: Client, server: Server) -> User:
    user = await c.register("adm" + secrets.token_hex(5))
    await server.hs.accounts.set_admin(user.user_id, True)
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user",
                                                   "user": user.user_id},
        "password": "pw-secret-1"})
    assert status == 200, body
    return User(body["user_id"], body["access_token"], body["device_id"])


@pytest.fixture
async def admin(c: Client, server: Server) -> User:
    return await make_admin(c, server)
