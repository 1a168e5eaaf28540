"""Push notifications end to end: a real server, real HTTP clients and a real push gateway (an
aiohttp server in the test recording /_matrix/push/v1/notify calls)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from homeserver.push.notify_store import NotificationStore
from tests import conftest
from tests.conftest import Server, free_port, start_server
from tests.helpers import Client, User

NOTIFY = "/_matrix/push/v1/notify"


@dataclass
class Gateway:
    port: int
    calls: list[dict[str, Any]] = field(default_factory=list)
    failing: bool = False
    reject: set[str] = field(default_factory=set)
    attempts: int = 0
    delay: float = 0.0  # seconds before each answer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{NOTIFY}"

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.failing:
            return web.json_response({"error": "down"}, status=503)
        body = await request.json()
        self.calls.append(body["notification"])
        if self.delay:
            await asyncio.sleep(self.delay)
        keys = [d["pushkey"] for d in body["notification"]["devices"]
                if d["pushkey"] in self.reject]
        return web.json_response({"rejected": keys})

    async def wait_calls(self, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.calls) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(self.calls) >= n, self.calls
        return self.calls


async def run_gateway(port: int | None = None) -> AsyncIterator[Gateway]:
    gw = Gateway(port or free_port())
    app = web.Application()
    app.router.add_post(NOTIFY, gw.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", gw.port)
    await site.start()
    try:
        yield gw
    finally:
        await runner.cleanup()


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async for gw in run_gateway():
        yield gw


@pytest.fixture
async def push_server(fresh_database: str, tmp_path: Path) -> AsyncIterator[Server]:
    """A server of its own whose outbound policy allows loopback (where the gateway is)."""
    cfg = conftest.test_config(tmp_path, outbound_allow=("127.0.0.0/8",))
    async for s in start_server(cfg, fresh_database):
        yield s


@pytest.fixture
async def pc(push_server: Server) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as s:
        yield Client(push_server.url, s)


async def set_pusher(c: Client, user: User, url: str, pushkey: str = "key1",
                     **extra: Any) -> None:
    body = {"kind": "http", "app_id": "org.test.app", "pushkey": pushkey,
            "app_display_name": "Test", "device_display_name": "Phone", "lang": "en",
            "data": {"url": url, **extra.pop("data", {})}, **extra}
    status, data = await c.request("POST", "/pushers/set", body, user.access_token)
    assert status == 200, data


async def dm(c: Client) -> tuple[User, User, str]:
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(alice, invite=[bob.user_id], is_direct=True)
    await c.join(bob, room)
    return alice, bob, room


def unread(sync: dict[str, Any], room: str) -> dict[str, Any]:
    return dict(sync["rooms"]["join"][room]["unread_notifications"])


# ------------------------------------------------------------------ counts and receipts


async def test_counts_in_sync_and_reset_by_receipt(c: Client) -> None:
    alice, bob, room = await dm(c)
    s0 = await c.sync(bob)
    assert unread(s0, room) == {"notification_count": 0, "highlight_count": 0}
    await c.send(alice, room, "one")
    last = await c.send(alice, room, "two")
    s1 = await c.sync(bob, s0["next_batch"])
    assert unread(s1, room) == {"notification_count": 2, "highlight_count": 0}
    # the sender's own messages never count for the sender
    assert unread(await c.sync(alice), room)["notification_count"] == 0
    status, _ = await c.request("POST", f"/rooms/{room}/receipt/m.read/{last}", {},
                                bob.access_token)
    assert status == 200
    s2 = await c.sync(bob, s1["next_batch"])
    assert unread(s2, room) == {"notification_count": 0, "highlight_count": 0}


async def test_counts_exact_under_concurrent_group_commits(c: Client, server: Server) -> None:
    """Many senders at once (so the writer commits groups of messages, each with one push
    write): every member's counts are what the timeline says: the others' messages after
    that member's own last one (sending reads the room), mentions of them for highlights.
    Checked from the counts kept in memory and again from the database."""
    users = [await c.register() for _ in range(4)]
    room = await c.create_room(users[0], preset="public_chat")
    for u in users[1:]:
        await c.join(u, room)
    for u in users:  # counts now in memory: the sends below must move them right
        await c.sync(u)

    async def send(i: int) -> None:
        sender = users[i % 3]  # users[3] never sends
        content: dict[str, Any] = {"msgtype": "m.text", "body": f"m{i}"}
        if i % 5 == 0:
            content["m.mentions"] = {"user_ids": [users[(i + 1) % 4].user_id]}
        status, data = await c.request(
            "PUT", f"/rooms/{room}/send/m.room.message/cc{i}", content, sender.access_token)
        assert status == 200, data

    for wave in range(3):
        await asyncio.gather(*(send(wave * 20 + i) for i in range(20)))
    status, page = await c.request("GET", f"/rooms/{room}/messages", token=users[0].access_token,
                                   params={"dir": "f", "limit": "200"})
    assert status == 200
    msgs = [e for e in page["chunk"] if e["type"] == "m.room.message"]
    assert len(msgs) == 60

    def expected(u: User) -> dict[str, int]:
        n = h = 0
        for e in msgs:
            if e["sender"] == u.user_id:
                n = h = 0
            else:
                n += 1
                h += u.user_id in e["content"].get("m.mentions", {}).get("user_ids", [])
        return {"notification_count": n, "highlight_count": h}

    for u in users:
        assert unread(await c.sync(u), room) == expected(u), u.user_id
    assert server.hs.notifications is not None
    server.hs.notifications._counts.clear()  # the same again, read from the database
    for u in users:
        assert unread(await c.sync(u), room) == expected(u), u.user_id
    # Each notification row was written once, in its event's transaction (never updated
    # when read), and what each member read is one position for the whole room (moved by
    # their join and sends).
    db = server.hs.db
    async with db.connection() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM push_notifications n JOIN events e"
            " ON e.event_id = n.event_id WHERE n.room_id = $1 AND e.type = 'm.room.message'",
            room) == 60 * 3
        assert await conn.fetchval(
            "SELECT count(*) FROM push_notifications n JOIN events e"
            " ON e.event_id = n.event_id WHERE n.room_id = $1 AND NOT n.xmin = e.xmin",
            room) == 0
        readers = await conn.fetch(
            "SELECT user_id, thread_id FROM push_read WHERE room_id = $1", room)
    assert sorted((r["user_id"], r["thread_id"]) for r in readers) == sorted(
        (u.user_id, "") for u in users)


async def test_private_receipt_resets_up_to_its_event(c: Client) -> None:
    alice, bob, room = await dm(c)
    first = await c.send(alice, room, "one")
    await c.send(alice, room, "two")
    status, _ = await c.request("POST", f"/rooms/{room}/receipt/m.read.private/{first}", {},
                                bob.access_token)
    assert status == 200
    assert unread(await c.sync(bob), room)["notification_count"] == 1
    # an older public receipt afterwards changes nothing: marks are not undone
    status, _ = await c.request("POST", f"/rooms/{room}/receipt/m.read/{first}", {},
                                bob.access_token)
    assert unread(await c.sync(bob), room)["notification_count"] == 1


async def test_mention_highlights_and_group_room(c: Client) -> None:
    alice, bob, carol = await c.register(), await c.register(), await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    await c.join(carol, room)
    status, _ = await c.request(
        "PUT", f"/rooms/{room}/send/m.room.message/t1",
        {"msgtype": "m.text", "body": "hey bob", "m.mentions": {"user_ids": [bob.user_id]}},
        alice.access_token)
    assert status == 200
    assert unread(await c.sync(bob), room) == {"notification_count": 1, "highlight_count": 1}
    assert unread(await c.sync(carol), room) == {"notification_count": 1, "highlight_count": 0}
    # GET /notifications, only=highlight
    status, body = await c.request("GET", "/notifications", token=bob.access_token,
                                   params={"only": "highlight"})
    assert status == 200
    assert [n["event"]["content"]["body"] for n in body["notifications"]] == ["hey bob"]
    assert body["notifications"][0]["read"] is False
    status, body = await c.request("GET", "/notifications", token=carol.access_token,
                                   params={"only": "highlight"})
    assert body["notifications"] == []


async def test_notifications_pagination(c: Client) -> None:
    alice, bob, room = await dm(c)
    for i in range(5):
        await c.send(alice, room, f"m{i}")
    seen: list[str] = []
    params = {"limit": "2"}
    for _ in range(4):
        status, body = await c.request("GET", "/notifications", token=bob.access_token,
                                       params=params)
        assert status == 200
        seen += [n["event"]["content"]["body"] for n in body["notifications"]
                 if n["event"]["type"] == "m.room.message"]
        if "next_token" not in body:
            break
        params = {"limit": "2", "from": body["next_token"]}
    assert seen == ["m4", "m3", "m2", "m1", "m0"]
    status, body = await c.request("GET", "/notifications", token=bob.access_token,
                                   params={"from": "x"})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"


async def test_notifications_read_flag_follows_receipts_and_sends(c: Client) -> None:
    """GET /notifications says `read` per notification: up to the user's newest receipt (a
    threaded one reads its thread only) and up to their own last send (every thread)."""
    alice, bob, room = await dm(c)
    m1 = await c.send(alice, room, "m1")
    status, data = await c.request(
        "PUT", f"/rooms/{room}/send/m.room.message/rf1",
        {"msgtype": "m.text", "body": "t1", "m.relates_to": {"rel_type": "m.thread",
                                                             "event_id": m1}},
        alice.access_token)
    assert status == 200
    t1 = data["event_id"]
    await c.send(alice, room, "m2")

    async def read_flags() -> dict[str, bool]:
        status, body = await c.request("GET", "/notifications", token=bob.access_token)
        assert status == 200
        return {n["event"]["content"]["body"]: n["read"] for n in body["notifications"]
                if n["event"]["type"] == "m.room.message"}

    assert await read_flags() == {"m1": False, "t1": False, "m2": False}
    status, _ = await c.request("POST", f"/rooms/{room}/receipt/m.read/{t1}",
                                {"thread_id": m1}, bob.access_token)
    assert status == 200
    assert await read_flags() == {"m1": False, "t1": True, "m2": False}
    status, _ = await c.request("POST", f"/rooms/{room}/receipt/m.read.private/{m1}", {},
                                bob.access_token)
    assert await read_flags() == {"m1": True, "t1": True, "m2": False}
    await c.send(bob, room, "reply")  # sending reads the room up to the send
    await c.send(alice, room, "m3")
    assert await read_flags() == {"m1": True, "t1": True, "m2": True, "m3": False}
    assert unread(await c.sync(bob), room) == {"notification_count": 1, "highlight_count": 0}


async def test_thread_counts_with_threaded_receipts(c: Client) -> None:
    alice, bob, room = await dm(c)
    root = await c.send(alice, room, "root")
    status, data = await c.request(
        "PUT", f"/rooms/{room}/send/m.room.message/th1",
        {"msgtype": "m.text", "body": "in thread",
         "m.relates_to": {"rel_type": "m.thread", "event_id": root}}, alice.access_token)
    assert status == 200
    in_thread = data["event_id"]
    flt = '{"room":{"timeline":{"unread_thread_notifications":true}}}'
    s = await c.sync(bob, filter=flt)
    body = s["rooms"]["join"][room]
    assert body["unread_notifications"]["notification_count"] == 1
    assert body["unread_thread_notifications"] == {
        root: {"notification_count": 1, "highlight_count": 0}}
    # without the filter flag the room count covers the threads too
    assert unread(await c.sync(bob), room)["notification_count"] == 2
    status, _ = await c.request("POST", f"/rooms/{room}/receipt/m.read/{in_thread}",
                                {"thread_id": root}, bob.access_token)
    assert status == 200
    s = await c.sync(bob, filter=flt)
    body = s["rooms"]["join"][room]
    assert body["unread_notifications"]["notification_count"] == 1  # main timeline unread
    assert "unread_thread_notifications" not in body


async def test_muted_room_rule_stops_counting(c: Client) -> None:
    alice, bob, room = await dm(c)
    status, _ = await c.request("PUT", f"/pushrules/global/room/{room}", {"actions": []},
                                bob.access_token)
    assert status == 200
    await c.send(alice, room, "quiet")
    assert unread(await c.sync(bob), room)["notification_count"] == 0
    status, _ = await c.request("DELETE", f"/pushrules/global/room/{room}", None,
                                bob.access_token)
    await c.send(alice, room, "loud")
    assert unread(await c.sync(bob), room)["notification_count"] == 1


# ------------------------------------------------------------------ pushers API


@pytest.mark.parametrize(("body", "errcode"), [
    ({"app_id": "a", "pushkey": "k"}, "M_MISSING_PARAM"),
    ({"kind": "http", "app_id": "a", "pushkey": "k"}, "M_MISSING_PARAM"),
    ({"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A",
      "device_display_name": "D", "lang": "en", "data": {}}, "M_MISSING_PARAM"),
    ({"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A",
      "device_display_name": "D", "lang": "en", "data": {"url": "https://x/notify"}},
     "M_INVALID_PARAM"),
    ({"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A",
      "device_display_name": "D", "lang": "en", "data": {"url": "ftp://x" + NOTIFY}},
     "M_INVALID_PARAM"),
    ({"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A",
      "device_display_name": "D", "lang": "en",
      "data": {"url": "https://x" + NOTIFY, "format": 1}}, "M_BAD_JSON"),
    ({"kind": "email", "app_id": "m.email", "pushkey": "a@b", "app_display_name": "A",
      "device_display_name": "D", "lang": "en", "data": {}}, "M_INVALID_PARAM"),
    ({"kind": "http", "app_id": "a" * 65, "pushkey": "k", "app_display_name": "A",
      "device_display_name": "D", "lang": "en", "data": {"url": "https://x" + NOTIFY}},
     "M_INVALID_PARAM"),
    ({"kind": "http", "app_id": "a", "pushkey": "k" * 513, "app_display_name": "A",
      "device_display_name": "D", "lang": "en", "data": {"url": "https://x" + NOTIFY}},
     "M_INVALID_PARAM"),
    ({"kind": 3, "app_id": "a", "pushkey": "k"}, "M_BAD_JSON"),
    ({"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A",
      "device_display_name": "D", "lang": "en", "data": "x"}, "M_BAD_JSON"),
    ({"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A",
      "device_display_name": "D", "lang": "en", "data": {"url": "https://x" + NOTIFY},
      "append": "yes"}, "M_BAD_JSON"),
])
async def test_set_pusher_validation(c: Client, body: dict[str, Any], errcode: str) -> None:
    user = await c.register()
    status, data = await c.request("POST", "/pushers/set", body, user.access_token)
    assert (status, data["errcode"]) == (400, errcode), data
    status, data = await c.request("GET", "/pushers", token=user.access_token)
    assert data == {"pushers": []}


async def test_pushers_set_list_append_delete(c: Client) -> None:
    u1, u2 = await c.register(), await c.register()
    url = "https://push.example.org" + NOTIFY
    await set_pusher(c, u1, url, data={"format": "event_id_only", "custom": 1})
    status, data = await c.request("GET", "/pushers", token=u1.access_token)
    assert status == 200
    assert data["pushers"] == [{
        "pushkey": "key1", "kind": "http", "app_id": "org.test.app",
        "app_display_name": "Test", "device_display_name": "Phone", "lang": "en",
        "data": {"url": url, "format": "event_id_only", "custom": 1}}]
    # the same app and pushkey for another user with append: both stay
    await set_pusher(c, u2, url, append=True)
    assert len((await c.request("GET", "/pushers", token=u1.access_token))[1]["pushers"]) == 1
    # without append the other user's pusher goes
    await set_pusher(c, u2, url)
    assert (await c.request("GET", "/pushers", token=u1.access_token))[1]["pushers"] == []
    # kind null deletes
    status, _ = await c.request("POST", "/pushers/set",
                                {"kind": None, "app_id": "org.test.app", "pushkey": "key1"},
                                u2.access_token)
    assert status == 200
    assert (await c.request("GET", "/pushers", token=u2.access_token))[1]["pushers"] == []


async def test_outbound_policy_refuses_loopback_gateway(c: Client, gateway: Gateway) -> None:
    """The session server keeps the default deny list: a pusher at 127.0.0.1 gets nothing."""
    alice, bob, room = await dm(c)
    await set_pusher(c, bob, gateway.url)
    await c.send(alice, room, "hello")
    await asyncio.sleep(2.5)
    assert gateway.attempts == 0


# ------------------------------------------------------------------ delivery


async def test_dm_push_full_format(pc: Client, gateway: Gateway) -> None:
    alice, bob, room = await dm(pc)
    await set_pusher(pc, bob, gateway.url, data={"custom": "x"})
    await pc.send(bob, room, "my own message")  # never pushed to its sender
    ev = await pc.send(alice, room, "hello bob")
    calls = await gateway.wait_calls(1)
    await asyncio.sleep(0.3)
    assert len(calls) == 1
    n = calls[0]
    assert n["event_id"] == ev and n["room_id"] == room
    assert n["type"] == "m.room.message" and n["sender"] == alice.user_id
    assert n["content"]["body"] == "hello bob"
    assert n["counts"] == {"unread": 1}
    assert n["prio"] == "high"
    assert n["devices"][0]["app_id"] == "org.test.app"
    assert n["devices"][0]["pushkey"] == "key1"
    assert n["devices"][0]["data"] == {"custom": "x"}  # everything but the url
    assert n["devices"][0]["tweaks"] == {"sound": "default"}


async def test_mention_push_event_id_only(pc: Client, gateway: Gateway) -> None:
    alice, bob, carol = await pc.register(), await pc.register(), await pc.register()
    room = await pc.create_room(alice, preset="public_chat")
    await pc.join(bob, room)
    await pc.join(carol, room)
    await set_pusher(pc, bob, gateway.url, data={"format": "event_id_only"})
    await pc.send(alice, room, "no mention")
    status, data = await pc.request(
        "PUT", f"/rooms/{room}/send/m.room.message/m1",
        {"msgtype": "m.text", "body": "bob!", "m.mentions": {"user_ids": [bob.user_id]}},
        alice.access_token)
    assert status == 200
    calls = await gateway.wait_calls(2)
    assert [c["event_id"] for c in calls] == [calls[0]["event_id"], data["event_id"]]
    assert calls[1]["devices"][0]["tweaks"] == {"sound": "default", "highlight": True}
    assert calls[0]["prio"] == "low"  # .m.rule.message: no sound, no highlight
    assert "content" not in calls[1] and "sender" not in calls[1]
    assert calls[1]["counts"] == {"unread": 2}


async def test_push_badge_counts_every_room_after_reads(pc: Client, gateway: Gateway,
                                                        push_server: Server) -> None:
    """counts.unread is the user's unread notifications over all their rooms: it follows
    receipts and the user's own sends, from memory as from the database."""
    alice, bob, room1 = await dm(pc)
    room2 = await pc.create_room(alice, invite=[bob.user_id])
    await pc.join(bob, room2)
    await set_pusher(pc, bob, gateway.url)
    e1 = await pc.send(alice, room1, "r1 a")
    await gateway.wait_calls(1)
    await pc.send(alice, room2, "r2 a")
    await gateway.wait_calls(2)
    status, _ = await pc.request("POST", f"/rooms/{room1}/receipt/m.read/{e1}", {},
                                 bob.access_token)
    assert status == 200
    # the receipt is followed by a badge-only push (no event), as the reference server sends
    await gateway.wait_calls(3)
    await pc.send(alice, room2, "r2 b")
    await gateway.wait_calls(4)
    await pc.send(bob, room2, "bob reads room 2 by sending")
    await pc.send(alice, room1, "r1 b")
    calls = await gateway.wait_calls(5)
    assert [(c["counts"]["unread"], "event_id" in c) for c in calls] == [
        (1, True), (2, True), (1, False), (2, True), (1, True)]
    hs = push_server.hs
    assert hs.notifications is not None
    async with hs.db.connection() as conn:
        from_db = await NotificationStore().unread_totals(conn, [bob.user_id, alice.user_id])
    expected = {bob.user_id: 1, alice.user_id: 1}  # alice: bob's message in room 2
    assert from_db == expected == await hs.notifications.unread_totals(
        [bob.user_id, alice.user_id])


