"""A 100-member public room: every member has a long-poll parked and every one receives the
message (nio clients for a few members, raw HTTP long-polls for the rest)."""

from __future__ import annotations

import asyncio
import json
import time

from nio import (
    JoinedMembersResponse,
    JoinResponse,
    RoomCreateResponse,
    RoomPreset,
    RoomSendResponse,
    RoomVisibility,
    SyncResponse,
)

from tests.conftest import Server
from tests.e2e.conftest import NioFactory, new_name
from tests.helpers import Client, User

MEMBERS = 100
NIO_MEMBERS = 4  # alice (creator) and three more
SMALL = json.dumps({"room": {"timeline": {"limit": 1},
                             "state": {"lazy_load_members": True}}})


async def register_fast(raw: Client) -> User:
    """No password, so no password hashing: registration stays cheap for 96 users."""
    status, data = await raw.request("POST", "/register", {
        "username": new_name("member"), "auth": {"type": "m.login.dummy"}})
    assert status == 200, data
    return User(data["user_id"], data["access_token"], data["device_id"])


async def test_hundred_members_all_receive(server: Server, raw: Client,
                                           nio_user: NioFactory) -> None:
    nios = [await nio_user(p) for p in ("alice", "bob", "carol", "dave")]
    alice = nios[0]
    created = await alice.room_create(visibility=RoomVisibility.public, name="big room",
                                      preset=RoomPreset.public_chat)
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id

    raws = list(await asyncio.gather(*(register_fast(raw) for _ in range(MEMBERS - NIO_MEMBERS))))
    for c in nios[1:]:
        joined = await c.join(room_id)
        assert isinstance(joined, JoinResponse), joined
    await asyncio.gather(*(raw.join(u, room_id) for u in raws))

    members = await alice.joined_members(room_id)
    assert isinstance(members, JoinedMembersResponse), members
    assert {m.user_id for m in members.members} == \
        {c.user_id for c in nios} | {u.user_id for u in raws}
    assert len(members.members) == MEMBERS

    # A member's first sync sets them online (presence), which is news to the others: let that
    # settle before taking the marks below.
    everyone = [User(c.user_id, c.access_token, c.device_id) for c in nios] + raws
    await asyncio.gather(*(raw.sync(u, filter=SMALL) for u in everyone))
    # Everyone catches up first, so the long-polls below wait for the message only.
    nio_marks = await asyncio.gather(*(c.sync(timeout=0, sync_filter=json.loads(SMALL))
                                       for c in nios))
    for m in nio_marks:
        assert isinstance(m, SyncResponse), m
        assert room_id in m.rooms.join
    raw_marks = await asyncio.gather(*(raw.sync(u, filter=SMALL) for u in raws))
    for m in raw_marks:
        assert room_id in m["rooms"]["join"]

    waiting_before = server.hs.notifier.waiting_users
    nio_polls = [asyncio.ensure_future(c.sync(timeout=20000, since=m.next_batch))
                 for c, m in zip(nios, nio_marks, strict=True)]
    raw_polls = [asyncio.ensure_future(raw.sync(u, m["next_batch"], timeout=20000))
                 for u, m in zip(raws, raw_marks, strict=True)]
    deadline = time.monotonic() + 10
    while server.hs.notifier.waiting_users < waiting_before + MEMBERS:
        assert time.monotonic() < deadline, "long-polls did not park"
        assert not any(p.done() for p in nio_polls + raw_polls), "a long-poll returned early"
        await asyncio.sleep(0.02)

    started = time.monotonic()
    sent = await alice.room_send(room_id, "m.room.message",
                                 {"msgtype": "m.text", "body": "hello, all 100"})
    assert isinstance(sent, RoomSendResponse), sent
    nio_results = await asyncio.gather(*nio_polls)
    raw_results = await asyncio.gather(*raw_polls)
    elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed  # all woke on the message, none ran into its timeout

    for c, r in zip(nios, nio_results, strict=True):
        assert isinstance(r, SyncResponse), r
        events = [e.source for e in r.rooms.join[room_id].timeline.events]
        assert [e["event_id"] for e in events] == [sent.event_id], c.user_id
        assert events[0]["content"]["body"] == "hello, all 100"
        assert events[0]["sender"] == alice.user_id
    for u, r in zip(raws, raw_results, strict=True):
        events = r["rooms"]["join"][room_id]["timeline"]["events"]
        assert [e["event_id"] for e in events] == [sent.event_id], u.user_id
        assert events[0]["content"] == {"msgtype": "m.text", "body": "hello, all 100"}
        assert "transaction_id" not in events[0].get("unsigned", {})
