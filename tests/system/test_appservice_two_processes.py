"""Two Parley processes on one database with the same application service (given through
PARLEY_APP_SERVICE_CONFIG_FILES): one of them sends to the AS at a time, so every event
reaches it once, in order, with each transaction id used for one body only; when that process
stops, the other takes over where it left off."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import asyncpg
import yaml

from tests.client_api.test_appservice import MockAS
from tests.conftest import free_port
from tests.helpers import Client
from tests.system.proc import ServerProcess, open_server_env

N = 15


async def test_one_process_sends_to_an_appservice(fresh_database: str, tmp_path: Path) -> None:
    from aiohttp import web

    mock_as = MockAS("hs-two")
    mock = web.Application()
    mock.router.add_route("*", "/as/_matrix/app/v1/{tail:.*}", mock_as.handle)
    runner = web.AppRunner(mock)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    reg = tmp_path / "as.yaml"
    reg.write_text(yaml.safe_dump({
        "id": "two", "url": f"http://127.0.0.1:{port}/as", "as_token": "as-two",
        "hs_token": "hs-two", "sender_localpart": "twobot",
        "namespaces": {"users": [{"regex": "@_two_.*", "exclusive": True}]}}))
    data = tmp_path / "data"
    common = {"PARLEY_SERVER_NAME": "shared.test", "PARLEY_APP_SERVICE_CONFIG_FILES": str(reg),
              "PARLEY_OUTBOUND_ALLOW": "127.0.0.0/8"}
    a = ServerProcess(open_server_env(fresh_database, data, PARLEY_INSTANCE_NAME="a", **common),
                      tmp_path, tmp_path / "a.log")
    b_env = open_server_env(fresh_database, data, PARLEY_INSTANCE_NAME="b", **common)
    b_env["PARLEY_LISTEN"] = f"127.0.0.1:{free_port()}"
    b = ServerProcess(b_env, tmp_path, tmp_path / "b.log")
    try:
        a.start()
        await a.wait_ready()
        b.start()
        await b.wait_ready()
        async with aiohttp.ClientSession() as s:
            ca, cb = Client(a.url, s), Client(b.url, s)
            alice, bob = await ca.register("alice"), await cb.register("bob")
            room_a = await ca.create_room(alice, preset="public_chat")
            room_b = await cb.create_room(bob, preset="public_chat")
            for c, room in ((ca, room_a), (cb, room_b)):  # an AS user in both rooms
                status, body = await c.request(
                    "POST", "/register", {"type": "m.login.application_service",
                                          "username": f"_two_{room[1:5].lower()}",
                                          "inhibit_login": True}, "as-two")
                assert status == 200, body
                status, body = await c.request("POST", f"/rooms/{room}/join", {}, "as-two",
                                               params={"user_id": body["user_id"]})
                assert status == 200, body

            async def send(c: Client, user: object, room: str, tag: str) -> list[str]:
                return [await c.send(user, room, f"{tag} {i}") for i in range(N)]  # type: ignore

            ids = await asyncio.gather(send(ca, alice, room_a, "a"), send(cb, bob, room_b, "b"))
            want = set(ids[0]) | set(ids[1])
            deadline = time.monotonic() + 20
            while not want <= {e["event_id"] for e in mock_as.events()}:
                assert time.monotonic() < deadline, mock_as.events()
                await asyncio.sleep(0.1)
            got = [e["event_id"] for e in mock_as.events() if e["event_id"] in want]
            assert len(got) == len(want)  # each once
            assert [i for i in got if i in ids[0]] == ids[0]  # in order
            bodies: dict[str, object] = {}
            for txn, body in mock_as.transactions:
                assert bodies.setdefault(txn, body) == body
            # The process sending to the AS dies; the other takes over once its lease ends.
            conn = await asyncpg.connect(fresh_database)
            try:
                holder = await conn.fetchval(
                    "SELECT holder FROM appservice_state WHERE as_id = 'two'")
            finally:
                await conn.close()
            assert holder in ("a", "b")
            dead, alive = (a, cb) if holder == "a" else (b, ca)
            dead.kill()
            user = bob if alive is cb else alice
            room = room_b if alive is cb else room_a
            later = await alive.send(user, room, "after the crash")
            deadline = time.monotonic() + 60
            while later not in {e["event_id"] for e in mock_as.events()}:
                assert time.monotonic() < deadline, "no process took over"
                await asyncio.sleep(0.2)
    finally:
        a.stop()
        b.stop()
        await runner.cleanup()
