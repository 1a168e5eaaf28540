"""What clients started on one server process is honoured by the next one: user-interactive auth
sessions across a real restart, and UIA sessions and transaction ids (room events, to-device)
on a second process sharing the database.

The servers are real `parley run` child processes on a database of their own.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import Client, User
from tests.system.proc import ServerProcess, open_server_env

TOKEN = "let-me-in-" + secrets.token_hex(4)


def _password_auth(user: User, session: str, password: str) -> dict[str, Any]:
    return {"type": "m.login.password", "session": session, "password": password,
            "identifier": {"type": "m.id.user", "user": user.user_id}}


async def _start(c: Client, method: str, path: str, body: dict[str, Any],
                 user: User | None = None) -> str:
    status, reply = await c.request(method, path, body, user.access_token if user else None)
    assert status == 401, reply
    return str(reply["session"])


async def _login(c: Client, user_id: str, password: str, device_id: str | None = None
                 ) -> tuple[int, Any]:
    body: dict[str, Any] = {"type": "m.login.password", "password": password,
                            "identifier": {"type": "m.id.user", "user": user_id}}
    if device_id:
        body["device_id"] = device_id
    return await c.request("POST", "/login", body)


async def test_uia_flows_survive_a_restart(fresh_database: str, tmp_path: Path) -> None:
    config = tmp_path / "homeserver.yaml"
    config.write_text(f"server_name: restart.test\nregistration:\n  tokens: [{TOKEN}]\n")
    env = open_server_env(fresh_database, tmp_path / "data", PARLEY_REGISTRATION="token",
                          PARLEY_CONFIG=str(config), PARLEY_SERVER_NAME="restart.test")
    hs = ServerProcess(env, tmp_path, tmp_path / "server.log")
    try:
        hs.start()
        await hs.wait_ready()
        async with aiohttp.ClientSession() as s:
            c = Client(hs.url, s)
            reg = {"username": "alice", "password": "old-pw-1", "device_id": "MAIN"}
            session = await _start(c, "POST", "/register", reg)
            status, body = await c.request("POST", "/register", {**reg, "auth": {
                "type": "m.login.registration_token", "token": TOKEN, "session": session}})
            assert status == 200, body
            alice = User(body["user_id"], body["access_token"], body["device_id"])
            status, _ = await _login(c, alice.user_id, "old-pw-1", "SPARE")
            assert status == 200

            # Three flows started before the restart: a password change, a device deletion
            # and another user's token registration.
            password_session = await _start(c, "POST", "/account/password", {
                "new_password": "new-pw-1", "logout_devices": False}, alice)
            device_session = await _start(c, "DELETE", "/devices/SPARE", {}, alice)
            bob_reg = {"username": "bob", "password": "bob-pw-1"}
            bob_session = await _start(c, "POST", "/register", bob_reg)

        assert hs.terminate() == 0, hs.log()
        hs.start()
        await hs.wait_ready()

        async with aiohttp.ClientSession() as s:
            c = Client(hs.url, s)
            status, body = await c.request("POST", "/account/password", {
                "new_password": "new-pw-1", "logout_devices": False,
                "auth": _password_auth(alice, password_session, "old-pw-1")}, alice.access_token)
            assert status == 200, body
            assert (await _login(c, alice.user_id, "new-pw-1"))[0] == 200
            assert (await _login(c, alice.user_id, "old-pw-1"))[0] == 403

            status, body = await c.request("DELETE", "/devices/SPARE", {
                "auth": _password_auth(alice, device_session, "new-pw-1")}, alice.access_token)
            assert status == 200, body
            status, body = await c.request("GET", "/devices/SPARE", token=alice.access_token)
            assert status == 404, body

            status, body = await c.request("POST", "/register", {**bob_reg, "auth": {
                "type": "m.login.registration_token", "token": TOKEN, "session": bob_session}})
            assert status == 200, body
            assert body["user_id"] == "@bob:restart.test"

            # Each of those sessions authorised its one request and is gone.
            status, body = await c.request("DELETE", "/devices/MAIN", {
                "auth": _password_auth(alice, device_session, "new-pw-1")}, alice.access_token)
            assert status == 400 and body["errcode"] == "M_UNKNOWN", body
    finally:
        hs.stop()


async def test_second_process_honours_uia_sessions_and_txn_ids(
        fresh_database: str, tmp_path: Path) -> None:
    env_a = open_server_env(fresh_database, tmp_path / "data", PARLEY_SERVER_NAME="pair.test")
    a = ServerProcess(env_a, tmp_path, tmp_path / "a.log")
    b: ServerProcess | None = None
    try:
        a.start()
        await a.wait_ready()
        async with aiohttp.ClientSession() as s:
            ca = Client(a.url, s)
            alice = await ca.register("alice")
            bob = await ca.register("bob", device_id="BOBPHONE")
            room = await ca.create_room(alice, name="pair", preset="public_chat")
            await ca.join(bob, room)
            event_id = await ca.send(alice, room, "only once", txn="msg-txn-1")
            status, body = await ca.request(
                "PUT", "/sendToDevice/m.test/td-txn-1",
                {"messages": {bob.user_id: {"BOBPHONE": {"n": 1}}}}, alice.access_token)
            assert status == 200, body
            deactivate_session = await _start(ca, "POST", "/account/deactivate", {}, alice)

            # A second process on the same database, started after those writes.
            env_b = open_server_env(fresh_database, tmp_path / "data",
                                    PARLEY_SERVER_NAME="pair.test")
            b = ServerProcess(env_b, tmp_path, tmp_path / "b.log")
            b.start()
            await b.wait_ready()
            cb = Client(b.url, s)

            # The same transaction ids resent to the other process store nothing new.
            assert await cb.send(alice, room, "only once", txn="msg-txn-1") == event_id
            status, body = await cb.request(
                "PUT", "/sendToDevice/m.test/td-txn-1",
                {"messages": {bob.user_id: {"BOBPHONE": {"n": 1}}}}, alice.access_token)
            assert status == 200, body
            sync = await cb.sync(bob)
            assert [e["content"] for e in sync["to_device"]["events"]] == [{"n": 1}]
            timeline = sync["rooms"]["join"][room]["timeline"]["events"]
            bodies = [e["content"].get("body") for e in timeline if e["type"] == "m.room.message"]
            assert bodies == ["only once"]
            # The second process still writes to the room normally afterwards.
            later = await cb.send(alice, room, "from b", txn="msg-txn-2")
            assert later != event_id

            # The UIA session started on the first process is completed on the second.
            status, body = await cb.request("POST", "/account/deactivate", {
                "auth": _password_auth(alice, deactivate_session, "pw-secret-1")},
                alice.access_token)
            assert status == 200, body
            status, body = await cb.request("GET", "/account/whoami", token=alice.access_token)
            assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN", body
            assert (await _login(cb, alice.user_id, "pw-secret-1"))[0] == 403
    finally:
        if b is not None:
            b.stop()
        a.stop()
