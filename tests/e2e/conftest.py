"""Fixtures for end-to-end tests: matrix-nio clients (a real third-party client) and a raw HTTP
client, both talking to the session's real server over real sockets."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nio import AsyncClient, AsyncClientConfig, LoginResponse, RegisterResponse

from tests.conftest import Server
from tests.e2e.nio_crypto import Crypto, CryptoFactory, e2ee_config
from tests.helpers import Client

PASSWORD = "e2e-password-1"

NioFactory = Callable[..., Awaitable[AsyncClient]]


def new_name(prefix: str = "u") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def nio_config() -> AsyncClientConfig:
    # No E2EE: these tests cover the plain client-server API; retries off so errors surface.
    return AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False,
                             max_timeouts=1, max_limit_exceeded=0, request_timeout=30)


@pytest.fixture
async def raw(server: Server) -> AsyncIterator[Client]:
    """tests.helpers.Client on a session without a connection cap (for many long-polls)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        yield Client(server.url, s)


@pytest.fixture
async def nio_client(server: Server) -> AsyncIterator[Callable[..., AsyncClient]]:
    """Makes AsyncClients that are closed at the end of the test."""
    clients: list[AsyncClient] = []

    def make(user: str = "", device_id: str = "") -> AsyncClient:
        c = AsyncClient(server.url, user, device_id=device_id, config=nio_config())
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


@pytest.fixture
async def nio_user(nio_client: Callable[..., AsyncClient]) -> NioFactory:
    """Registers a fresh user through nio's `register` and returns the logged-in client."""

    async def make(prefix: str = "u", password: str = PASSWORD) -> AsyncClient:
        c = nio_client()
        resp = await c.register(new_name(prefix), password)
        assert isinstance(resp, RegisterResponse), resp
        return c

    return make


async def nio_login(nio_client: Callable[..., AsyncClient], user_id: str, device_id: str,
                    password: str = PASSWORD) -> AsyncClient:
    c = nio_client(user_id, device_id)
    # A display name, because nio's /devices schema requires one (the spec lets it be absent).
    resp = await c.login(password, device_name=f"device {device_id}")
    assert isinstance(resp, LoginResponse), resp
    assert resp.device_id == device_id
    return c


@pytest.fixture
async def e2ee(server: Server, tmp_path: Path) -> AsyncIterator[CryptoFactory]:
    """Makes nio devices with encryption on: a new user (register) or a new device of an existing
    user (login); each uploads its device and one-time keys before it is handed out."""
    clients: list[AsyncClient] = []

    async def make(prefix: str = "e", user_id: str = "") -> Crypto:
        store = tmp_path / f"store{len(clients)}"
        store.mkdir()
        c = AsyncClient(server.url, user_id, store_path=str(store), config=e2ee_config())
        clients.append(c)
        if user_id:
            resp: Any = await c.login(PASSWORD, device_name="second device")
            assert isinstance(resp, LoginResponse), resp
        else:
            resp = await c.register(new_name(prefix), PASSWORD)
            assert isinstance(resp, RegisterResponse), resp
        assert c.olm is not None, "nio did not load its crypto store"
        d = Crypto(c)
        up = await d.upload_keys()
        assert up.signed_curve25519_count == c.olm.account.max_one_time_keys, up
        return d

    yield make
    for c in clients:
        await c.close()


def body_of(ev: Any) -> str:
    return str(ev.source["content"].get("body"))