async def test_rejected_pushkey_removes_pusher(pc: Client, gateway: Gateway) -> None:
    alice, bob, room = await dm(pc)
    gateway.reject.add("bad-key")
    await set_pusher(pc, bob, gateway.url, pushkey="bad-key")
    await pc.send(alice, room, "one")
    await gateway.wait_calls(1)
    for _ in range(100):
        status, data = await pc.request("GET", "/pushers", token=bob.access_token)
        if not data["pushers"]:
            break
        await asyncio.sleep(0.05)
    assert data["pushers"] == []
    await pc.send(alice, room, "two")
    await asyncio.sleep(1.5)
    assert len(gateway.calls) == 1


async def test_gateway_down_then_up_loses_nothing(pc: Client, gateway: Gateway) -> None:
    alice, bob, room = await dm(pc)
    await set_pusher(pc, bob, gateway.url)
    gateway.failing = True
    sent = [await pc.send(alice, room, f"m{i}") for i in range(3)]
    deadline = time.monotonic() + 10
    while gateway.attempts < 2 and time.monotonic() < deadline:  # a retry happened
        await asyncio.sleep(0.05)
    assert gateway.attempts >= 2 and not gateway.calls
    gateway.failing = False
    calls = await gateway.wait_calls(3, timeout=20)
    await asyncio.sleep(0.5)
    assert [c["event_id"] for c in calls] == sent  # in order, once each


