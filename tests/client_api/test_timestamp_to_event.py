"""GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event: both directions, history
visibility, errors."""

from __future__ import annotations

import asyncio

from tests.helpers import Client

V1 = "/_matrix/client/v1"


async def test_timestamp_to_event(c: Client) -> None:
    u = await c.register()
    outsider = await c.register()
    room = await c.create_room(u, preset="private_chat")
    ids = []
    for i in range(3):
        await asyncio.sleep(0.01)
        ids.append(await c.send(u, room, f"m{i}"))
        await asyncio.sleep(0.01)
    ts = []
    for e in ids:
        status, body = await c.request("GET", f"/rooms/{room}/event/{e}", token=u.access_token)
        ts.append(body["origin_server_ts"])
    path = f"{V1}/rooms/{room}/timestamp_to_event"

    async def ask(t: int, d: str) -> tuple[int, dict[str, object]]:
        return await c.request("GET", path, token=u.access_token,
                               params={"ts": str(t), "dir": d})

    status, body = await ask(ts[1], "f")
    assert (status, body) == (200, {"event_id": ids[1], "origin_server_ts": ts[1]})
    status, body = await ask(ts[1] + 1, "f")
    assert body["event_id"] == ids[2]
    status, body = await ask(ts[1] - 1, "b")
    assert body["event_id"] == ids[0]
    status, body = await ask(ts[2] + 10_000, "b")
    assert body["event_id"] == ids[2]
    status, body = await ask(ts[2] + 10_000, "f")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await ask(0, "f")  # the room's first event: its create event
    status2, create = await c.request("GET", f"/rooms/{room}/state/m.room.create/",
                                      token=u.access_token, params={"format": "event"})
    assert body["event_id"] == create["event_id"]
    status, body = await ask(0, "b")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")

    # Someone who never was in the room may not ask.
    status, body = await c.request("GET", path, token=outsider.access_token,
                                   params={"ts": str(ts[1]), "dir": "f"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    for params, code in (({"dir": "f"}, "M_MISSING_PARAM"), ({"ts": "1"}, "M_MISSING_PARAM"),
                         ({"ts": "x", "dir": "f"}, "M_INVALID_PARAM"),
                         ({"ts": "1", "dir": "up"}, "M_INVALID_PARAM"),
                         ({"ts": "-5", "dir": "f"}, "M_INVALID_PARAM")):
        status, body = await c.request("GET", path, token=u.access_token, params=params)
        assert (status, body["errcode"]) == (400, code), params
    status, body = await c.request("GET", f"{V1}/rooms/bad/timestamp_to_event",
                                   token=u.access_token, params={"ts": "1", "dir": "f"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await c.request("GET", f"{V1}/rooms/!nope:localhost/timestamp_to_event",
                                   token=u.access_token, params={"ts": "1", "dir": "f"})
    assert status == 404


async def test_timestamp_respects_history_visibility(c: Client) -> None:
    u = await c.register()
    late = await c.register()
    room = await c.create_room(u, preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}])
    await asyncio.sleep(0.01)
    before = await c.send(u, room, "before")
    await asyncio.sleep(0.01)
    await c.join(late, room)
    status, body = await c.request("GET", f"/rooms/{room}/event/{before}",
                                   token=u.access_token)
    t = body["origin_server_ts"]
    status, body = await c.request("GET", f"{V1}/rooms/{room}/timestamp_to_event",
                                   token=late.access_token, params={"ts": str(t), "dir": "f"})
    assert status == 200
    assert body["event_id"] != before  # their own join, the first event they may see
    status, body = await c.request("GET", f"{V1}/rooms/{room}/timestamp_to_event",
                                   token=late.access_token, params={"ts": str(t), "dir": "b"})
    # Not the message they may not read: the newest event they may see before it is the
    # history visibility change (which the spec shows to those it hides history from).
    status2, hv = await c.request("GET", f"/rooms/{room}/state/m.room.history_visibility/",
                                  token=u.access_token, params={"format": "event"})
    assert (status, body["event_id"]) == (200, hv["event_id"])
