"""History visibility of the m.room.history_visibility event itself (spec "History visibility":
visible if the setting before *or* after the event allows it), over /sync, /messages and
/event. SyTest's "Real users can sync from invited/joined guest_access rooms if joined"."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Client, User


async def _setup(c: Client, visibility: str) -> tuple[User, User, str, dict[str, str]]:
    """Alice sends "shared", changes the setting, sends "pre_join"; Bob joins; Alice sends
    "post_join". Returns the event ids by label."""
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    ids = {"shared": await c.send(alice, room, "shared")}
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.history_visibility",
                                   {"history_visibility": visibility}, token=alice.access_token)
    assert status == 200, body
    ids["change"] = body["event_id"]
    ids["pre_join"] = await c.send(alice, room, "pre_join")
    await c.join(bob, room)
    ids["post_join"] = await c.send(alice, room, "post_join")
    return alice, bob, room, ids


def _labels(events: list[dict[str, Any]], ids: dict[str, str]) -> list[str]:
    by_id = {v: k for k, v in ids.items()}
    return [by_id[e["event_id"]] for e in events if e["event_id"] in by_id]


@pytest.mark.parametrize("visibility", ["joined", "invited"])
async def test_change_away_from_shared_is_seen_by_later_members(c: Client,
                                                                visibility: str) -> None:
    alice, bob, room, ids = await _setup(c, visibility)
    timeline = (await c.sync(bob))["rooms"]["join"][room]["timeline"]["events"]
    # "shared" and the change were sent while the room was shared; "pre_join" was not.
    assert _labels(timeline, ids) == ["shared", "change", "post_join"]
    status, msgs = await c.request("GET", f"/rooms/{room}/messages", token=bob.access_token,
                                   params={"dir": "b", "limit": "50"})
    assert status == 200, msgs
    assert _labels(msgs["chunk"], ids) == ["post_join", "change", "shared"]
    status, ev = await c.request("GET", f"/rooms/{room}/event/{ids['change']}",
                                 token=bob.access_token)
    assert status == 200, ev
    assert ev["content"] == {"history_visibility": visibility}
    status, err = await c.request("GET", f"/rooms/{room}/event/{ids['pre_join']}",
                                  token=bob.access_token)
    assert status == 404, err


async def test_change_between_hidden_settings_stays_hidden(c: Client) -> None:
    """joined -> invited: neither value lets a user who joined later see it."""
    alice = await c.register()
    bob = await c.register()
    room = await c.create_room(alice, preset="public_chat")
    for hv in ("joined", "invited"):
        status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.history_visibility",
                                       {"history_visibility": hv}, token=alice.access_token)
        assert status == 200, body
    second = body["event_id"]
    await c.join(bob, room)
    timeline = (await c.sync(bob))["rooms"]["join"][room]["timeline"]["events"]
    assert second not in [e["event_id"] for e in timeline]
    status, err = await c.request("GET", f"/rooms/{room}/event/{second}",
                                  token=bob.access_token)
    assert status == 404, err