async def test_sender_stopped_mid_push_sends_nothing_twice(pc: Client, gateway: Gateway,
                                                           push_server: Server) -> None:
    """A clean stop lets the push the gateway is answering finish and saves its position: after
    a restart of the sender every notification has arrived exactly once."""
    from homeserver.push.sender import PusherSender

    alice, bob, room = await dm(pc)
    await set_pusher(pc, bob, gateway.url)
    gateway.delay = 0.3
    sent = [await pc.send(alice, room, f"m{i}") for i in range(3)]
    deadline = time.monotonic() + 10
    while not gateway.calls and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    sender = next(b for b in push_server.hs.background if isinstance(b, PusherSender))
    await sender.stop()  # with the first push still waiting for the gateway's answer
    await sender.start()
    await gateway.wait_calls(3, timeout=20)
    await asyncio.sleep(1.0)
    assert [c["event_id"] for c in gateway.calls] == sent


async def test_sender_lease_is_exclusive(push_server: Server) -> None:
    """Only one process per database sends: another instance cannot take a live lease, and
    takes it once it has expired."""
    from homeserver.push.notify_store import NotificationStore

    store = NotificationStore()
    now = int(time.time() * 1000)
    async with push_server.hs.db.connection() as conn:
        for _ in range(100):
            if await conn.fetchval("SELECT holder FROM push_sender_lease") == "main":
                break
            await asyncio.sleep(0.05)
        assert not await store.take_lease(conn, "other", now, 1000)
        assert await store.take_lease(conn, "other", now + 3_600_000, 1000)
        assert await conn.fetchval("SELECT holder FROM push_sender_lease") == "other"


