"""PUT /sendToDevice and the to_device section of /sync: delivery per device, exactly once, in
order, kept until acknowledged by the next since token, paged, idempotent, gone on logout."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from tests.conftest import Server
from tests.helpers import Client, User

TYPE = "m.test.to_device"


async def login(c: Client, user: User, device_id: str) -> User:
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "password": "pw-secret-1", "device_id": device_id,
        "identifier": {"type": "m.id.user", "user": user.user_id}})
    assert status == 200, body
    return User(body["user_id"], body["access_token"], body["device_id"])


async def send(c: Client, sender: User, messages: dict[str, Any], txn: str | None = None,
               etype: str = TYPE) -> None:
    status, body = await c.request("PUT", f"/sendToDevice/{etype}/{txn or secrets.token_hex(8)}",
                                   {"messages": messages}, sender.access_token)
    assert status == 200, body
    assert body == {}


def to_device(sync: dict[str, Any]) -> list[dict[str, Any]]:
    return list(sync.get("to_device", {}).get("events", []))


async def test_delivery_to_one_device_in_order_exactly_once(c: Client) -> None:
    alice, bob = await c.register(), await c.register(device_id="BOBPHONE")
    bob_laptop = await login(c, bob, "BOBLAPTOP")
    start = (await c.sync(bob))["next_batch"]
    laptop_start = (await c.sync(bob_laptop))["next_batch"]
    for i in range(3):
        await send(c, alice, {bob.user_id: {"BOBPHONE": {"i": i}}})

    first = await c.sync(bob, since=start)
    assert to_device(first) == [{"type": TYPE, "sender": alice.user_id, "content": {"i": i}}
                                for i in range(3)]
    again = await c.sync(bob, since=first["next_batch"])
    assert to_device(again) == []
    # The other device of the same user got nothing.
    assert to_device(await c.sync(bob_laptop, since=laptop_start)) == []


async def test_star_reaches_every_device(c: Client) -> None:
    alice, bob = await c.register(), await c.register(device_id="D1")
    bob2 = await login(c, bob, "D2")
    bob3 = await login(c, bob, "D3")
    await send(c, alice, {bob.user_id: {"*": {"hello": "all"}}})
    for dev in (bob, bob2, bob3):
        got = to_device(await c.sync(dev))
        assert got == [{"type": TYPE, "sender": alice.user_id, "content": {"hello": "all"}}]


async def test_explicit_device_wins_over_star(c: Client) -> None:
    alice, bob = await c.register(), await c.register(device_id="D1")
    bob2 = await login(c, bob, "D2")
    await send(c, alice, {bob.user_id: {"*": {"to": "all"}, "D2": {"to": "D2"}}})
    assert [e["content"] for e in to_device(await c.sync(bob))] == [{"to": "all"}]
    assert [e["content"] for e in to_device(await c.sync(bob2))] == [{"to": "D2"}]


async def test_kept_until_acknowledged(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    since = (await c.sync(bob))["next_batch"]
    await send(c, alice, {bob.user_id: {bob.device_id: {"n": 1}}})
    await send(c, alice, {bob.user_id: {bob.device_id: {"n": 2}}})
    first = await c.sync(bob, since=since)
    assert [e["content"] for e in first["to_device"]["events"]] == [{"n": 1}, {"n": 2}]
    # The response was "lost": the client retries with the same since and gets them again.
    retry = await c.sync(bob, since=since)
    assert to_device(retry) == to_device(first)
    # The next since acknowledges them; they are deleted and never come back.
    after = await c.sync(bob, since=retry["next_batch"])
    assert to_device(after) == []
    assert to_device(await c.sync(bob, since=since)) == []
    assert to_device(await c.sync(bob)) == []


async def test_initial_sync_returns_pending_without_deleting(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    await send(c, alice, {bob.user_id: {bob.device_id: {"n": 1}}})
    first = await c.sync(bob)
    assert [e["content"] for e in to_device(first)] == [{"n": 1}]
    assert [e["content"] for e in to_device(await c.sync(bob))] == [{"n": 1}]
    assert to_device(await c.sync(bob, since=first["next_batch"])) == []


async def test_many_pending_are_paged_without_loss(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    since = (await c.sync(bob))["next_batch"]
    total = 250
    for i in range(total):
        await send(c, alice, {bob.user_id: {bob.device_id: {"i": i}}})
    seen: list[int] = []
    pages = []
    for _ in range(10):
        resp = await c.sync(bob, since=since)
        got = [e["content"]["i"] for e in to_device(resp)]
        if not got:
            break
        pages.append(len(got))
        # A lost page is served again, identically.
        assert [e["content"]["i"] for e in to_device(await c.sync(bob, since=since))] == got
        seen.extend(got)
        since = resp["next_batch"]
    assert pages == [100, 100, 50]
    assert seen == list(range(total))


async def test_many_pending_paged_from_initial_sync(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    for i in range(120):
        await send(c, alice, {bob.user_id: {bob.device_id: {"i": i}}})
    first = await c.sync(bob)
    assert [e["content"]["i"] for e in to_device(first)] == list(range(100))
    second = await c.sync(bob, since=first["next_batch"])
    assert [e["content"]["i"] for e in to_device(second)] == list(range(100, 120))
    assert to_device(await c.sync(bob, since=second["next_batch"])) == []


async def test_concurrent_senders_all_delivered(c: Client) -> None:
    bob = await c.register()
    senders = [await c.register() for _ in range(5)]
    since = (await c.sync(bob))["next_batch"]

    async def send_ten(n: int, sender: User) -> None:  # in order per sender, senders at once
        for k in range(10):
            await send(c, sender, {bob.user_id: {bob.device_id: {"n": n, "k": k}}})

    await asyncio.gather(*(send_ten(n, s) for n, s in enumerate(senders)))
    seen: list[tuple[int, int]] = []
    for _ in range(5):
        resp = await c.sync(bob, since=since)
        seen.extend((e["content"]["n"], e["content"]["k"]) for e in to_device(resp))
        since = resp["next_batch"]
    assert sorted(seen) == [(n, k) for n in range(5) for k in range(10)]
    for n in range(5):  # each sender's messages in the order it sent them
        assert [k for m, k in seen if m == n] == list(range(10))


async def test_txn_id_is_idempotent(c: Client) -> None:
    alice, bob = await c.register(device_id="A1"), await c.register()
    alice2 = await login(c, alice, "A2")
    since = (await c.sync(bob))["next_batch"]
    await send(c, alice, {bob.user_id: {bob.device_id: {"n": 1}}}, txn="t1")
    await send(c, alice, {bob.user_id: {bob.device_id: {"n": 1}}}, txn="t1")
    await send(c, alice, {bob.user_id: {bob.device_id: {"n": 2}}}, txn="t1")
    # The txn id is scoped to the sending device: another device may reuse it.
    await send(c, alice2, {bob.user_id: {bob.device_id: {"n": 3}}}, txn="t1")
    resp = await c.sync(bob, since=since)
    assert [e["content"] for e in to_device(resp)] == [{"n": 1}, {"n": 3}]


async def test_old_txn_ids_are_pruned(c: Client, server: Server) -> None:
    """Txn ids older than a day are pruned (one DELETE every `prune_every` sends); recent ones
    stay, so a recent resend is still deduplicated while a day-old one is a new message."""
    from e2ee.store import ToDeviceStore

    alice, bob = await c.register(device_id="A1"), await c.register()
    since = (await c.sync(bob))["next_batch"]
    day_ago = int(time.time() * 1000) - 25 * 3600 * 1000
    async with server.hs.db.connection() as conn:
        assert await ToDeviceStore().add_txn(conn, alice.user_id, "A1", "old", 0, day_ago)
    await send(c, alice, {bob.user_id: {bob.device_id: {"n": "recent"}}}, txn="recent")
    service = server.hs.to_device
    saved = service.prune_every
    service.prune_every = 1
    try:
        await send(c, alice, {bob.user_id: {bob.device_id: {"n": "trigger"}}}, txn="trigger")
    finally:
        service.prune_every = saved
    async with server.hs.db.connection() as conn:
        kept = {r["txn_id"] for r in await conn.fetch(
            "SELECT txn_id FROM to_device_txns WHERE user_id = $1", alice.user_id)}
    assert kept == {"recent", "trigger"}
    await send(c, alice, {bob.user_id: {bob.device_id: {"n": "old"}}}, txn="old")
    await send(c, alice, {bob.user_id: {bob.device_id: {"n": "again"}}}, txn="recent")
    resp = await c.sync(bob, since=since)
    assert [e["content"]["n"] for e in to_device(resp)] == ["recent", "trigger", "old"]


async def test_logout_removes_pending_messages(c: Client, server: Server) -> None:
    alice, bob = await c.register(), await c.register(device_id="GOING")
    bob_stays = await login(c, bob, "STAYING")
    await send(c, alice, {bob.user_id: {"*": {"n": 1}}})
    status, _ = await c.request("POST", "/logout", {}, bob.access_token)
    assert status == 200
    count = await server.hs.db.fetchval(
        "SELECT count(*) FROM to_device_inbox WHERE user_id = $1 AND device_id = $2",
        bob.user_id, "GOING")
    assert count == 0
    status, body = await c.request("GET", "/sync", token=bob.access_token)
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"
    # Logging in again with the same device id starts with an empty inbox ...
    again = await login(c, bob, "GOING")
    assert to_device(await c.sync(again)) == []
    # ... while the other device still has its copy.
    assert [e["content"] for e in to_device(await c.sync(bob_stays))] == [{"n": 1}]


async def test_wakes_a_parked_long_poll(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    since = (await c.sync(bob))["next_batch"]
    started = time.monotonic()
    poll = asyncio.create_task(c.sync(bob, since=since, timeout=10_000))
    await asyncio.sleep(0.2)
    assert not poll.done()
    await send(c, alice, {bob.user_id: {bob.device_id: {"wake": True}}})
    resp = await asyncio.wait_for(poll, 5)
    assert time.monotonic() - started < 3
    assert [e["content"] for e in to_device(resp)] == [{"wake": True}]


async def test_unknown_and_remote_recipients_are_ignored(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    since = (await c.sync(bob))["next_batch"]
    await send(c, alice, {
        "@nobody-here:parley.test": {"X": {"a": 1}, "*": {"a": 2}},
        bob.user_id: {"NOSUCHDEVICE": {"a": 3}, bob.device_id: {"a": 4}},
        "@someone:elsewhere.example": {"DEV": {"a": 5}},
    })
    resp = await c.sync(bob, since=since)
    assert [e["content"] for e in to_device(resp)] == [{"a": 4}]
    # An empty messages object is accepted too.
    await send(c, alice, {})


async def test_bad_input(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    path = f"/sendToDevice/{TYPE}/"

    async def put(body: Any = None, raw: bytes | None = None, token: str | None = None,
                  txn: str = "") -> tuple[int, Any]:
        return await c.request("PUT", path + (txn or secrets.token_hex(6)), body,
                               token if token is not None else alice.access_token, raw=raw)

    status, body = await put(raw=b"{not json")
    assert (status, body["errcode"]) == (400, "M_NOT_JSON")
    for bad in ({}, {"messages": []}, {"messages": {bob.user_id: []}},
                {"messages": {bob.user_id: {bob.device_id: "text"}}},
                {"messages": {"not-a-user-id": {"D": {}}}},
                {"messages": {bob.user_id: {"": {}}}}, []):
        status, body = await put(bad)
        assert (status, body["errcode"]) == (400, "M_BAD_JSON"), bad
    status, body = await c.request("PUT", path + "t", {"messages": {}})
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    status, body = await put({"messages": {}}, txn="x" * 300)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    big = {"messages": {bob.user_id: {bob.device_id: {"blob": "x" * 70_000}}}}
    status, body = await put(big)
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    huge = {"messages": {bob.user_id: {bob.device_id: {"blob": "x" * 2_000_000}}}}
    status, body = await put(huge)
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    # Nothing of the rejected requests was stored.
    assert to_device(await c.sync(bob)) == []


async def test_stream_position_survives_deleted_messages(c: Client, server: Server) -> None:
    # After a restart the stream must not restart below positions that clients hold in their
    # tokens (acknowledged rows are deleted, so their max is not enough).
    alice, bob = await c.register(), await c.register()
    await send(c, alice, {bob.user_id: {bob.device_id: {"n": 1}}})
    first = await c.sync(bob)
    await c.sync(bob, since=first["next_batch"])  # acknowledges and deletes it
    async with server.hs.db.connection() as conn:
        restarted_at = await conn.fetchval("SELECT pg_sequence_last_value('to_device_seq')")
    assert restarted_at >= server.hs.to_device.current() > 0
