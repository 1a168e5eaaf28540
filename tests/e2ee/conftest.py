"""Raw-HTTP client for the e2ee endpoint tests, bound to the session server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import Server
from tests.helpers import Client


@pytest.fixture
async def c(server: Server) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as s:
        yield Client(server.url, s)