async def test_old_read_notifications_are_pruned_unread_kept(c: Client, server: Server) -> None:
    from homeserver.push.retention import NotificationPruner

    alice, bob, room = await dm(c)
    first = await c.send(alice, room, "old, read")
    await c.send(alice, room, "old, unread")
    status, _ = await c.request("POST", f"/rooms/{room}/receipt/m.read/{first}", {},
                                bob.access_token)
    assert status == 200
    pruner = next(b for b in server.hs.background if isinstance(b, NotificationPruner))
    assert await pruner.prune_once() == 0  # nothing is old yet
    month_later = int(time.time() * 1000) + 31 * 86_400_000
    assert await pruner.prune_once(month_later) >= 1
    status, body = await c.request("GET", "/notifications", token=bob.access_token)
    bodies = [n["event"]["content"].get("body") for n in body["notifications"]]
    assert "old, unread" in bodies and "old, read" not in bodies
    assert unread(await c.sync(bob), room)["notification_count"] == 1


# ------------------------------------------------------------------ badges and sessions


async def test_read_receipt_sends_a_badge_update(pc: Client, gateway: Gateway) -> None:
    """A receipt lowers the unread total: the gateway gets a counts-only push after the
    notification (Push Gateway API: no event_id, so nobody is alerted)."""
    alice, bob, room = await dm(pc)
    await set_pusher(pc, bob, gateway.url)
    ev = await pc.send(alice, room, "hello")
    await gateway.wait_calls(1)
    status, _ = await pc.request("POST", f"/rooms/{room}/receipt/m.read/{ev}", {},
                                 bob.access_token)
    assert status == 200
    calls = await gateway.wait_calls(2)
    badge = calls[1]
    assert badge["counts"] == {"unread": 0}
    assert "event_id" not in badge and "type" not in badge
    assert badge["devices"][0]["pushkey"] == "key1"
    # Another user's receipt is not bob's badge.
    ev2 = await pc.send(bob, room, "reply")
    status, _ = await pc.request("POST", f"/rooms/{room}/receipt/m.read/{ev2}", {},
                                 alice.access_token)
    await asyncio.sleep(1.0)
    assert len(gateway.calls) == 2


