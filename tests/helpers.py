"""Small client for tests that need raw HTTP (error codes, exact bodies): like Synapse's
RestHelper, it talks to the real server over a real socket."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class User:
    user_id: str
    access_token: str
    device_id: str


class Client:
    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base = base_url
        self.session = session

    async def request(self, method: str, path: str, body: Any = None,
                      token: str | None = None, raw: bytes | None = None,
                      params: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = self.base + (path if path.startswith(("/_matrix", "/.well", "/_synapse"))
                           else "/_matrix/client/v3" + path)
        kwargs: dict[str, Any] = {"headers": headers, "params": params}
        if raw is not None:
            kwargs["data"] = raw
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, url, **kwargs) as resp:
            try:
                data = await resp.json(content_type=None)
            except Exception:
                data = await resp.text()
            return resp.status, data

    async def register(self, localpart: str | None = None, password: str = "pw-secret-1",
                       device_id: str | None = None) -> User:
        localpart = localpart or "u" + secrets.token_hex(5)
        body: dict[str, Any] = {"username": localpart, "password": password,
                                "auth": {"type": "m.login.dummy"}}
        if device_id:
            body["device_id"] = device_id
        status, data = await self.request("POST", "/register", body)
        assert status == 200, data
        return User(data["user_id"], data["access_token"], data["device_id"])

    async def create_room(self, user: User, **body: Any) -> str:
        status, data = await self.request("POST", "/createRoom", body, user.access_token)
        assert status == 200, data
        return str(data["room_id"])

    async def send(self, user: User, room_id: str, text: str, txn: str | None = None) -> str:
        txn = txn or secrets.token_hex(8)
        status, data = await self.request(
            "PUT", f"/rooms/{room_id}/send/m.room.message/{txn}",
            {"msgtype": "m.text", "body": text}, user.access_token)
        assert status == 200, data
        return str(data["event_id"])

    async def join(self, user: User, room: str) -> None:
        status, data = await self.request("POST", f"/join/{room}", {}, user.access_token)
        assert status == 200, data

    async def sync(self, user: User, since: str | None = None, timeout: int = 0,
                   **params: str) -> dict[str, Any]:
        p = {"timeout": str(timeout), **params}
        if since:
            p["since"] = since
        status, data = await self.request("GET", "/sync", token=user.access_token, params=p)
        assert status == 200, data
        return dict(data)
