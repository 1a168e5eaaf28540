"""Two Parley servers: a user of A joins a room of B that has history (shared history
visibility) and pages /messages back; A fetches that history with /backfill and serves it in
its topological place, without it showing up in /sync as new."""

from __future__ import annotations

from typing import Any

from tests.federation.conftest import Factory, FedServer
from tests.federation.test_rooms import eventually
from tests.helpers import Client, User


async def _page_back(c: Client, user: User, room_id: str, limit: int) -> list[dict[str, Any]]:
    """Every event /messages gives going back from the end, newest first."""
    events: list[dict[str, Any]] = []
    params = {"dir": "b", "limit": str(limit)}
    for _ in range(50):
        status, body = await c.request("GET", f"/rooms/{room_id}/messages",
                                       token=user.access_token, params=params)
        assert status == 200, body
        events += body["chunk"]
        if "end" not in body:
            return events
        params = {**params, "from": body["end"]}
    raise AssertionError("pagination did not end")


async def test_paging_back_fetches_history_from_before_the_join(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob = await a.client.register("alice"), await b.client.register("bob")
    room_id = await b.client.create_room(bob, preset="public_chat", name="History")
    status, body = await b.client.request(
        "PUT", f"/rooms/{room_id}/state/m.room.history_visibility",
        {"history_visibility": "shared"}, bob.access_token)
    assert status == 200, body
    old = [f"old {i}" for i in range(25)]
    for text in old:
        await b.client.send(bob, room_id, text)
    status, _ = await a.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                       params={"via": b.name})
    assert status == 200
    # Nothing fetched yet: the join's answer holds state, not history.
    assert await a.hs.db.fetchval("SELECT count(*) FROM events WHERE backfilled") == 0
    sync = await a.client.sync(alice)
    since = sync["next_batch"]
    await b.client.send(bob, room_id, "after the join")

    async def arrived() -> bool:  # by /sync: /messages would backfill everything at once
        got = await a.client.sync(alice, since=since)
        timeline = got.get("rooms", {}).get("join", {}).get(room_id, {}).get(
            "timeline", {}).get("events", [])
        return any(e.get("content", {}).get("body") == "after the join" for e in timeline)

    await eventually(arrived)
    assert await a.hs.db.fetchval("SELECT count(*) FROM events WHERE backfilled") == 0
    # Paging back in small pages: the whole history, in order, the join in its place.
    got = list(reversed(await _page_back(a.client, alice, room_id, 7)))
    kinds = [(e["type"], e.get("content", {}).get("body"),
              e.get("content", {}).get("membership") if e["type"] == "m.room.member" else None)
             for e in got]
    texts = [k[1] for k in kinds if k[0] == "m.room.message"]
    assert texts == old + ["after the join"]
    assert kinds[0][0] == "m.room.create"
    alice_join = next(i for i, e in enumerate(got) if e["type"] == "m.room.member"
                      and e["state_key"] == alice.user_id)
    last_old = max(i for i, e in enumerate(got) if e.get("content", {}).get("body") in old)
    after = next(i for i, e in enumerate(got)
                 if e.get("content", {}).get("body") == "after the join")
    assert last_old < alice_join < after
    # The same order as on B.
    on_b = list(reversed(await _page_back(b.client, bob, room_id, 50)))
    assert [e["event_id"] for e in got] == [e["event_id"] for e in on_b]
    assert int(await a.hs.db.fetchval("SELECT count(*) FROM events WHERE backfilled")) >= 25
    # History is not news: an incremental sync shows no old message.
    sync = await a.client.sync(alice, since=since)
    timeline = sync.get("rooms", {}).get("join", {}).get(room_id, {}).get(
        "timeline", {}).get("events", [])
    assert not [e for e in timeline if e.get("content", {}).get("body") in old]
    # A second pass is served from A's own database.
    again = list(reversed(await _page_back(a.client, alice, room_id, 50)))
    assert [e["event_id"] for e in again] == [e["event_id"] for e in got]
