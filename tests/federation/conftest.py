"""Federating Parley servers for tests: each with its own database, signing key, client port
and TLS federation port on loopback, certificates from a local CA made by the test run.

Server names carry the federation port (`127.0.0.1:PORT` or `localhost:PORT`), so discovery
contacts them directly, as the spec says for explicit ports; the outbound policy allows
loopback explicitly, as an operator's test setup would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from federation.tls import client_context
from homeserver.config import Config
from homeserver.signing import ServerSigningKey
from tests.conftest import PgAdmin, free_port, test_config
from tests.federation.pki import Cert, LocalCA
from tests.federation.synapse_peer import Synapse, start_synapse, wait_until_up
from tests.helpers import Client

LOOPBACK = ("127.0.0.0/8", "::1/128")


@pytest.fixture(scope="session")
def local_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return LocalCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def server_cert(local_ca: LocalCA) -> Cert:
    return local_ca.issue("server")


@dataclass
class FedServer:
    name: str
    config: Config
    hs: Any
    client_url: str
    fed_url: str
    key: ServerSigningKey
    http: aiohttp.ClientSession  # plain HTTP for the client API

    @property
    def client(self) -> Client:
        return Client(self.client_url, self.http)


def fed_config(tmp: Path, cert: Cert, ca_file: Path | None, host: str = "127.0.0.1",
               **overrides: Any) -> Config:
    port = free_port()
    cfg = test_config(
        tmp, server_name=f"{host}:{port}", federation_enabled=True,
        federation_listen_host="127.0.0.1", federation_listen_port=port,
        tls_cert_path=cert.cert, tls_key_path=cert.key, federation_ca_file=ca_file,
        outbound_allow=LOOPBACK, old_signing_keys_path=tmp / "signing.key.old")
    return replace(cfg, **overrides)


@asynccontextmanager
async def run_server(config: Config, dsn: str, key: ServerSigningKey | None = None
                     ) -> AsyncIterator[FedServer]:
    from homeserver.app import build_homeserver, start_listeners
    from homeserver.storage.database import Database

    if key is None:
        if config.signing_key_path.exists():
            key = ServerSigningKey.from_file(config.signing_key_path, config.server_name)
        else:
            key = ServerSigningKey.generate(config.server_name)
            key.save(config.signing_key_path)
    db = await Database.connect(dsn, 2, 10)
    try:
        hs = await build_homeserver(config, db, key)
        runners = await start_listeners(hs)
        try:
            async with aiohttp.ClientSession() as http:
                yield FedServer(
                    config.server_name, config, hs,
                    f"http://{config.listen_host}:{config.listen_port}",
                    f"https://{config.federation_listen_host}:{config.federation_listen_port}",
                    key, http)
        finally:
            for r in reversed(runners):
                await r.cleanup()
    finally:
        await db.close()


Factory = Callable[..., Any]


@pytest.fixture
async def make_server(pg_admin: PgAdmin, tmp_path_factory: pytest.TempPathFactory,
                      server_cert: Cert, local_ca: LocalCA) -> AsyncIterator[Factory]:
    """`await make_server(**config overrides)`: a federating server with a fresh database,
    stopped (and its database dropped) at the end of the test."""
    async with AsyncExitStack() as stack:
        made: list[str] = []

        async def make(host: str = "127.0.0.1", dsn: str | None = None,
                       config: Config | None = None, **overrides: Any) -> FedServer:
            if dsn is None:
                name = await pg_admin.create()
                made.append(name)
                dsn = pg_admin.dsn_for(name)
            if config is None:
                config = fed_config(tmp_path_factory.mktemp("fed"), server_cert,
                                    local_ca.ca_file, host, **overrides)
            return await stack.enter_async_context(run_server(config, dsn))

        try:
            yield make
        finally:
            await stack.aclose()
            for name in made:
                await pg_admin.drop(name)



@asynccontextmanager
async def _running_synapse(tmp_path: Path, server_cert: Cert, local_ca: LocalCA,
                           **options: Any) -> AsyncIterator[tuple[Synapse, Client]]:
    """Synapse starts and stops in a worker thread: both block for seconds (a venv on first use)."""
    loop = asyncio.get_running_loop()
    s = await loop.run_in_executor(None, lambda: start_synapse(
        tmp_path, server_cert, local_ca.ca_file, **options))
    try:
        await loop.run_in_executor(None, wait_until_up, s, local_ca.ca_file)
        connector = aiohttp.TCPConnector(ssl=client_context(local_ca.ca_file))
        async with aiohttp.ClientSession(connector=connector) as http:
            yield s, Client(s.url, http)
    finally:
        await loop.run_in_executor(None, s.stop)


@pytest.fixture
async def synapse(tmp_path: Path, server_cert: Cert, local_ca: LocalCA) -> AsyncIterator[
        tuple[Synapse, Client]]:
    """A real Synapse from PyPI as a federation peer, with a client session that trusts the CA."""
    async with _running_synapse(tmp_path, server_cert, local_ca) as peer:
        yield peer


@pytest.fixture
async def synapse_p(tmp_path: Path, server_cert: Cert, local_ca: LocalCA) -> AsyncIterator[
        tuple[Synapse, Client]]:
    """The same with presence on (Synapse's test config has it off)."""
    async with _running_synapse(tmp_path, server_cert, local_ca, presence=True) as peer:
        yield peer
