"""Simplified Sliding Sync (MSC4186) over HTTP: lists and ranges by recency, subscriptions,
required_state (both request dialects, $LAZY and $ME), filters, pos and the long poll, conn_id,
the per-room fields and the extensions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.helpers import Client, User

V4 = "/_matrix/client/v4/sync"
UNSTABLE = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


async def ss(c: Client, user: User, body: dict[str, Any], path: str = V4,
             params: dict[str, str] | None = None) -> dict[str, Any]:
    status, data = await c.request("POST", path, body, user.access_token, params=params)
    assert status == 200, data
    return dict(data)


def all_rooms(rng: list[int], limit: int = 1, **extra: Any) -> dict[str, Any]:
    return {"lists": {"all": {"range": rng, "timeline_limit": limit,
                              "required_state": {"include": [
                                  {"type": "m.room.create", "state_key": ""}]}, **extra}}}


async def test_window_ordered_by_recency_and_moves_on_new_message(c: Client) -> None:
    u = await c.register()
    rooms = [await c.create_room(u, name=f"R{i}") for i in range(4)]
    await c.send(u, rooms[1], "bump")  # rooms[1] is now the most recent
    r = await ss(c, u, all_rooms([0, 1]))
    assert r["lists"]["all"]["count"] == 4
    assert set(r["rooms"]) == {rooms[1], rooms[3]}
    assert r["rooms"][rooms[1]]["lists"] == ["all"]
    first = r["rooms"][rooms[1]]
    assert first["initial"] is True and first["membership"] == "join"
    assert first["name"] == "R1" and first["joined_count"] == 1
    assert [e["content"].get("body") for e in first["timeline"]] == ["bump"]
    assert first["limited"] is True and isinstance(first["prev_batch"], str)
    assert isinstance(first["bump_stamp"], int)
    assert [e["type"] for e in first["required_state"]] == ["m.room.create"]
    assert r["rooms"][rooms[3]]["bump_stamp"] < first["bump_stamp"]
    pos = r["pos"]

    # A message in the oldest room moves it into the window; only it is sent, incrementally.
    eid = await c.send(u, rooms[0], "up")
    r2 = await ss(c, u, {"pos": pos, **all_rooms([0, 1])})
    assert list(r2["rooms"]) == [rooms[0]]
    r0 = r2["rooms"][rooms[0]]
    assert r0["initial"] is True  # never sent on this connection before
    assert r0["timeline"][-1]["event_id"] == eid and r0["num_live"] == 1

    # Nothing new: the same window gives no rooms, at once with timeout 0.
    r3 = await ss(c, u, {"pos": r2["pos"], **all_rooms([0, 1])})
    assert "rooms" not in r3 and r3["lists"]["all"]["count"] == 4

    # Growing the range sends only the rooms not sent yet.
    r4 = await ss(c, u, {"pos": r3["pos"], **all_rooms([0, 3])})
    assert set(r4["rooms"]) == {rooms[2]}


async def test_incremental_room_update_not_initial(c: Client) -> None:
    u = await c.register()
    room = await c.create_room(u, name="Inc")
    r = await ss(c, u, all_rooms([0, 0], limit=5))
    eid = await c.send(u, room, "new one")
    r2 = await ss(c, u, {"pos": r["pos"], **all_rooms([0, 0], limit=5)})
    body = r2["rooms"][room]
    assert "initial" not in body
    assert [e["event_id"] for e in body["timeline"]] == [eid]
    assert body["limited"] is False and body["num_live"] == 1
    assert "name" not in body  # unchanged since it was sent
    await c.request("PUT", f"/rooms/{room}/state/m.room.name", {"name": "Renamed"},
                    u.access_token)
    r3 = await ss(c, u, {"pos": r2["pos"], **all_rooms([0, 0], limit=5)})
    assert r3["rooms"][room]["name"] == "Renamed"


async def test_long_poll_wakes_on_message(c: Client) -> None:
    u = await c.register()
    room = await c.create_room(u)
    r = await ss(c, u, all_rooms([0, 9]))

    async def later() -> str:
        await asyncio.sleep(0.3)
        return await c.send(u, room, "wake")

    t0 = time.monotonic()
    task = asyncio.create_task(later())
    r2 = await ss(c, u, {"pos": r["pos"], "timeout": 10_000, **all_rooms([0, 9])})
    eid = await task
    assert time.monotonic() - t0 < 5
    assert r2["rooms"][room]["timeline"][-1]["event_id"] == eid

    # With nothing new it waits its timeout and answers with no rooms.
    t0 = time.monotonic()
    r3 = await ss(c, u, {"pos": r2["pos"], "timeout": 300, **all_rooms([0, 9])})
    assert time.monotonic() - t0 >= 0.25
    assert "rooms" not in r3 and r3["pos"] != r2["pos"]


async def test_unknown_pos_and_pos_of_another_connection(c: Client) -> None:
    u = await c.register()
    other = await c.register()
    await c.create_room(u)
    r = await ss(c, u, {"conn_id": "main", "txn_id": "t-1", **all_rooms([0, 0])})
    assert r["txn_id"] == "t-1"
    for who, body in ((u, {"pos": "nope"}), (u, {"pos": r["pos"], "conn_id": "other"}),
                      (other, {"pos": r["pos"], "conn_id": "main"})):
        status, data = await c.request("POST", V4, body, who.access_token)
        assert status == 400 and data["errcode"] == "M_UNKNOWN_POS", data
    # The right connection still works, and a retry of the same pos too.
    for _ in range(2):
        await ss(c, u, {"conn_id": "main", "pos": r["pos"], **all_rooms([0, 0])})


async def test_bad_input(c: Client) -> None:
    u = await c.register()
    for body, code in (({"lists": {"a": {"range": [3, 1], "timeline_limit": 1}}},
                        "M_INVALID_PARAM"),
                       ({"lists": {"a": {"ranges": "x", "timeline_limit": 1}}}, "M_INVALID_PARAM"),
                       ({"lists": {"a": {"timeline_limit": -1}}}, "M_INVALID_PARAM"),
                       ({"lists": {"a": {"timeline_limit": 1, "required_state": [["x"]]}}},
                        "M_INVALID_PARAM"),
                       ({"lists": {f"l{i}": {"timeline_limit": 1} for i in range(101)}},
                        "M_BAD_JSON"),
                       ({"timeout": "soon"}, "M_BAD_JSON"),
                       ({"lists": {"bad name": {"timeline_limit": 1}}}, "M_INVALID_PARAM"),
                       ({"set_presence": "away"}, "M_INVALID_PARAM"),
                       ({"room_subscriptions": {"nope": {"timeline_limit": 1}}},
                        "M_INVALID_PARAM"),
                       ({"extensions": {"to_device": {"enabled": True, "since": "x"}}},
                        "M_INVALID_PARAM")):
        status, data = await c.request("POST", V4, body, u.access_token)
        assert status == 400 and data["errcode"] == code, (body, data)
    status, data = await c.request("POST", V4, raw=b"[1]", token=u.access_token)
    assert status == 400 and data["errcode"] in ("M_BAD_JSON", "M_NOT_JSON")
    status, data = await c.request("POST", V4, {})
    assert status == 401


async def test_subscription_required_state_lazy_and_me(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    carol = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    await c.join(carol, room)
    await c.send(bob, room, "from bob")
    # The unstable dialect: [type, state_key] pairs with $LAZY and $ME, pos in the query.
    sub = {"room_subscriptions": {room: {"timeline_limit": 1, "required_state": [
        ["m.room.member", "$LAZY"], ["m.room.member", "$ME"], ["m.room.name", ""]]}}}
    r = await ss(c, alice, sub, path=UNSTABLE)
    body = r["rooms"][room]
    members = {e["state_key"] for e in body["required_state"] if e["type"] == "m.room.member"}
    assert members == {bob.user_id, alice.user_id}  # the sender and $ME, not carol
    assert "lists" not in body and body["joined_count"] == 3
    assert {h["user_id"] for h in body["heroes"]} == {bob.user_id, carol.user_id}
    # The accepted MSC's form: include everything but members, which are lazy.
    sub2 = {"room_subscriptions": {room: {"timeline_limit": 1, "required_state": {
        "include": [{}], "exclude": [{"type": "m.room.join_rules"}], "lazy_members": True}}}}
    r2 = await ss(c, carol, sub2)
    types = {(e["type"], e["state_key"]) for e in r2["rooms"][room]["required_state"]}
    assert ("m.room.create", "") in types and ("m.room.power_levels", "") in types
    assert ("m.room.join_rules", "") not in types
    assert {k for t, k in types if t == "m.room.member"} == {bob.user_id}
    # A room the user has never been in is ignored.
    stranger = await c.register()
    r3 = await ss(c, stranger, sub2)
    assert "rooms" not in r3


async def test_unstable_subscriptions_are_sticky_until_unsubscribed(c: Client) -> None:
    u = await c.register()
    room = await c.create_room(u)
    sub = {"room_subscriptions": {room: {"timeline_limit": 1, "required_state": []}}}
    r = await ss(c, u, sub, path=UNSTABLE)
    assert room in r["rooms"]
    await c.send(u, room, "one")
    r = await ss(c, u, {"pos": r["pos"]}, path=UNSTABLE)  # not sent again, still subscribed
    assert room in r["rooms"]
    r = await ss(c, u, {"pos": r["pos"], "unsubscribe_rooms": [room]}, path=UNSTABLE)
    await c.send(u, room, "two")
    r = await ss(c, u, {"pos": r["pos"]}, path=UNSTABLE)
    assert "rooms" not in r
    # The accepted MSC's path: a subscription lasts one request.
    r = await ss(c, u, sub)
    await c.send(u, room, "three")
    r = await ss(c, u, {"pos": r["pos"]})
    assert "rooms" not in r


async def test_filters_invite_dm_and_room_types(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    plain = await c.create_room(bob)
    space = await c.create_room(bob, creation_content={"type": "m.space"})
    dm = await c.create_room(alice, is_direct=True, invite=[bob.user_id])
    status, _ = await c.request("PUT", f"/user/{bob.user_id}/account_data/m.direct",
                                {alice.user_id: [dm]}, bob.access_token)
    assert status == 200

    def lst(**filters: Any) -> dict[str, Any]:
        return {"lists": {"l": {"range": [0, 9], "timeline_limit": 0, "filters": filters}}}

    r = await ss(c, bob, lst(is_invite=True), path=UNSTABLE)
    assert list(r["rooms"]) == [dm]
    inv = r["rooms"][dm]
    assert inv["membership"] == "invite"
    assert any(e["type"] == "m.room.member" for e in inv["invite_state"])
    r = await ss(c, bob, lst(is_invited=True))
    assert "stripped_state" in r["rooms"][dm]
    r = await ss(c, bob, lst(is_invited=False))
    assert set(r["rooms"]) == {plain, space}
    r = await ss(c, bob, lst(is_dm=True))
    assert set(r["rooms"]) == {dm}
    r = await ss(c, bob, lst(not_room_types=["m.space"], is_dm=False))
    assert set(r["rooms"]) == {plain}
    r = await ss(c, bob, lst(room_types=["m.space"]))
    assert set(r["rooms"]) == {space}
    r = await ss(c, bob, lst(room_types=[None]))
    assert set(r["rooms"]) == {plain, dm}


async def test_filters_encrypted_spaces_and_tags(c: Client) -> None:
    u = await c.register()
    enc = await c.create_room(u, initial_state=[{
        "type": "m.room.encryption", "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    child = await c.create_room(u)
    other = await c.create_room(u)
    space = await c.create_room(u, creation_content={"type": "m.space"})
    status, _ = await c.request("PUT", f"/rooms/{space}/state/m.space.child/{child}",
                                {"via": ["parley.test"]}, u.access_token)
    assert status == 200
    status, _ = await c.request("PUT", f"/user/{u.user_id}/rooms/{other}/tags/m.favourite",
                                {"order": 0.5}, u.access_token)
    assert status == 200

    async def rooms(**filters: Any) -> set[str]:
        r = await ss(c, u, {"lists": {"l": {"timeline_limit": 0, "filters": filters}}})
        assert r["lists"]["l"]["count"] == len(r.get("rooms", {}))
        return set(r.get("rooms", {}))

    assert await rooms() == {enc, child, other, space}  # no range: the whole list
    assert await rooms(is_encrypted=True) == {enc}
    assert await rooms(is_encrypted=False) == {child, other, space}
    assert await rooms(spaces=[space]) == {child}
    assert await rooms(spaces=["!unknown:parley.test"]) == set()
    assert await rooms(tags=["m.favourite"]) == {other}
    assert await rooms(not_tags=["m.favourite"]) == {enc, child, space}


async def test_extensions(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    await c.request("PUT", f"/user/{alice.user_id}/account_data/org.example.x", {"a": 1},
                    alice.access_token)
    await c.request("PUT", f"/user/{alice.user_id}/rooms/{room}/account_data/org.example.y",
                    {"b": 2}, alice.access_token)
    status, _ = await c.request("PUT", f"/sendToDevice/org.example.ping/t{time.time()}",
                                {"messages": {alice.user_id: {alice.device_id: {"n": 1}}}},
                                bob.access_token)
    assert status == 200
    status, data = await c.request("POST", "/keys/upload", {"one_time_keys": {
        "signed_curve25519:AAAA": {"key": "x", "signatures": {}}}}, alice.access_token)
    assert status == 200, data
    ext = {"to_device": {"enabled": True}, "e2ee": {"enabled": True},
           "account_data": {"enabled": True}, "receipts": {"enabled": True},
           "typing": {"enabled": True}}
    body = {**all_rooms([0, 9]), "extensions": ext}
    r = await ss(c, alice, body)
    e = r["extensions"]
    assert [m["content"] for m in e["to_device"]["events"]] == [{"n": 1}]
    assert {x["type"] for x in e["account_data"]["global"]} >= {"org.example.x"}
    assert e["account_data"]["rooms"][room] == [{"type": "org.example.y", "content": {"b": 2}}]
    assert e["e2ee"]["device_one_time_keys_count"].get("signed_curve25519") == 1
    assert isinstance(e["e2ee"]["device_unused_fallback_key_types"], list)

    # to_device: acknowledged by `since`; typing and receipts arrive incrementally, and wake.
    since = e["to_device"]["next_batch"]
    eid = await c.send(bob, room, "read me")
    r = await ss(c, alice, {**body, "pos": r["pos"],
                            "extensions": {**ext, "to_device": {"enabled": True,
                                                                "since": since}}})
    assert r["extensions"]["to_device"]["events"] == []
    # Extension configs are sticky (matrix-rust-sdk sends `enabled` once): a request with
    # only `since` still gets the extension, one with enabled false does not.
    r = await ss(c, alice, {**all_rooms([0, 9]), "pos": r["pos"],
                            "extensions": {"to_device": {"since": since}}})
    assert r["extensions"]["to_device"]["events"] == [] and "e2ee" in r["extensions"]
    r = await ss(c, alice, {**all_rooms([0, 9]), "pos": r["pos"],
                            "extensions": {"e2ee": {"enabled": False}}})
    assert "e2ee" not in r["extensions"] and "to_device" in r["extensions"]

    async def later() -> None:
        await asyncio.sleep(0.2)
        await c.request("PUT", f"/rooms/{room}/typing/{bob.user_id}",
                        {"typing": True, "timeout": 10_000}, bob.access_token)
        await c.request("POST", f"/rooms/{room}/receipt/m.read/{eid}", {}, bob.access_token)

    task = asyncio.create_task(later())
    pos = r["pos"]
    seen_typing = seen_receipt = False
    for _ in range(3):
        r = await ss(c, alice, {**body, "pos": pos, "timeout": 5000})
        pos = r["pos"]
        typing = r["extensions"]["typing"]["rooms"].get(room)
        if typing:
            assert typing["type"] == "m.typing"
            assert typing["content"]["user_ids"] == [bob.user_id]
            seen_typing = True
        receipt = r["extensions"]["receipts"]["rooms"].get(room)
        if receipt:
            assert receipt["type"] == "m.receipt"
            assert bob.user_id in receipt["content"][eid]["m.read"]
            seen_receipt = True
        if seen_typing and seen_receipt:
            break
    await task
    assert seen_typing and seen_receipt

    # e2ee device list changes: bob's new device is a change alice hears of.
    await c.register()  # unrelated user, no change for alice
    status, login = await c.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": bob.user_id},
        "password": "pw-secret-1"})
    assert status == 200
    await c.request("POST", "/keys/upload", {"device_keys": {
        "user_id": bob.user_id, "device_id": login["device_id"],
        "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": {f"ed25519:{login['device_id']}": "k"}, "signatures": {}}},
        login["access_token"])
    found = False
    for _ in range(3):
        r = await ss(c, alice, {**body, "pos": pos, "timeout": 3000})
        pos = r["pos"]
        if bob.user_id in r["extensions"]["e2ee"].get("device_lists", {}).get("changed", []):
            found = True
            break
    assert found


async def test_notification_counts_and_invite_then_join(c: Client) -> None:
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat", invite=[bob.user_id])
    r = await ss(c, bob, all_rooms([0, 9]))
    assert r["rooms"][room]["membership"] == "invite"
    await c.join(bob, room)
    await c.send(alice, room, "one")
    await c.send(alice, room, "two")
    r2 = await ss(c, bob, {"pos": r["pos"], **all_rooms([0, 9], limit=5)})
    body = r2["rooms"][room]
    assert body["membership"] == "join" and body["joined_count"] == 2
    # Sent whole now that it is joined (the invite had stripped state only).
    assert body["initial"] is True
    assert [e["type"] for e in body["required_state"]] == ["m.room.create"]
    assert body["notification_count"] == 2 and body["highlight_count"] == 0


async def test_versions_advertises_simplified_sliding_sync(c: Client) -> None:
    status, data = await c.request("GET", "/_matrix/client/versions")
    assert status == 200
    assert data["unstable_features"]["org.matrix.simplified_msc3575"] is True
