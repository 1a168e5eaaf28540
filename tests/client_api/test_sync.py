"""/sync: initial and incremental, full_state, limited timelines with prev_batch, the long poll,
and the invite and leave sections."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.helpers import Client

LIMIT_2 = '{"room": {"timeline": {"limit": 2}}}'


async def test_initial_sync_shape(c: Client) -> None:
    u = await c.register()
    room = await c.create_room(u, preset="private_chat", name="Shape")
    eid = await c.send(u, room, "hi")
    sync = await c.sync(u)
    assert isinstance(sync["next_batch"], str)
    r = sync["rooms"]["join"][room]
    timeline = r["timeline"]
    assert timeline["events"][-1]["event_id"] == eid
    assert timeline["events"][-1]["content"] == {"msgtype": "m.text", "body": "hi"}
    assert "room_id" not in timeline["events"][-1]
    assert timeline["limited"] is False
    types = [e["type"] for e in timeline["events"]]
    assert types[0] == "m.room.create"
    assert "m.room.name" in types
    assert r["state"]["events"] == []
    assert r["summary"]["m.joined_member_count"] == 1
    # The room's creator is the only member: nothing notified them.
    assert r["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}


async def test_incremental_sync_since(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    first = await c.sync(bob)
    # Nothing new: an incremental sync has no rooms.
    empty = await c.sync(bob, first["next_batch"])
    assert "join" not in empty.get("rooms", {})
    e1 = await c.send(alice, room, "one")
    e2 = await c.send(alice, room, "two")
    nxt = await c.sync(bob, first["next_batch"])
    tl = nxt["rooms"]["join"][room]["timeline"]
    assert [e["event_id"] for e in tl["events"]] == [e1, e2]
    assert tl["limited"] is False
    assert nxt["rooms"]["join"][room]["state"]["events"] == []
    # The transaction id is only shown to the sending device.
    assert "transaction_id" not in tl["events"][0].get("unsigned", {})
    alice_sync = await c.sync(alice, first["next_batch"])
    alice_tl = alice_sync["rooms"]["join"][room]["timeline"]["events"]
    assert "transaction_id" in alice_tl[0]["unsigned"]
    # Re-using the same since token gives the same events; the new one gives nothing.
    again = await c.sync(bob, first["next_batch"])
    assert [e["event_id"] for e in again["rooms"]["join"][room]["timeline"]["events"]] == \
        [e1, e2]
    last = await c.sync(bob, nxt["next_batch"])
    assert room not in last.get("rooms", {}).get("join", {})


async def test_full_state(c: Client) -> None:
    alice = await c.register()
    room = await c.create_room(alice, preset="public_chat", name="Full")
    first = await c.sync(alice)
    eid = await c.send(alice, room, "x")
    full = await c.sync(alice, first["next_batch"], full_state="true")
    r = full["rooms"]["join"][room]
    assert [e["event_id"] for e in r["timeline"]["events"]] == [eid]
    state_types = {(e["type"], e["state_key"]) for e in r["state"]["events"]}
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.power_levels", ""),
            ("m.room.member", alice.user_id), ("m.room.join_rules", "")} <= state_types


async def test_limited_timeline_and_prev_batch(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    first = await c.sync(bob, filter=LIMIT_2)
    ids = [await c.send(alice, room, f"n{i}") for i in range(5)]
    status, _ = await c.request("PUT", f"/rooms/{room}/state/m.room.topic", {"topic": "new"},
                                token=alice.access_token)
    assert status == 200
    ids.append(await c.send(alice, room, "n5"))
    ids.append(await c.send(alice, room, "n6"))
    nxt = await c.sync(bob, first["next_batch"], filter=LIMIT_2)
    r = nxt["rooms"]["join"][room]
    tl = r["timeline"]
    assert [e["event_id"] for e in tl["events"]] == ids[-2:]
    assert tl["limited"] is True
    # The state section carries what changed in the gap (the topic).
    assert [(e["type"], e["content"]) for e in r["state"]["events"]] == [
        ("m.room.topic", {"topic": "new"})]
    # prev_batch continues backwards with /messages right before the timeline.
    status, msgs = await c.request("GET", f"/rooms/{room}/messages", token=bob.access_token,
                                   params={"from": tl["prev_batch"], "dir": "b",
                                           "limit": "3"})
    assert status == 200, msgs
    chunk = msgs["chunk"]
    assert [e["type"] for e in chunk] == ["m.room.topic", "m.room.message", "m.room.message"]
    assert [e["event_id"] for e in chunk[1:]] == [ids[4], ids[3]]
    status, more = await c.request("GET", f"/rooms/{room}/messages", token=bob.access_token,
                                   params={"from": msgs["end"], "dir": "b", "limit": "3"})
    assert [e["event_id"] for e in more["chunk"]] == [ids[2], ids[1], ids[0]]


async def test_state_filtered_out_of_timeline_reaches_state(c: Client) -> None:
    """A timeline `types` filter hides state events from the timeline; the changes still reach
    the client, as the latest value of each such key in `state` (as Synapse does)."""
    alice = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    only_messages = '{"room": {"timeline": {"types": ["m.room.message"], "limit": 10}}}'

    async def topic(text: str) -> None:
        status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.topic",
                                       {"topic": text}, token=alice.access_token)
        assert status == 200, body

    def topics(r: dict[str, Any]) -> list[str]:
        return [e["content"]["topic"] for e in r["state"]["events"]
                if e["type"] == "m.room.topic"]

    first = await c.send(alice, room, "one")
    await topic("after the first message")
    await c.send(alice, room, "two")
    # Initial sync: the topic change sits after the first timeline event.
    init = await c.sync(alice, filter=only_messages)
    r = init["rooms"]["join"][room]
    assert r["timeline"]["events"][0]["event_id"] == first
    assert all(e["type"] == "m.room.message" for e in r["timeline"]["events"])
    assert topics(r) == ["after the first message"]
    # Incremental, not limited: a topic change between two messages.
    await c.send(alice, room, "three")
    await topic("between")
    await c.send(alice, room, "four")
    inc = await c.sync(alice, init["next_batch"], filter=only_messages)
    r = inc["rooms"]["join"][room]
    assert [e["content"]["body"] for e in r["timeline"]["events"]] == ["three", "four"]
    assert topics(r) == ["between"]
    # Incremental with only a filtered-out state change.
    await topic("alone")
    alone = await c.sync(alice, inc["next_batch"], filter=only_messages)
    r = alone["rooms"]["join"][room]
    assert r["timeline"]["events"] == []
    assert topics(r) == ["alone"]
    # Nothing new: the room is not listed.
    quiet = await c.sync(alice, alone["next_batch"], filter=only_messages)
    assert room not in quiet.get("rooms", {}).get("join", {})
    # Incremental and limited: the change after the one message returned.
    await c.send(alice, room, "five")
    await c.send(alice, room, "six")
    await topic("after six")
    one = '{"room": {"timeline": {"types": ["m.room.message"], "limit": 1}}}'
    r = (await c.sync(alice, alone["next_batch"], filter=one))["rooms"]["join"][room]
    assert [e["content"]["body"] for e in r["timeline"]["events"]] == ["six"]
    assert r["timeline"]["limited"] is True
    assert topics(r) == ["after six"]


async def test_timeline_limit_zero_gives_state_only(c: Client) -> None:
    """`timeline.limit` 0 asks for a sync without timeline events (SyTest's "Can pass a JSON
    filter as a query parameter"); it was refused with M_BAD_JSON once inline filters were
    checked against the schema. Negative limits stay refused."""
    alice = await c.register()
    room = await c.create_room(alice, preset="private_chat", name="Zero")
    await c.send(alice, room, "not wanted")
    flt = '{"room": {"state": {"types": ["m.room.member"]}, "timeline": {"limit": 0}}}'
    r = (await c.sync(alice, filter=flt))["rooms"]["join"][room]
    assert r.get("timeline", {}).get("events", []) == []
    assert [(e["type"], e["state_key"]) for e in r["state"]["events"]] == [
        ("m.room.member", alice.user_id)]
    # The same filter stored, then used by id.
    status, body = await c.request("POST", f"/user/{alice.user_id}/filter",
                                   {"room": {"timeline": {"limit": 0}}},
                                   token=alice.access_token)
    assert status == 200, body
    stored = (await c.sync(alice, filter=body["filter_id"]))["rooms"]["join"][room]
    assert stored.get("timeline", {}).get("events", []) == []
    # /messages with a limit-0 room event filter: no events.
    status, msgs = await c.request("GET", f"/rooms/{room}/messages", token=alice.access_token,
                                   params={"dir": "b", "filter": '{"limit": 0}'})
    assert status == 200, msgs
    assert msgs["chunk"] == []
    status, err = await c.request("GET", "/sync", token=alice.access_token,
                                  params={"filter": '{"room": {"timeline": {"limit": -1}}}'})
    assert status == 400 and err["errcode"] == "M_BAD_JSON", err


async def test_long_poll_wakes_on_message(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    first = await c.sync(bob)

    async def send_later() -> str:
        await asyncio.sleep(0.3)
        return await c.send(alice, room, "wake up")

    started = time.monotonic()
    sender = asyncio.create_task(send_later())
    nxt = await c.sync(bob, first["next_batch"], timeout=10_000)
    elapsed = time.monotonic() - started
    eid = await sender
    assert elapsed < 3.0
    assert [e["event_id"] for e in nxt["rooms"]["join"][room]["timeline"]["events"]] == [eid]
    # With nothing happening the poll waits out its timeout and returns empty. (Alice's
    # presence, online since her send, may have come after the message: catch up first.)
    caught_up = await c.sync(bob, nxt["next_batch"])
    started = time.monotonic()
    idle = await c.sync(bob, caught_up["next_batch"], timeout=500)
    assert time.monotonic() - started >= 0.45
    assert "join" not in idle.get("rooms", {})


async def test_long_poll_wakes_on_account_data(c: Client) -> None:
    u = await c.register()
    first = await c.sync(u)

    async def put_later() -> None:
        await asyncio.sleep(0.3)
        status, _ = await c.request("PUT", f"/user/{u.user_id}/account_data/org.example.wake",
                                    {"w": 1}, token=u.access_token)
        assert status == 200

    started = time.monotonic()
    task = asyncio.create_task(put_later())
    nxt = await c.sync(u, first["next_batch"], timeout=10_000)
    await task
    assert time.monotonic() - started < 3.0
    assert nxt["account_data"]["events"] == [{"type": "org.example.wake", "content": {"w": 1}}]


async def test_invite_section(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="private_chat", name="Secret club",
                               topic="shh")
    first = await c.sync(bob)
    assert room not in first.get("rooms", {}).get("invite", {})
    status, _ = await c.request("POST", f"/rooms/{room}/invite", {"user_id": bob.user_id},
                                token=alice.access_token)
    assert status == 200
    nxt = await c.sync(bob, first["next_batch"], timeout=5000)
    events = nxt["rooms"]["invite"][room]["invite_state"]["events"]
    by_type = {(e["type"], e["state_key"]): e for e in events}
    assert by_type[("m.room.name", "")]["content"] == {"name": "Secret club"}
    assert by_type[("m.room.topic", "")]["content"] == {"topic": "shh"}
    assert by_type[("m.room.join_rules", "")]["content"] == {"join_rule": "invite"}
    assert ("m.room.create", "") in by_type
    invite = by_type[("m.room.member", bob.user_id)]
    assert invite["content"]["membership"] == "invite"
    assert invite["sender"] == alice.user_id
    assert by_type[("m.room.member", alice.user_id)]["content"]["membership"] == "join"
    # Nothing of the timeline leaks into the invite.
    assert all(set(e) >= {"type", "state_key", "content", "sender"} for e in events)
    assert room not in nxt["rooms"].get("join", {})
    # Initial sync also shows the pending invite.
    full = await c.sync(bob)
    assert room in full["rooms"]["invite"]
    # Joining moves the room to the join section.
    await c.join(bob, room)
    joined = await c.sync(bob, nxt["next_batch"])
    assert room in joined["rooms"]["join"]
    assert room not in joined["rooms"].get("invite", {})


async def test_leave_section(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    first = await c.sync(bob)
    said = await c.send(alice, room, "before you go")
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, token=bob.access_token)
    assert status == 200
    after = await c.send(alice, room, "after you left")
    nxt = await c.sync(bob, first["next_batch"])
    assert room not in nxt["rooms"].get("join", {})
    left = nxt["rooms"]["leave"][room]
    ids = [e["event_id"] for e in left["timeline"]["events"]]
    assert ids[0] == said
    assert after not in ids
    last = left["timeline"]["events"][-1]
    assert last["type"] == "m.room.member"
    assert last["state_key"] == bob.user_id
    assert last["content"]["membership"] == "leave"
    # Later syncs don't repeat it, and alice's later messages never reach bob.
    later = await c.sync(bob, nxt["next_batch"])
    assert room not in later.get("rooms", {}).get("leave", {})
    assert room not in later.get("rooms", {}).get("join", {})
    # A kicked user sees the kick in the leave section too.
    carol = await c.register()
    await c.join(carol, room)
    before_kick = await c.sync(carol)
    status, _ = await c.request("POST", f"/rooms/{room}/kick",
                                {"user_id": carol.user_id, "reason": "bye"},
                                token=alice.access_token)
    assert status == 200
    kicked = await c.sync(carol, before_kick["next_batch"])
    kick_ev = kicked["rooms"]["leave"][room]["timeline"]["events"][-1]
    assert kick_ev["content"] == {"membership": "leave", "reason": "bye"}
    assert kick_ev["sender"] == alice.user_id
    # Initial sync includes left rooms only when the filter asks for them.
    plain = await c.sync(bob)
    assert room not in plain.get("rooms", {}).get("leave", {})
    with_leave = await c.sync(bob, filter='{"room": {"include_leave": true}}')
    assert room in with_leave["rooms"]["leave"]
    # The state filter applies to left rooms too.
    only_names = await c.sync(bob, filter='{"room": {"include_leave": true,'
                                          ' "state": {"types": ["m.room.name"]}}}')
    left_state = only_names["rooms"]["leave"][room]["state"]["events"]
    assert {e["type"] for e in left_state} <= {"m.room.name"}
    assert len(with_leave["rooms"]["leave"][room]["state"]["events"]) > len(left_state)


async def test_sync_errors(c: Client) -> None:
    u = await c.register()
    status, body = await c.request("GET", "/sync")
    assert status == 401
    assert body["errcode"] == "M_MISSING_TOKEN"
    status, body = await c.request("GET", "/sync", token=u.access_token,
                                   params={"filter": "123456789"})
    assert status == 404
    assert body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("GET", "/sync", token=u.access_token,
                                   params={"since": "garbage"})
    assert status == 400
    assert body["errcode"] == "M_INVALID_PARAM"


async def test_initial_sync_limited_state(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat", name="Busy")
    await c.join(bob, room)
    ids = [await c.send(alice, room, f"b{i}") for i in range(4)]
    sync = await c.sync(bob, filter=LIMIT_2)
    r = sync["rooms"]["join"][room]
    assert [e["event_id"] for e in r["timeline"]["events"]] == ids[-2:]
    assert r["timeline"]["limited"] is True
    state = {(e["type"], e["state_key"]): e for e in r["state"]["events"]}
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.power_levels", ""),
            ("m.room.join_rules", ""), ("m.room.history_visibility", ""),
            ("m.room.member", alice.user_id), ("m.room.member", bob.user_id)} == set(state)
    assert state[("m.room.name", "")]["content"] == {"name": "Busy"}
    assert r["summary"]["m.joined_member_count"] == 2
    assert "m.heroes" not in r["summary"]  # a named room: the counts only


async def test_rejected_invite_in_leave_section(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="private_chat")
    status, _ = await c.request("POST", f"/rooms/{room}/invite", {"user_id": bob.user_id},
                                token=alice.access_token)
    assert status == 200
    first = await c.sync(bob)
    assert room in first["rooms"]["invite"]
    status, body = await c.request("POST", f"/rooms/{room}/leave", {}, token=bob.access_token)
    assert status == 200, body
    nxt = await c.sync(bob, first["next_batch"])
    assert room not in nxt["rooms"].get("invite", {})
    events = nxt["rooms"]["leave"][room]["timeline"]["events"]
    assert events[-1]["type"] == "m.room.member"
    assert events[-1]["state_key"] == bob.user_id
    assert events[-1]["content"]["membership"] == "leave"
    # Alice's room history before the invite stays hidden from bob.
    assert all(e["type"] != "m.room.create" for e in events)


async def test_long_poll_wakes_on_invite(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="private_chat")
    first = await c.sync(bob)

    async def invite_later() -> None:
        await asyncio.sleep(0.3)
        status, _ = await c.request("POST", f"/rooms/{room}/invite", {"user_id": bob.user_id},
                                    token=alice.access_token)
        assert status == 200

    started = time.monotonic()
    task = asyncio.create_task(invite_later())
    nxt = await c.sync(bob, first["next_batch"], timeout=10_000)
    await task
    assert time.monotonic() - started < 3.0
    assert room in nxt["rooms"]["invite"]


async def test_parsed_filters_are_per_user_and_errors_repeat(c: Client) -> None:
    """Parsed filters are shared between requests: a filter id still means the caller's own
    filter, and a bad inline filter is refused every time, not only the first."""
    alice = await c.register()
    bob = await c.register()
    eve = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    for text in ("one", "two", "three"):
        await c.send(alice, room, text)
    ids = {}
    for user, limit in ((alice, 1), (bob, 2)):
        status, body = await c.request("POST", f"/user/{user.user_id}/filter",
                                       {"room": {"timeline": {"limit": limit}}},
                                       token=user.access_token)
        assert status == 200
        ids[user.user_id] = body["filter_id"]
    assert ids[alice.user_id] == ids[bob.user_id]  # per-user ids: the same number
    fid = ids[alice.user_id]
    for _ in range(2):
        a = await c.sync(alice, filter=fid)
        b = await c.sync(bob, filter=fid)
        assert len(a["rooms"]["join"][room]["timeline"]["events"]) == 1
        assert len(b["rooms"]["join"][room]["timeline"]["events"]) == 2
    status, body = await c.request("GET", "/sync", token=eve.access_token,
                                   params={"filter": fid})
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    for _ in range(2):
        status, body = await c.request("GET", "/sync", token=alice.access_token,
                                       params={"filter": '{"room": {"timeline": {"limit": "x"}}}'})
        assert status == 400 and body["errcode"] == "M_BAD_JSON"


async def test_room_summary_heroes_only_for_unnamed_rooms(c: Client) -> None:
    """m.heroes names a room without a name (spec: "Required if the room's m.room.name or
    m.room.canonical_alias state events are unset or empty"); a named room's summary is the
    counts only, as Synapse sends it (SyTest 31sync/16room-summary.pl)."""
    alice, bob, carol = await c.register(), await c.register(), await c.register()
    unnamed = await c.create_room(alice, preset="public_chat")
    named = await c.create_room(alice, preset="public_chat", name="A room name")
    for room in (unnamed, named):
        await c.join(bob, room)
    status, _ = await c.request("POST", f"/rooms/{named}/invite", {"user_id": carol.user_id},
                                alice.access_token)
    assert status == 200
    rooms = (await c.sync(alice))["rooms"]["join"]
    assert rooms[unnamed]["summary"] == {"m.heroes": [bob.user_id], "m.joined_member_count": 2,
                                         "m.invited_member_count": 0}
    assert rooms[named]["summary"] == {"m.joined_member_count": 2, "m.invited_member_count": 1}
    # An emptied name makes the room unnamed again.
    status, _ = await c.request("PUT", f"/rooms/{named}/state/m.room.name", {"name": ""},
                                alice.access_token)
    assert status == 200
    summary = (await c.sync(alice))["rooms"]["join"][named]["summary"]
    assert summary["m.heroes"] == sorted([bob.user_id, carol.user_id])


async def test_newly_joined_room_in_incremental_sync_is_limited(c: Client) -> None:
    """A room joined since the last sync comes with `limited`: the client has none of the
    history before the timeline, even when the timeline filter leaves fewer events than its
    limit (SyTest "Newly joined room has correct timeline in incremental sync")."""
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(alice, preset="public_chat")
    for i in range(4):
        await c.send(alice, room, f"m{i}")
    flt = ('{"room": {"timeline": {"types": ["m.room.message"], "limit": 10},'
           ' "state": {"types": []}}}')
    since = (await c.sync(bob, filter=flt))["next_batch"]
    await c.join(bob, room)
    body = (await c.sync(bob, since, filter=flt))["rooms"]["join"][room]
    assert [e["content"]["body"] for e in body["timeline"]["events"]] == ["m0", "m1", "m2",
                                                                          "m3"]
    assert body["timeline"]["limited"] is True
    # The next incremental sync of the same room is not a gap.
    since = (await c.sync(bob, since, filter=flt))["next_batch"]
    await c.send(alice, room, "after")
    body = (await c.sync(bob, since, filter=flt))["rooms"]["join"][room]
    assert [e["content"]["body"] for e in body["timeline"]["events"]] == ["after"]
    assert body["timeline"]["limited"] is False


async def test_filtered_out_changes_leave_the_room_out_of_an_incremental_sync(
        c: Client) -> None:
    """A displayname change and a message, both kept out by the filter, give an incremental
    sync without the room, not the room with an empty timeline or its state again (SyTest "A
    change to displayname should not result in a full state sync")."""
    alice = await c.register()
    room = await c.create_room(alice)
    status, _ = await c.request("PUT", f"/rooms/{room}/state/a.madeup.test.state",
                                {"my_key": 1}, alice.access_token)
    assert status == 200
    flt = ('{"room": {"timeline": {"types": []}, "state": {"types": ["a.madeup.test.state"]},'
           ' "ephemeral": {"types": []}}, "presence": {"types": []}}')
    body = await c.sync(alice, filter=flt)
    assert [e["type"] for e in body["rooms"]["join"][room]["state"]["events"]] == [
        "a.madeup.test.state"]
    status, _ = await c.request("PUT", f"/rooms/{room}/state/m.room.member/{alice.user_id}",
                                {"membership": "join", "displayname": "boris"},
                                alice.access_token)
    assert status == 200
    await c.send(alice, room, "to wait on")
    body = await c.sync(alice, body["next_batch"], filter=flt)
    assert room not in body.get("rooms", {}).get("join", {}), body
    # A change the filter lets through still comes.
    status, _ = await c.request("PUT", f"/rooms/{room}/state/a.madeup.test.state",
                                {"my_key": 2}, alice.access_token)
    assert status == 200
    body = await c.sync(alice, body["next_batch"], filter=flt)
    assert [e["content"] for e in body["rooms"]["join"][room]["state"]["events"]] == [
        {"my_key": 2}]


async def test_room_joined_and_left_in_one_batch_comes_with_its_state(c: Client) -> None:
    """The client never had the state of a room joined and left since its last sync, so the
    leave section carries it (filtered by the state filter), even when the timeline filter
    keeps every event out."""
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(alice)
    status, _ = await c.request("PUT", f"/rooms/{room}/state/a.madeup.test.state",
                                {"my_key": 1}, alice.access_token)
    assert status == 200
    status, _ = await c.request("POST", f"/rooms/{room}/invite", {"user_id": bob.user_id},
                                alice.access_token)
    assert status == 200
    flt = ('{"room": {"timeline": {"types": []}, "state": {"types": ["a.madeup.test.state"]},'
           ' "include_leave": true}}')
    since = (await c.sync(bob, filter=flt))["next_batch"]
    await c.join(bob, room)
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, bob.access_token)
    assert status == 200
    left = (await c.sync(bob, since, filter=flt))["rooms"]["leave"][room]
    assert [(e["type"], e["content"]) for e in left["state"]["events"]] == [
        ("a.madeup.test.state", {"my_key": 1})]


async def test_lazy_loading_members_in_incremental_syncs(c: Client) -> None:
    """With lazy_load_members an incremental sync carries the member events of the timeline's
    senders the device was not sent yet, once; with include_redundant_members every time
    (SyTest 31sync/15lazy-members.pl)."""
    alice, bob, carol = await c.register(), await c.register(), await c.register()
    room = await c.create_room(alice, preset="public_chat", name="A room name")
    for u in (bob, carol):
        await c.join(u, room)
    for i in range(3):
        await c.send(bob, room, f"bob {i}")

    def members(body: dict[str, Any]) -> list[str]:
        r = body["rooms"]["join"].get(room, {})
        return sorted(e["state_key"] for e in r.get("state", {}).get("events", [])
                      if e["type"] == "m.room.member")

    lazy = '{"room": {"state": {"lazy_load_members": true}, "timeline": {"limit": 3}}}'
    first = await c.sync(alice, filter=lazy)
    assert members(first) == sorted([alice.user_id, bob.user_id])
    await c.send(carol, room, "carol")
    await c.send(bob, room, "bob again")
    second = await c.sync(alice, first["next_batch"], filter=lazy)
    assert members(second) == [carol.user_id]  # bob's was sent already
    await c.send(carol, room, "carol again")
    third = await c.sync(alice, second["next_batch"], filter=lazy)
    assert members(third) == []

    redundant = ('{"room": {"state": {"lazy_load_members": true,'
                 ' "include_redundant_members": true}, "timeline": {"limit": 3}}}')
    await c.send(bob, room, "bob once more")
    await c.send(carol, room, "carol once more")
    fourth = await c.sync(alice, third["next_batch"], filter=redundant)
    assert members(fourth) == sorted([bob.user_id, carol.user_id])


async def test_event_format_federation(c: Client) -> None:
    """A filter with event_format "federation" gets the events as PDUs (prev_events,
    auth_events, depth, hashes, signatures) with their event_id (SyTest 31sync/13)."""
    u = await c.register()
    room = await c.create_room(u)
    event_id = await c.send(u, room, "Test message")
    body = await c.sync(u, filter='{"event_format": "federation", "room": {"timeline":'
                                  ' {"limit": 1}}}')
    [ev] = body["rooms"]["join"][room]["timeline"]["events"]
    assert ev["event_id"] == event_id and ev["room_id"] == room
    assert ev["content"] == {"msgtype": "m.text", "body": "Test message"}
    assert {"prev_events", "auth_events", "depth", "hashes", "signatures",
            "origin_server_ts", "sender", "type"} <= set(ev)
    state = body["rooms"]["join"][room]["state"]["events"]
    assert state and all("auth_events" in e and "event_id" in e for e in state)
    plain = await c.sync(u, filter='{"room": {"timeline": {"limit": 1}}}')
    assert "auth_events" not in plain["rooms"]["join"][room]["timeline"]["events"][0]


async def test_lazy_loading_gapped_sync_has_the_gaps_membership_changes(c: Client) -> None:
    """A gapped (limited) incremental sync with lazy_load_members still carries the member
    events that changed in the gap, a silent joiner's and a leaver's (SyTest "Gapped
    incremental syncs include all state changes", "Old leaves are present")."""
    alice, bob, carol, dave = [await c.register() for _ in range(4)]
    room = await c.create_room(alice, preset="public_chat", name="A room name")
    for u in (bob, carol):
        await c.join(u, room)
    for i in range(3):
        await c.send(bob, room, f"bob {i}")
    lazy = '{"room": {"state": {"lazy_load_members": true}, "timeline": {"limit": 3}}}'

    def members(body: dict[str, Any]) -> dict[str, str]:
        r = body["rooms"]["join"][room]
        assert r["timeline"]["limited"] is True
        return {e["state_key"]: e["content"]["membership"] for e in r["state"]["events"]
                if e["type"] == "m.room.member"}

    first = await c.sync(alice, filter=lazy)
    await c.join(dave, room)
    for i in range(5):
        await c.send(carol, room, f"carol {i}")
    second = await c.sync(alice, first["next_batch"], filter=lazy)
    assert members(second) == {carol.user_id: "join", dave.user_id: "join"}
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, dave.access_token)
    assert status == 200
    for i in range(5):
        await c.send(carol, room, f"carol again {i}")
    third = await c.sync(alice, second["next_batch"], filter=lazy)
    assert members(third) == {dave.user_id: "leave"}
