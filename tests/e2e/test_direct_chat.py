"""A 1:1 (is_direct) chat between two nio clients, messages both ways."""

from __future__ import annotations

from collections.abc import Callable

from nio import (
    AsyncClient,
    InviteMemberEvent,
    JoinResponse,
    RoomCreateResponse,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
)

from tests.e2e.conftest import NioFactory, nio_login

TEXT = "m.room.message"


def timeline(resp: SyncResponse, room_id: str) -> list[dict]:
    assert isinstance(resp, SyncResponse), resp
    return [e.source for e in resp.rooms.join[room_id].timeline.events]


async def test_direct_chat_both_ways(nio_user: NioFactory,
                                     nio_client: Callable[..., AsyncClient]) -> None:
    alice = await nio_user("alice")
    bob = await nio_user("bob")
    alice2 = await nio_login(nio_client, alice.user_id, "ALICEPHONE")
    bob_first = await bob.sync(timeout=0)
    alice2_first = await alice2.sync(timeout=0)
    assert isinstance(bob_first, SyncResponse) and isinstance(alice2_first, SyncResponse)

    created = await alice.room_create(is_direct=True, invite=[bob.user_id],
                                      preset=RoomPreset.trusted_private_chat)
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id

    invited = await bob.sync(timeout=5000, since=bob_first.next_batch)
    assert isinstance(invited, SyncResponse), invited
    assert list(invited.rooms.invite) == [room_id]
    assert invited.rooms.join == {}
    state = invited.rooms.invite[room_id].invite_state
    mine = [e for e in state if isinstance(e, InviteMemberEvent)
            and e.state_key == bob.user_id]
    assert len(mine) == 1
    assert mine[0].membership == "invite"
    assert mine[0].content["is_direct"] is True
    assert mine[0].sender == alice.user_id
    # (nio keeps only member/name/alias stripped events; the inviter's own membership is there.)
    assert [e.membership for e in state if isinstance(e, InviteMemberEvent)
            and e.state_key == alice.user_id] == ["join"]

    joined = await bob.join(room_id)
    assert isinstance(joined, JoinResponse), joined
    assert joined.room_id == room_id
    after_join = await bob.sync(timeout=0, since=invited.next_batch)
    assert isinstance(after_join, SyncResponse), after_join
    assert room_id in after_join.rooms.join and room_id not in after_join.rooms.invite
    alice_mark = await alice.sync(timeout=0)
    assert isinstance(alice_mark, SyncResponse)

    sent_a = await alice.room_send(room_id, TEXT, {"msgtype": "m.text", "body": "hi bob"},
                                   tx_id="alice-txn-1")
    assert isinstance(sent_a, RoomSendResponse), sent_a
    sent_b = await bob.room_send(room_id, TEXT, {"msgtype": "m.text", "body": "hi alice"},
                                 tx_id="bob-txn-1")
    assert isinstance(sent_b, RoomSendResponse), sent_b

    # Bob sees both, in order; only his own message carries his transaction id.
    bob_tl = timeline(await bob.sync(timeout=0, since=after_join.next_batch), room_id)
    msgs = [e for e in bob_tl if e["type"] == TEXT]
    assert [e["event_id"] for e in msgs] == [sent_a.event_id, sent_b.event_id]
    assert [e["content"]["body"] for e in msgs] == ["hi bob", "hi alice"]
    assert [e["sender"] for e in msgs] == [alice.user_id, bob.user_id]
    assert "transaction_id" not in msgs[0].get("unsigned", {})
    assert msgs[1]["unsigned"]["transaction_id"] == "bob-txn-1"

    # Alice's sending device sees the same two, with her transaction id on her own message.
    alice_tl = timeline(await alice.sync(timeout=0, since=alice_mark.next_batch), room_id)
    msgs = [e for e in alice_tl if e["type"] == TEXT]
    assert [e["event_id"] for e in msgs] == [sent_a.event_id, sent_b.event_id]
    assert msgs[0]["unsigned"]["transaction_id"] == "alice-txn-1"
    assert "transaction_id" not in msgs[1].get("unsigned", {})

    # Alice's other device sees the room with both messages but no transaction ids at all.
    other = await alice2.sync(timeout=0, since=alice2_first.next_batch,
                              sync_filter={"room": {"timeline": {"limit": 50}}})
    tl = timeline(other, room_id)
    msgs = [e for e in tl if e["type"] == TEXT]
    assert [e["event_id"] for e in msgs] == [sent_a.event_id, sent_b.event_id]
    assert all("transaction_id" not in e.get("unsigned", {}) for e in tl)
    assert tl[0]["type"] == "m.room.create"
    members = {e["state_key"]: e["content"]["membership"] for e in tl
               if e["type"] == "m.room.member"}
    assert members == {alice.user_id: "join", bob.user_id: "join"}
