"""Typing notifications, receipts and read markers over real HTTP (client_api/receipts.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.helpers import Client, User


async def room_with_two(c: Client) -> tuple[User, User, str]:
    alice, bob = await c.register(), await c.register()
    room_id = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room_id)
    return alice, bob, room_id


def ephemeral(sync: dict[str, Any], room_id: str, etype: str) -> list[dict[str, Any]]:
    room = sync.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == etype]


def typing_users(sync: dict[str, Any], room_id: str) -> list[str] | None:
    """The last m.typing list for the room in this sync, or None if there is none."""
    events = ephemeral(sync, room_id, "m.typing")
    return list(events[-1]["content"]["user_ids"]) if events else None


def receipts(sync: dict[str, Any], room_id: str) -> list[tuple[str, str, str, Any]]:
    """(event_id, receipt_type, user_id, thread_id) of every receipt in this sync."""
    out = []
    for ev in ephemeral(sync, room_id, "m.receipt"):
        assert set(ev) == {"type", "content"}
        for event_id, by_type in ev["content"].items():
            for rtype, by_user in by_type.items():
                for user_id, data in by_user.items():
                    assert isinstance(data["ts"], int)
                    out.append((event_id, rtype, user_id, data.get("thread_id")))
    return out


async def put_typing(c: Client, user: User, room_id: str, body: Any,
                     who: str | None = None) -> tuple[int, Any]:
    return await c.request("PUT", f"/rooms/{room_id}/typing/{who or user.user_id}", body,
                           user.access_token)


async def post_receipt(c: Client, user: User, room_id: str, event_id: str,
                       rtype: str = "m.read", body: Any = None) -> tuple[int, Any]:
    return await c.request("POST", f"/rooms/{room_id}/receipt/{rtype}/{event_id}",
                           {} if body is None else body, user.access_token)


# ---------------------------------------------------------------------- typing

async def test_typing_shown_to_members_and_expires(c: Client) -> None:
    alice, bob, room_id = await room_with_two(c)
    first = await c.sync(bob)
    assert typing_users(first, room_id) is None  # nobody typing: no m.typing on initial sync

    status, body = await put_typing(c, alice, room_id, {"typing": True, "timeout": 1000})
    assert (status, body) == (200, {})
    seen = await c.sync(bob, since=first["next_batch"])
    assert typing_users(seen, room_id) == [alice.user_id]
    assert typing_users(await c.sync(bob), room_id) == [alice.user_id]  # initial sync too

    # Nobody calls again: the server's timer ends it and wakes the parked long-poll.
    started = time.monotonic()
    expired = await c.sync(bob, since=seen["next_batch"], timeout=5000)
    elapsed = time.monotonic() - started
    assert typing_users(expired, room_id) == []
    assert elapsed < 3.0
    # initial sync after the stop: the room's typing set, now empty (as the reference server)
    assert typing_users(await c.sync(bob), room_id) == []


async def test_typing_wakes_long_poll_and_stops(c: Client) -> None:
    alice, bob, room_id = await room_with_two(c)
    mark = (await c.sync(bob))["next_batch"]

    async def type_later() -> None:
        await asyncio.sleep(0.3)
        assert (await put_typing(c, alice, room_id, {"typing": True, "timeout": 30000}))[0] == 200

    task = asyncio.create_task(type_later())
    started = time.monotonic()
    woke = await c.sync(bob, since=mark, timeout=10000)
    await task
    assert time.monotonic() - started < 2.0
    assert typing_users(woke, room_id) == [alice.user_id]

    # A refresh is no change (nothing new to send); typing=false (no timeout) removes.
    assert (await put_typing(c, alice, room_id, {"typing": True, "timeout": 30000}))[0] == 200
    quiet = await c.sync(bob, since=woke["next_batch"])
    assert typing_users(quiet, room_id) is None
    assert (await put_typing(c, bob, room_id, {"typing": True}))[0] == 200
    both = await c.sync(alice, since=woke["next_batch"])
    assert sorted(typing_users(both, room_id) or []) == sorted([alice.user_id, bob.user_id])
    assert (await put_typing(c, alice, room_id, {"typing": False}))[0] == 200
    after = await c.sync(bob, since=both["next_batch"])
    assert typing_users(after, room_id) == [bob.user_id]


async def test_typing_stops_when_user_leaves_or_is_kicked(c: Client) -> None:
    alice, bob, room_id = await room_with_two(c)
    carol = await c.register()
    await c.join(carol, room_id)
    for user in (bob, carol):
        assert (await put_typing(c, user, room_id, {"typing": True, "timeout": 60000}))[0] == 200
    mark = (await c.sync(alice))["next_batch"]
    assert typing_users(await c.sync(alice), room_id) == [bob.user_id, carol.user_id]

    status, _ = await c.request("POST", f"/rooms/{room_id}/leave", {}, bob.access_token)
    assert status == 200
    after_leave = await c.sync(alice, since=mark)
    assert typing_users(after_leave, room_id) == [carol.user_id]
    status, _ = await c.request("POST", f"/rooms/{room_id}/kick", {"user_id": carol.user_id},
                                alice.access_token)
    assert status == 200
    after_kick = await c.sync(alice, since=after_leave["next_batch"])
    assert typing_users(after_kick, room_id) == []
    # Rejoining does not bring the old typing notice back.
    await c.join(bob, room_id)
    assert typing_users(await c.sync(alice), room_id) == []  # an empty set, nobody typing


async def test_typing_errors(c: Client) -> None:
    alice, bob, room_id = await room_with_two(c)
    carol = await c.register()
    mark = (await c.sync(bob))["next_batch"]
    cases: list[tuple[User, str, str | None, Any, bytes | None, int, str]] = [
        (carol, room_id, None, {"typing": True, "timeout": 1000}, None, 403, "M_FORBIDDEN"),
        (alice, room_id, bob.user_id, {"typing": True}, None, 403, "M_FORBIDDEN"),
        (alice, "!nowhere:parley.test", None, {"typing": True}, None, 403, "M_FORBIDDEN"),
        (alice, "nota-room", None, {"typing": True}, None, 400, "M_INVALID_PARAM"),
        (alice, room_id, None, {"timeout": 1000}, None, 400, "M_BAD_JSON"),
        (alice, room_id, None, {"typing": "yes"}, None, 400, "M_BAD_JSON"),
        (alice, room_id, None, {"typing": True, "timeout": "5"}, None, 400, "M_BAD_JSON"),
        (alice, room_id, None, {"typing": True, "timeout": -1}, None, 400, "M_INVALID_PARAM"),
        (alice, room_id, None, None, b"{not json", 400, "M_NOT_JSON"),
        (alice, room_id, None, None, b"[true]", 400, "M_BAD_JSON"),
    ]
    for user, rid, who, body, raw, want_status, want_code in cases:
        status, data = await c.request("PUT", f"/rooms/{rid}/typing/{who or user.user_id}",
                                       body, user.access_token, raw=raw)
        assert (status, data.get("errcode")) == (want_status, want_code), (body, raw, data)
    status, data = await c.request("PUT", f"/rooms/{room_id}/typing/{alice.user_id}",
                                   {"typing": True})
    assert (status, data["errcode"]) == (401, "M_MISSING_TOKEN")
    # Nothing was recorded by the failed calls.
    assert typing_users(await c.sync(bob, since=mark), room_id) is None


# ---------------------------------------------------------------------- receipts

async def test_public_and_private_receipts(c: Client) -> None:
    alice, bob, room_id = await room_with_two(c)
    ev1 = await c.send(alice, room_id, "one")
    ev2 = await c.send(alice, room_id, "two")
    a_mark = (await c.sync(alice))["next_batch"]
    b_mark = (await c.sync(bob))["next_batch"]

    assert await post_receipt(c, bob, room_id, ev1) == (200, {})
    a_sync = await c.sync(alice, since=a_mark)
    assert receipts(a_sync, room_id) == [(ev1, "m.read", bob.user_id, None)]

    # A private receipt: the owner sees it, nobody else, on incremental or initial sync.
    assert await post_receipt(c, bob, room_id, ev2, "m.read.private") == (200, {})
    b_sync = await c.sync(bob, since=b_mark)
    assert sorted(receipts(b_sync, room_id)) == sorted([
        (ev1, "m.read", bob.user_id, None), (ev2, "m.read.private", bob.user_id, None)])
    assert receipts(await c.sync(alice, since=a_sync["next_batch"]), room_id) == []
    assert receipts(await c.sync(alice), room_id) == [(ev1, "m.read", bob.user_id, None)]
    assert sorted(receipts(await c.sync(bob), room_id)) == sorted(receipts(b_sync, room_id))

    # A newer receipt replaces the older one (the same user, type and thread).
    assert await post_receipt(c, bob, room_id, ev2) == (200, {})
    assert receipts(await c.sync(alice, since=a_sync["next_batch"]), room_id) == [
        (ev2, "m.read", bob.user_id, None)]
    initial = receipts(await c.sync(alice), room_id)
    assert initial == [(ev2, "m.read", bob.user_id, None)]


async def test_receipt_wakes_long_poll(c: Client) -> None:
    alice, bob, room_id = await room_with_two(c)
    ev = await c.send(alice, room_id, "read me")
    mark = (await c.sync(alice))["next_batch"]

    async def read_later() -> None:
        await asyncio.sleep(0.3)
        assert (await post_receipt(c, bob, room_id, ev))[0] == 200

    task = asyncio.create_task(read_later())
    started = time.monotonic()
    woke = await c.sync(alice, since=mark, timeout=10000)
    await task
    assert time.monotonic() - started < 2.0
    assert receipts(woke, room_id) == [(ev, "m.read", bob.user_id, None)]


async def test_threaded_receipts(c: Client) -> None:
    alice, bob, room_id = await room_with_two(c)
    root = await c.send(alice, room_id, "thread root")
    status, data = await c.request(
        "PUT", f"/rooms/{room_id}/send/m.room.message/t1",
        {"msgtype": "m.text", "body": "in thread",
         "m.relates_to": {"rel_type": "m.thread", "event_id": root}}, alice.access_token)
    assert status == 200, data
    reply = data["event_id"]
    mark = (await c.sync(alice))["next_batch"]

    assert await post_receipt(c, bob, room_id, reply, body={"thread_id": root}) == (200, {})
    assert await post_receipt(c, bob, room_id, root, body={"thread_id": "main"}) == (200, {})
    assert await post_receipt(c, bob, room_id, root) == (200, {})  # unthreaded, kept apart
    got = receipts(await c.sync(alice, since=mark), room_id)
    assert sorted(got, key=str) == sorted([
        (reply, "m.read", bob.user_id, root), (root, "m.read", bob.user_id, "main"),
        (root, "m.read", bob.user_id, None)], key=str)

    # The event must be in the thread named.
    for event_id, thread_id in ((reply, "main"), (root, reply)):
        status, data = await post_receipt(c, bob, room_id, event_id,
                                          body={"thread_id": thread_id})
        assert (status, data["errcode"]) == (400, "M_INVALID_PARAM"), (event_id, thread_id)


async def test_receipt_errors(c: Client) -> None:
    alice, bob, room_id = await room_with_two(c)
    carol = await c.register()
    ev = await c.send(alice, room_id, "hello")
    mark = (await c.sync(alice))["next_batch"]
    other_room = await c.create_room(carol)
    other_ev = await c.send(carol, other_room, "elsewhere")
    cases: list[tuple[User, str, str, str, Any, int, str]] = [
        (carol, room_id, "m.read", ev, {}, 403, "M_FORBIDDEN"),
        (bob, "!nowhere:parley.test", "m.read", ev, {}, 404, "M_NOT_FOUND"),
        (bob, room_id, "m.read", "$nope:parley.test", {}, 404, "M_NOT_FOUND"),
        (bob, room_id, "m.read", other_ev, {}, 404, "M_NOT_FOUND"),
        (bob, room_id, "m.read", "not-an-event", {}, 400, "M_INVALID_PARAM"),
        (bob, room_id, "m.unknown", ev, {}, 400, "M_INVALID_PARAM"),
        (bob, room_id, "m.read", ev, {"thread_id": ""}, 400, "M_INVALID_PARAM"),
        (bob, room_id, "m.read", ev, {"thread_id": 5}, 400, "M_INVALID_PARAM"),
        (bob, room_id, "m.read", ev, {"thread_id": None}, 400, "M_INVALID_PARAM"),
        (bob, room_id, "m.read", ev, {"thread_id": "thread"}, 400, "M_INVALID_PARAM"),
        (bob, room_id, "m.fully_read", ev, {"thread_id": "main"}, 400, "M_INVALID_PARAM"),
        (bob, room_id, "m.read", ev, [1], 400, "M_BAD_JSON"),
    ]
    for user, rid, rtype, event_id, body, want_status, want_code in cases:
        status, data = await post_receipt(c, user, rid, event_id, rtype, body)
        assert (status, data.get("errcode")) == (want_status, want_code), (rtype, event_id, body)
    status, data = await c.request("POST", f"/rooms/{room_id}/receipt/m.read/{ev}",
                                   raw=b"{oops", token=bob.access_token)
    assert (status, data["errcode"]) == (400, "M_NOT_JSON")
    # Nothing was stored by the failed calls.
    assert receipts(await c.sync(alice, since=mark), room_id) == []
    assert receipts(await c.sync(alice), room_id) == []


# ---------------------------------------------------------------------- read markers

async def fully_read(c: Client, user: User, room_id: str) -> tuple[int, Any]:
    return await c.request(
        "GET", f"/user/{user.user_id}/rooms/{room_id}/account_data/m.fully_read",
        token=user.access_token)


async def test_read_markers(c: Client) -> None:
    alice, bob, room_id = await room_with_two(c)
    ev1 = await c.send(alice, room_id, "one")
    ev2 = await c.send(alice, room_id, "two")
    a_mark = (await c.sync(alice))["next_batch"]
    b_mark = (await c.sync(bob))["next_batch"]
    assert (await fully_read(c, bob, room_id))[0] == 404

    status, data = await c.request("POST", f"/rooms/{room_id}/read_markers",
                                   {"m.fully_read": ev1, "m.read": ev1,
                                    "m.read.private": ev2}, bob.access_token)
    assert (status, data) == (200, {})
    assert await fully_read(c, bob, room_id) == (200, {"event_id": ev1})
    b_sync = await c.sync(bob, since=b_mark)
    room = b_sync["rooms"]["join"][room_id]
    assert {"type": "m.fully_read", "content": {"event_id": ev1}} in \
        room["account_data"]["events"]
    assert sorted(receipts(b_sync, room_id)) == sorted([
        (ev1, "m.read", bob.user_id, None), (ev2, "m.read.private", bob.user_id, None)])
    a_sync = await c.sync(alice, since=a_mark)
    assert receipts(a_sync, room_id) == [(ev1, "m.read", bob.user_id, None)]
    assert "account_data" not in a_sync.get("rooms", {}).get("join", {}).get(room_id, {}) or \
        a_sync["rooms"]["join"][room_id]["account_data"]["events"] == []

    # The receipt endpoint with m.fully_read moves the marker too (and is no receipt).
    assert await post_receipt(c, bob, room_id, ev2, "m.fully_read") == (200, {})
    assert await fully_read(c, bob, room_id) == (200, {"event_id": ev2})
    assert receipts(await c.sync(alice, since=a_sync["next_batch"]), room_id) == []

    # Clients may not write m.fully_read directly.
    status, data = await c.request(
        "PUT", f"/user/{bob.user_id}/rooms/{room_id}/account_data/m.fully_read",
        {"event_id": ev1}, bob.access_token)
    assert status == 400
    assert await fully_read(c, bob, room_id) == (200, {"event_id": ev2})


async def test_read_markers_errors_store_nothing(c: Client) -> None:
    alice, bob, room_id = await room_with_two(c)
    carol = await c.register()
    ev = await c.send(alice, room_id, "one")
    mark = (await c.sync(alice))["next_batch"]
    cases: list[tuple[User, Any, bytes | None, int, str]] = [
        (bob, {"m.fully_read": "$missing:parley.test", "m.read": ev}, None, 404, "M_NOT_FOUND"),
        (bob, {"m.fully_read": ev, "m.read": "$missing:parley.test"}, None, 404,
         "M_NOT_FOUND"),
        (bob, {"m.fully_read": ev, "m.read.private": "bad"}, None, 400, "M_INVALID_PARAM"),
        (bob, {"m.fully_read": 7, "m.read": ev}, None, 400, "M_BAD_JSON"),
        (bob, {"m.read": ev, "m.read.private": ["x"]}, None, 400, "M_BAD_JSON"),
        (carol, {"m.fully_read": ev}, None, 403, "M_FORBIDDEN"),
        (bob, None, b"nope", 400, "M_NOT_JSON"),
        (bob, None, b"", 400, "M_NOT_JSON"),
    ]
    for user, body, raw, want_status, want_code in cases:
        status, data = await c.request("POST", f"/rooms/{room_id}/read_markers", body,
                                       user.access_token, raw=raw)
        assert (status, data.get("errcode")) == (want_status, want_code), (body, raw, data)
    assert (await fully_read(c, bob, room_id))[0] == 404
    assert receipts(await c.sync(alice, since=mark), room_id) == []
    assert receipts(await c.sync(bob), room_id) == []