async def test_password_change_deletes_other_sessions_pushers(c: Client) -> None:
    local = "pw" + secrets.token_hex(4)
    u = await c.register(local, password="old-password")
    status, other = await c.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": local},
        "password": "old-password"})
    assert status == 200
    other_user = User(u.user_id, other["access_token"], other["device_id"])
    await set_pusher(c, other_user, "https://gw.example/_matrix/push/v1/notify",
                     pushkey="other")
    await set_pusher(c, u, "https://gw.example/_matrix/push/v1/notify", pushkey="mine")
    status, body = await c.request("POST", "/account/password", {
        "new_password": "new-password", "logout_devices": False,
        "auth": {"type": "m.login.password", "password": "old-password",
                 "identifier": {"type": "m.id.user", "user": local}}}, u.access_token)
    assert status == 200, body
    status, body = await c.request("GET", "/pushers", token=u.access_token)
    assert sorted(p["pushkey"] for p in body["pushers"]) == ["mine", "other"]
    status, body = await c.request("POST", "/account/password", {
        "new_password": "newer-password",
        "auth": {"type": "m.login.password", "password": "new-password",
                 "identifier": {"type": "m.id.user", "user": local}}}, u.access_token)
    assert status == 200, body
    status, body = await c.request("GET", "/pushers", token=u.access_token)
    assert [p["pushkey"] for p in body["pushers"]] == ["mine"]
    # Logging out takes this session's pusher with it.
    status, _ = await c.request("POST", "/logout", {}, u.access_token)
    assert status == 200
    status, again = await c.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": local},
        "password": "newer-password"})
    status, body = await c.request("GET", "/pushers", token=again["access_token"])
    assert body["pushers"] == []
