"""The rooms admin API's reads of events whatever the admin's membership (context,
timestamp_to_event, fetch_event) and the forward extremities (list, and clearing the extra
ones only when that leaves the room's state as it is)."""

from __future__ import annotations

import secrets

from tests.conftest import Server
from tests.helpers import Client, User

A = "/_synapse/admin"


async def _event(c: Client, admin: User, event_id: str) -> dict[str, object]:
    status, body = await c.request("GET", A + f"/v1/fetch_event/{event_id}",
                                   token=admin.access_token)
    assert status == 200, body
    return dict(body["event"])


async def test_fetch_event(c: Client, admin: User) -> None:
    owner = await c.register()
    room = await c.create_room(owner)  # private: the admin is not in it
    event_id = await c.send(owner, room, "secret words")
    ev = await _event(c, admin, event_id)
    assert ev["event_id"] == event_id and ev["room_id"] == room
    assert ev["sender"] == owner.user_id and ev["type"] == "m.room.message"
    assert ev["content"] == {"msgtype": "m.text", "body": "secret words"}
    for key in ("auth_events", "prev_events", "depth", "hashes", "signatures",
                "origin_server_ts"):
        assert key in ev, key
    # a redacted event is shown as the server has it, with what redacted it
    status, body = await c.request("PUT", f"/rooms/{room}/redact/{event_id}/t1", {},
                                   owner.access_token)
    assert status == 200, body
    ev = await _event(c, admin, event_id)
    assert ev["content"] == {"msgtype": "m.text", "body": "secret words"}
    unsigned = ev["unsigned"]
    assert isinstance(unsigned, dict)
    assert unsigned["redacted_because"]["event_id"] == body["event_id"]

    status, body = await c.request("GET", A + "/v1/fetch_event/$nope", token=admin.access_token)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("GET", A + "/v1/fetch_event/nope", token=admin.access_token)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"


async def test_context_regardless_of_membership(c: Client, admin: User) -> None:
    t = admin.access_token
    owner = await c.register()
    room = await c.create_room(owner, name="private")
    sent = [await c.send(owner, room, f"m{i}") for i in range(5)]
    status, body = await c.request("GET", f"/rooms/{room}/context/{sent[2]}", token=t)
    assert status == 403  # the client endpoint: the admin is not in the room
    status, body = await c.request("GET", A + f"/v1/rooms/{room}/context/{sent[2]}", token=t,
                                   params={"limit": "4"})
    assert status == 200, body
    assert body["event"]["event_id"] == sent[2]
    assert [e["event_id"] for e in body["events_before"]] == [sent[1], sent[0]]
    assert [e["event_id"] for e in body["events_after"]] == [sent[3], sent[4]]
    assert isinstance(body["start"], str) and isinstance(body["end"], str)
    names = [e for e in body["state"] if e["type"] == "m.room.name"]
    assert names and names[0]["content"] == {"name": "private"}
    # the tokens page on with /messages
    status, page = await c.request("GET", A + f"/v1/rooms/{room}/messages", token=t,
                                   params={"from": body["end"], "dir": "f"})
    assert status == 200 and page["chunk"] == []
    status, body = await c.request(
        "GET", A + f"/v1/rooms/{room}/context/{sent[2]}", token=t,
        params={"filter": '{"types": ["m.room.member"]}', "limit": "20"})
    assert status == 200 and body["events_after"] == []

    other = await c.create_room(owner)
    for path, code, errcode in (
            (f"/v1/rooms/{other}/context/{sent[2]}", 404, "M_NOT_FOUND"),
            (f"/v1/rooms/{room}/context/$nope", 404, "M_NOT_FOUND"),
            (f"/v1/rooms/{room}/context/nope", 400, "M_INVALID_PARAM"),
            (f"/v1/rooms/!nope:parley.test/context/{sent[2]}", 404, "M_NOT_FOUND"),
            (f"/v1/rooms/nope/context/{sent[2]}", 400, "M_INVALID_PARAM"),
            (f"/v1/rooms/{room}/context/{sent[2]}?limit=x", 400, "M_INVALID_PARAM"),
            (f"/v1/rooms/{room}/context/{sent[2]}?filter=%7B", 400, "M_NOT_JSON")):
        status, body = await c.request("GET", A + path, token=t)
        assert status == code and body["errcode"] == errcode, (path, body)


