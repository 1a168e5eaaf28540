"""GET /events, the deprecated (still specified) event stream: a flat list from a sync token."""

from __future__ import annotations

import asyncio

from tests.helpers import Client


async def test_events_from_now_then_wakes_on_a_message(c: Client) -> None:
    alice, bob = await c.register(), await c.register()
    room = await c.create_room(alice, preset="public_chat")
    await c.join(bob, room)
    status, now = await c.request("GET", "/events", token=bob.access_token,
                                  params={"timeout": "0"})
    assert status == 200 and now["chunk"] == [] and now["end"].startswith("s")

    async def later() -> str:
        await asyncio.sleep(0.3)
        return await c.send(alice, room, "hello stream")
    sender = asyncio.create_task(later())
    status, body = await c.request("GET", "/events", token=bob.access_token,
                                   params={"from": now["end"], "timeout": "10000"})
    event_id = await sender
    assert status == 200 and body["start"] == now["end"]
    mine = [e for e in body["chunk"] if e.get("event_id") == event_id]
    assert mine and mine[0]["room_id"] == room and mine[0]["content"]["body"] == "hello stream"
    # from the end: nothing new
    status, again = await c.request("GET", "/events", token=bob.access_token,
                                    params={"from": body["end"], "timeout": "0"})
    assert status == 200 and not [e for e in again["chunk"] if e.get("event_id") == event_id]


async def test_events_bad_token_and_no_token(c: Client) -> None:
    alice = await c.register()
    status, body = await c.request("GET", "/events", token=alice.access_token,
                                   params={"from": "garbage"})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await c.request("GET", "/events", token=alice.access_token,
                                   params={"timeout": "-1"})
    assert status == 400
    for bad in ("x", "-1"):
        status, body = await c.request("GET", "/events", token=alice.access_token,
                                       params={"limit": bad, "timeout": "0"})
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", body
    status, body = await c.request("GET", "/events")
    assert status == 401


async def test_polling_events_brings_the_user_online(c: Client) -> None:
    """Polling /events counts as being online (as /sync without set_presence does)."""
    alice = await c.register()
    status, body = await c.request("GET", f"/presence/{alice.user_id}/status",
                                   token=alice.access_token)
    assert status == 200 and body["presence"] == "offline", body
    status, _ = await c.request("GET", "/events", token=alice.access_token,
                                params={"timeout": "0"})
    assert status == 200
    status, body = await c.request("GET", f"/presence/{alice.user_id}/status",
                                   token=alice.access_token)
    assert status == 200 and body["presence"] == "online", body
