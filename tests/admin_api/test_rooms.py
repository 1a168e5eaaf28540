"""The rooms admin API over HTTP: list, details, members, state, messages, block,
make_room_admin, delete (a background job with its status) and purge history, and that a delete
and a purge leave sync, /messages and state consistent for the users who remain."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from tests.conftest import Server
from tests.helpers import Client, User

A = "/_synapse/admin"


async def _wait_job(c: Client, admin: User, path: str) -> dict[str, Any]:
    for _ in range(200):
        status, body = await c.request("GET", path, token=admin.access_token)
        assert status == 200, body
        job = body["results"][-1] if "results" in body else body
        if job["status"] in ("complete", "failed"):
            return dict(job)
        await asyncio.sleep(0.05)
    raise AssertionError(f"job at {path} did not finish")


async def test_list_and_inspect_rooms(c: Client, admin: User) -> None:
    t = admin.access_token
    owner, member = await c.register(), await c.register()
    name = "Room " + secrets.token_hex(4)
    room = await c.create_room(owner, preset="public_chat", name=name, topic="about")
    await c.join(member, room)
    status, body = await c.request("GET", A + "/v1/rooms", token=t,
                                   params={"search_term": name})
    assert status == 200, body
    assert body["total_rooms"] == 1 and body["offset"] == 0
    r = body["rooms"][0]
    assert r["room_id"] == room and r["name"] == name
    assert r["joined_members"] == 2 and r["joined_local_members"] == 2
    assert r["creator"] == owner.user_id and r["join_rules"] == "public"
    assert r["federatable"] is True and isinstance(r["state_events"], int)

    # paging over several rooms
    tag = "pg" + secrets.token_hex(3)
    for i in range(3):
        await c.create_room(owner, name=f"{tag} {i}")
    status, body = await c.request("GET", A + "/v1/rooms", token=t,
                                   params={"search_term": tag, "limit": "2"})
    assert [x["name"] for x in body["rooms"]] == [f"{tag} 0", f"{tag} 1"]
    assert body["next_batch"] == 2 and body["total_rooms"] == 3
    status, body = await c.request("GET", A + "/v1/rooms", token=t,
                                   params={"search_term": tag, "from": "2", "dir": "b"})
    assert [x["name"] for x in body["rooms"]] == [f"{tag} 0"] and body["prev_batch"] == 0
    status, body = await c.request("GET", A + "/v1/rooms", token=t,
                                   params={"order_by": "bogus"})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"

    status, body = await c.request("GET", A + f"/v1/rooms/{room}", token=t)
    assert status == 200 and body["topic"] == "about" and body["name"] == name
    status, body = await c.request("GET", A + "/v1/rooms/!nope:parley.test", token=t)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("GET", A + f"/v1/rooms/{room}/members", token=t)
    assert status == 200 and body["total"] == 2
    assert sorted(body["members"]) == sorted([owner.user_id, member.user_id])
    status, body = await c.request("GET", A + f"/v1/rooms/{room}/state", token=t)
    assert status == 200
    assert {e["type"] for e in body["state"]} >= {"m.room.create", "m.room.name",
                                                  "m.room.member"}
    event_id = await c.send(owner, room, "hello admins")
    # the admin is not in the room and still reads its history
    status, body = await c.request("GET", A + f"/v1/rooms/{room}/messages", token=t,
                                   params={"dir": "b", "limit": "5"})
    assert status == 200 and body["chunk"][0]["event_id"] == event_id

    status, body = await c.request("GET", A + "/v1/statistics/database/rooms", token=t)
    assert status == 200
    sizes = {x["room_id"]: x["estimated_size"] for x in body["rooms"]}
    assert sizes[room] > 0


async def test_block_room(c: Client, admin: User) -> None:
    t = admin.access_token
    owner, other = await c.register(), await c.register()
    room = await c.create_room(owner, preset="public_chat")
    status, body = await c.request("GET", A + f"/v1/rooms/{room}/block", token=t)
    assert body == {"block": False}
    status, body = await c.request("PUT", A + f"/v1/rooms/{room}/block", {"block": True},
                                   token=t)
    assert status == 200 and body == {"block": True}
    status, body = await c.request("GET", A + f"/v1/rooms/{room}/block", token=t)
    assert body == {"block": True, "user_id": admin.user_id}
    status, body = await c.request("POST", f"/join/{room}", {}, other.access_token)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    await c.request("PUT", A + f"/v1/rooms/{room}/block", {"block": False}, token=t)
    await c.join(other, room)
    status, body = await c.request("PUT", A + f"/v1/rooms/{room}/block", {"block": 1},
                                   token=t)
    assert status == 400 and body["errcode"] == "M_BAD_JSON"


async def test_make_room_admin(c: Client, admin: User) -> None:
    t = admin.access_token
    owner, target = await c.register(), await c.register()
    room = await c.create_room(owner)  # private: the target is invited and joined
    status, body = await c.request("POST", A + f"/v1/rooms/{room}/make_room_admin",
                                   {"user_id": target.user_id}, token=t)
    assert status == 200, body
    status, body = await c.request("GET", f"/rooms/{room}/state/m.room.power_levels",
                                   token=target.access_token)
    assert status == 200
    assert body["users"][target.user_id] == 100 or body["users"].get(target.user_id, 0) >= 100
    status, body = await c.request("GET", "/joined_rooms", token=target.access_token)
    assert room in body["joined_rooms"]


async def test_delete_room(c: Client, admin: User) -> None:
    t = admin.access_token
    owner, member, bystander = await c.register(), await c.register(), await c.register()
    room = await c.create_room(owner, preset="public_chat", room_alias_name="del"
                               + secrets.token_hex(4))
    await c.join(member, room)
    await c.send(owner, room, "about to go")
    elsewhere = await c.create_room(owner, preset="public_chat")
    await c.join(member, elsewhere)
    await c.join(bystander, elsewhere)
    before = await c.sync(member)

    status, body = await c.request("DELETE", A + f"/v2/rooms/{room}", {
        "new_room_user_id": admin.user_id, "room_name": "Gone", "message": "moved",
        "block": True}, token=t)
    assert status == 200, body
    delete_id = body["delete_id"]
    job = await _wait_job(c, admin, A + f"/v2/rooms/{room}/delete_status")
    assert job["status"] == "complete", job
    assert job["delete_id"] == delete_id
    shutdown = job["shutdown_room"]
    assert sorted(shutdown["kicked_users"]) == sorted([owner.user_id, member.user_id])
    assert len(shutdown["local_aliases"]) == 1 and shutdown["new_room_id"]
    status, body = await c.request("GET", A + f"/v2/rooms/delete_status/{delete_id}", token=t)
    assert status == 200 and body["status"] == "complete"

    # the room is gone for everyone; the members are in the new room
    status, body = await c.request("GET", A + f"/v1/rooms/{room}", token=t)
    assert status == 404
    for u in (owner, member):
        status, body = await c.request("GET", f"/rooms/{room}/messages", token=u.access_token,
                                       params={"dir": "b"})
        assert status in (403, 404), body
        status, body = await c.request("GET", f"/rooms/{room}/state", token=u.access_token)
        assert status in (403, 404), body
        status, body = await c.request("GET", "/joined_rooms", token=u.access_token)
        assert room not in body["joined_rooms"]
        assert shutdown["new_room_id"] in body["joined_rooms"]
    # sync: incremental from before the delete and initial both agree the room is gone
    after = await c.sync(member, since=before["next_batch"])
    assert room not in after.get("rooms", {}).get("join", {})
    initial = await c.sync(member)
    assert room not in initial["rooms"]["join"]
    assert elsewhere in initial["rooms"]["join"]
    # the other room carries on for everyone in it
    await c.send(bystander, elsewhere, "still here")
    status, body = await c.request("GET", f"/rooms/{elsewhere}/messages",
                                   token=member.access_token, params={"dir": "b"})
    assert body["chunk"][0]["content"]["body"] == "still here"
    # and the blocked id cannot be joined
    status, body = await c.request("POST", f"/join/{room}", {}, bystander.access_token)
    assert status in (403, 404)

    status, body = await c.request("DELETE", A + "/v2/rooms/!unknown:parley.test", {}, token=t)
    assert status == 404
    status, body = await c.request("DELETE", A + "/v2/rooms/not-a-room", {}, token=t)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await c.request("GET", A + "/v2/rooms/delete_status/nope", token=t)
    assert status == 404


async def test_purge_history_keeps_state_and_consistency(c: Client, admin: User) -> None:
    t = admin.access_token
    owner, member = await c.register(), await c.register()
    room = await c.create_room(owner, preset="public_chat", name="Before")
    await c.join(member, room)
    since = (await c.sync(member))["next_batch"]
    old = [await c.send(owner, room, f"old {i}") for i in range(5)]
    cut = await c.send(owner, room, "cut here")
    status, _ = await c.request("PUT", f"/rooms/{room}/state/m.room.topic",
                                {"topic": "kept"}, owner.access_token)
    new = [await c.send(member, room, f"new {i}") for i in range(3)]

    status, body = await c.request("POST", A + f"/v1/purge_history/{room}", {
        "purge_up_to_event_id": cut, "delete_local_events": True}, token=t)
    assert status == 200, body
    job = await _wait_job(c, admin, A + f"/v1/purge_history_status/{body['purge_id']}")
    assert job == {"status": "complete"}

    # /messages: the purged events are gone, the rest is there, in order
    status, body = await c.request("GET", f"/rooms/{room}/messages", token=member.access_token,
                                   params={"dir": "b", "limit": "50"})
    assert status == 200
    ids = [e["event_id"] for e in body["chunk"]]
    assert not set(old) & set(ids)
    assert ids[:3] == list(reversed(new)) and cut in ids
    # state survives the purge (name, topic, members)
    status, body = await c.request("GET", f"/rooms/{room}/state/m.room.name",
                                   token=member.access_token)
    assert status == 200 and body["name"] == "Before"
    status, body = await c.request("GET", f"/rooms/{room}/joined_members",
                                   token=member.access_token)
    assert set(body["joined"]) == {owner.user_id, member.user_id}
    for eid in old:
        status, _ = await c.request("GET", f"/rooms/{room}/event/{eid}",
                                    token=member.access_token)
        assert status == 404
    # sync: an incremental sync from before the purge and an initial sync show no purged event
    for sync in (await c.sync(member, since=since), await c.sync(member)):
        timeline = sync["rooms"]["join"][room]["timeline"]["events"]
        seen = {e["event_id"] for e in timeline}
        assert not set(old) & seen
        assert new[-1] in seen
    # the room carries on
    after = await c.send(owner, room, "after the purge")
    sync = await c.sync(member, since=since)
    assert after in {e["event_id"] for e in sync["rooms"]["join"][room]["timeline"]["events"]}

    # keeping local events by default: a purge of only local senders removes nothing
    status, body = await c.request("POST", A + f"/v1/purge_history/{room}/{after}", {},
                                   token=t)
    assert status == 200
    await _wait_job(c, admin, A + f"/v1/purge_history_status/{body['purge_id']}")
    status, body = await c.request("GET", f"/rooms/{room}/event/{new[0]}",
                                   token=member.access_token)
    assert status == 200

    for bad, code in (({}, 400), ({"purge_up_to_ts": "soon"}, 400),
                      ({"purge_up_to_event_id": "$nope"}, 404)):
        status, body = await c.request("POST", A + f"/v1/purge_history/{room}", bad, token=t)
        assert status == code, (bad, body)
    status, body = await c.request("GET", A + "/v1/purge_history_status/nope", token=t)
    assert status == 404


async def test_purge_history_by_time(c: Client, admin: User) -> None:
    t = admin.access_token
    owner = await c.register()
    room = await c.create_room(owner)
    old = await c.send(owner, room, "old")
    await asyncio.sleep(0.01)
    status, body = await c.request("GET", f"/rooms/{room}/event/{old}",
                                   token=owner.access_token)
    ts = body["origin_server_ts"] + 1
    await asyncio.sleep(0.01)
    keep = await c.send(owner, room, "new")
    status, body = await c.request("POST", A + f"/v1/purge_history/{room}", {
        "purge_up_to_ts": ts, "delete_local_events": True}, token=t)
    assert status == 200, body
    job = await _wait_job(c, admin, A + f"/v1/purge_history_status/{body['purge_id']}")
    assert job["status"] == "complete"
    assert (await c.request("GET", f"/rooms/{room}/event/{old}",
                            token=owner.access_token))[0] == 404
    assert (await c.request("GET", f"/rooms/{room}/event/{keep}",
                            token=owner.access_token))[0] == 200


async def test_delete_room_v1_answers_when_done(c: Client, admin: User) -> None:
    t = admin.access_token
    owner = await c.register()
    room = await c.create_room(owner)
    status, body = await c.request("GET", A + f"/v1/rooms/{room}", token=t)
    assert body["joined_local_devices"] == 1 and body["forgotten"] is False
    status, body = await c.request("DELETE", A + f"/v1/rooms/{room}", {}, token=t)
    assert status == 200, body
    assert body["kicked_users"] == [owner.user_id] and body["new_room_id"] is None
    status, body = await c.request("GET", A + f"/v1/rooms/{room}", token=t)
    assert status == 404
    status, body = await c.request("DELETE", A + f"/v2/rooms/{room}", {"block": "yes"},
                                   token=t)
    assert status == 400 and body["errcode"] == "M_BAD_JSON"


async def test_a_job_left_running_by_a_stopped_process_is_failed(c: Client, admin: User,
                                                                 server: Server) -> None:
    """A restart marks the jobs this process did not finish failed (here: a job row left
    'active', then the room admin service started again as a restarted process would)."""
    hs = server.hs
    async with hs.db.connection() as conn:
        await conn.execute(
            "INSERT INTO admin_jobs (id, instance, kind, room_id, status, created_ts)"
            " VALUES ('leftover', $1, 'purge_history', '!x:parley.test', 'active', 0)",
            hs.config.instance_name)
    await hs.admin.rooms.start()
    status, body = await c.request("GET", A + "/v1/purge_history_status/leftover",
                                   token=admin.access_token)
    assert status == 200
    assert body == {"status": "failed", "error": "interrupted by a restart"}


async def test_join_a_user_to_a_room(c: Client, admin: User) -> None:
    t = admin.access_token
    owner, target = await c.register(), await c.register()
    public = await c.create_room(owner, preset="public_chat")
    status, body = await c.request("POST", A + f"/v1/join/{public}",
                                   {"user_id": target.user_id}, token=t)
    assert status == 200 and body == {"room_id": public}
    status, body = await c.request("GET", "/joined_rooms", token=target.access_token)
    assert public in body["joined_rooms"]
    private = await c.create_room(owner)
    status, body = await c.request("POST", A + f"/v1/join/{private}",
                                   {"user_id": target.user_id}, token=t)
    assert status == 403  # the admin is not in the private room
    await c.request("POST", f"/rooms/{private}/invite", {"user_id": admin.user_id},
                    owner.access_token)
    await c.join(admin, private)
    await c.request("PUT", f"/rooms/{private}/state/m.room.power_levels",
                    {"users": {owner.user_id: 100, admin.user_id: 50}, "invite": 0},
                    owner.access_token)
    status, body = await c.request("POST", A + f"/v1/join/{private}",
                                   {"user_id": target.user_id}, token=t)
    assert status == 200, body
    status, body = await c.request("POST", A + f"/v1/join/{private}",
                                   {"user_id": "@x:elsewhere.test"}, token=t)
    assert status == 400
    status, body = await c.request("POST", A + f"/v1/join/{private}", {}, token=t)
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"


async def test_purge_history_takes_purged_messages_off_unread_counts(c: Client,
                                                                     admin: User) -> None:
    owner, member = await c.register(), await c.register()
    room = await c.create_room(owner, preset="public_chat")
    await c.join(member, room)
    sent = [await c.send(owner, room, f"m{i}") for i in range(4)]
    sync = await c.sync(member)  # the counts are now also in the server's memory
    assert sync["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 4
    status, body = await c.request("POST", A + f"/v1/purge_history/{room}", {
        "purge_up_to_event_id": sent[2], "delete_local_events": True},
        token=admin.access_token)
    assert status == 200, body
    await _wait_job(c, admin, A + f"/v1/purge_history_status/{body['purge_id']}")
    sync = await c.sync(member)
    assert sync["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 2
    status, body = await c.request("GET", "/notifications", token=member.access_token)
    assert [n["event"]["event_id"] for n in body["notifications"]] == [sent[3], sent[2]]