async def test_timestamp_to_event(c: Client, admin: User) -> None:
    t = admin.access_token
    owner = await c.register()
    room = await c.create_room(owner)
    first, second = await c.send(owner, room, "one"), await c.send(owner, room, "two")
    ts1 = int(str((await _event(c, admin, first))["origin_server_ts"]))
    ts2 = int(str((await _event(c, admin, second))["origin_server_ts"]))
    path = A + f"/v1/rooms/{room}/timestamp_to_event"
    status, body = await c.request("GET", path, token=t, params={"ts": str(ts2), "dir": "f"})
    assert status == 200 and body["origin_server_ts"] == ts2, body
    assert body["event_id"] in (first, second) if ts1 == ts2 else body["event_id"] == second
    status, body = await c.request("GET", path, token=t, params={"ts": str(ts2 + 10_000),
                                                                "dir": "b"})
    assert status == 200 and body == {"event_id": second, "origin_server_ts": ts2}
    status, body = await c.request("GET", path, token=t, params={"ts": str(ts2 + 10_000)})
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"  # dir defaults to f
    status, body = await c.request("GET", path, token=t, params={"ts": "0", "dir": "b"})
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    for params, errcode in (({}, "M_MISSING_PARAM"), ({"ts": "x"}, "M_INVALID_PARAM"),
                            ({"ts": "-1"}, "M_INVALID_PARAM"),
                            ({"ts": "1", "dir": "up"}, "M_INVALID_PARAM")):
        status, body = await c.request("GET", path, token=t, params=params)
        assert status == 400 and body["errcode"] == errcode, (params, body)
    status, body = await c.request("GET", A + "/v1/rooms/!nope:parley.test/timestamp_to_event",
                                   token=t, params={"ts": "0"})
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def _fork(server: Server, room: str, event_id: str) -> None:
    """Make `event_id` a forward extremity again beside the latest, as a branch of the DAG
    received over federation would, and have the room reloaded from the database."""
    async with server.hs.db.connection() as conn:
        await conn.execute("INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2)",
                           room, event_id)
    server.hs.rooms.rooms.drop(room)


async def test_forward_extremities_cleared_when_the_state_agrees(c: Client, admin: User,
                                                                 server: Server) -> None:
    t = admin.access_token
    owner = await c.register()
    alias = "fx" + secrets.token_hex(4)
    room = await c.create_room(owner, room_alias_name=alias)
    older = await c.send(owner, room, "a branch")
    latest = await c.send(owner, room, "the latest")
    path = A + f"/v1/rooms/{room}/forward_extremities"
    status, body = await c.request("GET", path, token=t)
    assert status == 200 and body["count"] == 1, body
    r = body["results"][0]
    assert r["event_id"] == latest and isinstance(r["state_group"], int)
    assert isinstance(r["depth"], int) and r["received_ts"] is None
    status, body = await c.request("DELETE", path, token=t)
    assert status == 200 and body == {"deleted": 0}

    await _fork(server, room, older)
    status, body = await c.request("GET", A + f"/v1/rooms/%23{alias}:parley.test"
                                   "/forward_extremities", token=t)
    assert status == 200 and body["count"] == 2, body
    assert {x["event_id"] for x in body["results"]} == {older, latest}
    status, body = await c.request("DELETE", path, token=t)
    assert status == 200 and body == {"deleted": 1}, body
    status, body = await c.request("GET", path, token=t)
    assert [x["event_id"] for x in body["results"]] == [latest]
    after = await c.send(owner, room, "after")
    assert (await _event(c, admin, after))["prev_events"] == [latest]
    status, body = await c.request("GET", path, token=t)
    assert [x["event_id"] for x in body["results"]] == [after]


async def test_forward_extremities_kept_when_clearing_would_change_the_state(
        c: Client, admin: User, server: Server) -> None:
    t = admin.access_token
    owner = await c.register()
    room = await c.create_room(owner)
    older = await c.send(owner, room, "before the topic")
    status, _ = await c.request("PUT", f"/rooms/{room}/state/m.room.topic", {"topic": "new"},
                                owner.access_token)
    assert status == 200
    latest = await c.send(owner, room, "the latest")
    await _fork(server, room, older)
    # the latest comes after the topic change: keeping it alone keeps the room's state
    path = A + f"/v1/rooms/{room}/forward_extremities"
    status, body = await c.request("DELETE", path, token=t)
    assert status == 200 and body == {"deleted": 1}, body

    # A latest extremity on a branch without the topic (made here by giving it the state of
    # the event before the topic change, as an event of another server's branch would have):
    # keeping it alone would drop the topic from the room, so nothing is deleted.
    await _fork(server, room, older)
    async with server.hs.db.connection() as conn:
        await conn.execute(
            "UPDATE events SET state_group = (SELECT state_group FROM events"
            " WHERE event_id = $2) WHERE event_id = $1", latest, older)
    status, body = await c.request("DELETE", path, token=t)
    assert status == 400 and body["errcode"] == "M_UNKNOWN", body
    status, body = await c.request("GET", path, token=t)
    assert {x["event_id"] for x in body["results"]} == {older, latest}
    status, state = await c.request("GET", f"/rooms/{room}/state/m.room.topic",
                                    token=owner.access_token)
    assert state == {"topic": "new"}

    for p, code, errcode in (("/v1/rooms/!nope:parley.test/forward_extremities", 404,
                              "M_NOT_FOUND"),
                             ("/v1/rooms/nope/forward_extremities", 400, "M_INVALID_PARAM"),
                             ("/v1/rooms/%23nope:parley.test/forward_extremities", 404,
                              "M_NOT_FOUND")):
        for method in ("GET", "DELETE"):
            status, body = await c.request(method, A + p, token=t)
            assert status == code and body["errcode"] == errcode, (method, p, body)
