"""Registration tokens (admin API and m.login.registration_token), reports (client endpoints
and the admin event_reports API) and server notices, over HTTP."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Server, start_server
from tests.conftest import test_config as make_config
from tests.helpers import Client, User

A = "/_synapse/admin"


async def test_registration_token_crud(c: Client, admin: User) -> None:
    t = admin.access_token
    name = "tok" + secrets.token_hex(4)
    status, body = await c.request("POST", A + "/v1/registration_tokens/new",
                                   {"token": name, "uses_allowed": 2}, token=t)
    assert status == 200, body
    assert body == {"token": name, "uses_allowed": 2, "pending": 0, "completed": 0,
                    "expiry_time": None}
    status, body = await c.request("POST", A + "/v1/registration_tokens/new",
                                   {"token": name}, token=t)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await c.request("POST", A + "/v1/registration_tokens/new",
                                   {"length": 20}, token=t)
    assert status == 200 and len(body["token"]) == 20
    generated = body["token"]
    for bad in ({"token": "no spaces"}, {"uses_allowed": -1}, {"length": 65},
                {"expiry_time": 1000}, {"token": "x" * 65}):
        status, body = await c.request("POST", A + "/v1/registration_tokens/new", bad,
                                       token=t)
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", bad
    status, body = await c.request("GET", A + f"/v1/registration_tokens/{name}", token=t)
    assert status == 200 and body["uses_allowed"] == 2
    expiry = int(time.time() * 1000) + 3_600_000
    status, body = await c.request("PUT", A + f"/v1/registration_tokens/{name}",
                                   {"uses_allowed": None, "expiry_time": expiry}, token=t)
    assert status == 200 and body["uses_allowed"] is None and body["expiry_time"] == expiry
    status, body = await c.request("GET", A + "/v1/registration_tokens", token=t)
    assert {name, generated} <= {x["token"] for x in body["registration_tokens"]}
    status, body = await c.request("GET", A + "/v1/registration_tokens", token=t,
                                   params={"valid": "false"})
    assert name not in {x["token"] for x in body["registration_tokens"]}
    status, _ = await c.request("DELETE", A + f"/v1/registration_tokens/{name}", token=t)
    assert status == 200
    status, body = await c.request("GET", A + f"/v1/registration_tokens/{name}", token=t)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("DELETE", A + f"/v1/registration_tokens/{name}", token=t)
    assert status == 404


@pytest.fixture
async def token_server(fresh_database: str, tmp_path: Path) -> AsyncIterator[Server]:
    cfg = replace(make_config(tmp_path), registration="token")
    async for s in start_server(cfg, fresh_database):
        yield s


async def test_registration_token_is_used_by_registration(token_server: Server) -> None:
    async with aiohttp.ClientSession() as s:
        c = Client(token_server.url, s)
        owner = "root" + secrets.token_hex(3)
        await token_server.hs.accounts.register(owner, "pw-secret-1", is_admin=True)
        status, body = await c.request("POST", "/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": owner},
            "password": "pw-secret-1"})
        admin = body["access_token"]
        status, body = await c.request("POST", A + "/v1/registration_tokens/new",
                                       {"uses_allowed": 1}, token=admin)
        token = body["token"]

        async def register(name: str) -> tuple[int, dict[str, object]]:
            status, body = await c.request("POST", "/register", {
                "username": name, "password": "pw-secret-1"})
            assert status == 401
            session = body["session"]
            return await c.request("POST", "/register", {
                "username": name, "password": "pw-secret-1",
                "auth": {"type": "m.login.registration_token", "token": token,
                         "session": session}})

        status, body = await register("first")
        assert status == 200, body
        status, body = await register("second")  # the one use is spent
        assert status in (401, 403), body
        status, body = await c.request("GET", A + f"/v1/registration_tokens/{token}",
                                       token=admin)
        assert body["completed"] == 1


async def test_reports(c: Client, admin: User) -> None:
    t = admin.access_token
    owner, reporter, outsider = await c.register(), await c.register(), await c.register()
    room = await c.create_room(owner, preset="public_chat", name="Reported room")
    await c.join(reporter, room)
    bad = await c.send(owner, room, "something nasty")
    status, body = await c.request("POST", f"/rooms/{room}/report/{bad}",
                                   {"reason": "nasty", "score": -100}, reporter.access_token)
    assert status == 200 and body == {}
    # unknown event, an event the reporter cannot see: 404
    status, body = await c.request("POST", f"/rooms/{room}/report/$nope", {"reason": "x"},
                                   reporter.access_token)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    private = await c.create_room(owner)
    hidden = await c.send(owner, private, "secret")
    status, body = await c.request("POST", f"/rooms/{private}/report/{hidden}",
                                   {"reason": "x"}, outsider.access_token)
    assert status == 404
    status, body = await c.request("POST", f"/rooms/{room}/report", {"reason": "bad room"},
                                   outsider.access_token)
    assert status == 200
    status, body = await c.request("POST", f"/rooms/{room}/report", {},
                                   outsider.access_token)
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    status, body = await c.request("POST", "/rooms/!nope:parley.test/report",
                                   {"reason": "x"}, outsider.access_token)
    assert status == 404
    status, body = await c.request("POST", f"/users/{owner.user_id}/report",
                                   {"reason": "spammer"}, outsider.access_token)
    assert status == 200
    status, body = await c.request("POST", "/users/@ghost:parley.test/report",
                                   {"reason": "x"}, outsider.access_token)
    assert status == 404

    status, body = await c.request("GET", A + "/v1/event_reports", token=t,
                                   params={"room_id": room})
    assert status == 200 and body["total"] == 1
    report = body["event_reports"][0]
    assert report["event_id"] == bad and report["user_id"] == reporter.user_id
    assert report["reason"] == "nasty" and report["score"] == -100
    assert report["sender"] == owner.user_id and report["name"] == "Reported room"
    status, body = await c.request("GET", A + f"/v1/event_reports/{report['id']}", token=t)
    assert status == 200 and body["event_json"]["content"]["body"] == "something nasty"
    status, body = await c.request("GET", A + "/v1/event_reports", token=t,
                                   params={"event_sender_user_id": owner.user_id,
                                           "limit": "0"})
    assert body["total"] >= 1 and body["event_reports"] == [] and body["next_token"] == 0
    status, body = await c.request("GET", A + "/v1/event_reports/abc", token=t)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, _ = await c.request("DELETE", A + f"/v1/event_reports/{report['id']}", token=t)
    assert status == 200
    status, body = await c.request("GET", A + f"/v1/event_reports/{report['id']}", token=t)
    assert status == 404


async def test_server_notices(c: Client, admin: User) -> None:
    t = admin.access_token
    user = await c.register()
    status, body = await c.request("POST", A + "/v1/send_server_notice", {
        "user_id": user.user_id, "content": {"msgtype": "m.text", "body": "maintenance"}},
        token=t)
    assert status == 200, body
    first = body["event_id"]
    sync = await c.sync(user)
    invites = sync["rooms"]["invite"]
    assert len(invites) == 1
    room = next(iter(invites))
    # the invite cannot be rejected (spec "Server Notices"); leaving after joining is allowed
    status, body = await c.request("POST", f"/rooms/{room}/leave", {}, user.access_token)
    assert status == 403 and body["errcode"] == "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM"
    await c.join(user, room)
    status, body = await c.request("GET", f"/user/{user.user_id}/rooms/{room}/tags",
                                   token=user.access_token)
    assert "m.server_notice" in body["tags"]
    status, body = await c.request("POST", A + "/v1/send_server_notice", {
        "user_id": user.user_id, "content": {"msgtype": "m.text", "body": "done"}}, token=t)
    assert status == 200
    status, body = await c.request("GET", f"/rooms/{room}/messages", token=user.access_token,
                                   params={"dir": "b"})
    bodies = [e["content"].get("body") for e in body["chunk"]
              if e["type"] == "m.room.message"]
    assert bodies == ["done", "maintenance"]
    assert body["chunk"][0]["sender"] == "@notices:parley.test"
    assert first in {e["event_id"] for e in body["chunk"]}
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, user.access_token)
    assert status == 200
    status, body = await c.request("POST", A + "/v1/send_server_notice", {
        "user_id": user.user_id, "content": {"msgtype": "m.text", "body": "again"}}, token=t)
    assert status == 200  # the user is invited back to the same room
    sync = await c.sync(user)
    assert list(sync["rooms"]["invite"]) == [room]
    for bad in ({"user_id": "@ghost:parley.test", "content": {"body": "x"}},
                {"user_id": user.user_id}, {"content": {}}):
        status, body = await c.request("POST", A + "/v1/send_server_notice", bad, token=t)
        assert status == 400, (bad, body)
