"""Rooms of every version, 1 to 12, over real HTTP: createRoom, join, messages, state,
redaction, /event, /messages and /sync, plus the version differences a client can see (event
ID format, Canonical JSON from v6, knocking from v7, string power levels before v10). The
stored PDUs are checked against the version's format, hashes and our signature."""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from homeserver.events.format import prev_event_ids
from homeserver.events.hashing import compute_content_hash, compute_event_id, prune_event
from homeserver.events.room_versions import ROOM_VERSIONS
from homeserver.signing import verify_signed_json
from tests.conftest import Server
from tests.helpers import Client, User

VERSIONS = [str(n) for n in range(1, 13)]
# rooms/v1.md "$opaque_id:domain", v3.md standard base64 hash, v4.md URL-safe base64 hash.
EVENT_ID = {
    1: r"\$[A-Za-z]{18}:parley\.test",
    2: r"\$[A-Za-z]{18}:parley\.test",
    3: r"\$[A-Za-z0-9+/]{43}",
}
URL_SAFE_EVENT_ID = r"\$[A-Za-z0-9_-]{43}"


def _eid(event_id: str) -> str:
    """v3 event IDs may hold "/" and "+", so they are always escaped in paths."""
    return quote(event_id, safe="")


async def _send(c: Client, u: User, room: str, content: dict[str, Any],
                etype: str = "m.room.message") -> tuple[int, Any]:
    return await c.request("PUT", f"/rooms/{room}/send/{etype}/{secrets.token_hex(6)}",
                           content, u.access_token)


async def _event(c: Client, u: User, room: str, event_id: str) -> Any:
    status, body = await c.request("GET", f"/rooms/{room}/event/{_eid(event_id)}",
                                   token=u.access_token)
    assert status == 200, body
    return body


async def _stored_pdu(server: Server, event_id: str) -> dict[str, Any]:
    async with server.hs.db.connection() as conn:
        raw = await conn.fetchval("SELECT json FROM events WHERE event_id = $1", event_id)
    assert raw is not None, event_id
    return dict(orjson.loads(raw))


async def _check_pdu(server: Server, version: str, event_id: str) -> dict[str, Any]:
    """The stored PDU has the version's format, its ID, a valid content hash and our
    signature, and cites its prev events with their real content hashes (v1/v2)."""
    rv = ROOM_VERSIONS[version]
    pdu = await _stored_pdu(server, event_id)
    assert compute_event_id(pdu, rv) == event_id
    assert pdu["hashes"]["sha256"] == compute_content_hash(pdu)
    key = server.hs.key
    verify_signed_json(prune_event(pdu, rv), key.server_name, key.key_id, key.verify_key_base64)
    if int(version) <= 2:
        assert pdu["event_id"] == event_id
        for name in ("prev_events", "auth_events"):
            assert pdu[name], name
            for ref_id, ref_hashes in pdu[name]:
                cited = await _stored_pdu(server, ref_id)
                assert ref_hashes == {"sha256": cited["hashes"]["sha256"]}
    else:
        assert "event_id" not in pdu
        assert all(isinstance(i, str) for i in pdu["prev_events"] + pdu["auth_events"])
        for ref_id in pdu["prev_events"] + pdu["auth_events"]:
            await _stored_pdu(server, ref_id)
    assert int(version) <= 5 or pdu["depth"] < 2**53
    return pdu


@pytest.mark.parametrize("version", VERSIONS)
async def test_room_lifecycle_in_each_version(c: Client, server: Server, version: str) -> None:
    n = int(version)
    owner, member = await c.register(), await c.register()
    room = await c.create_room(owner, room_version=version, preset="public_chat",
                               name=f"Room v{version}")
    if n >= 12:
        assert ":" not in room
    else:
        assert re.fullmatch(r"![A-Za-z]+:parley\.test", room), room
    status, create = await c.request("GET", f"/rooms/{room}/state/m.room.create/",
                                     token=owner.access_token)
    assert status == 200, create
    assert create["room_version"] == version
    assert create.get("creator") == (owner.user_id if n <= 10 else None)

    await c.join(member, room)
    hello = await c.send(member, room, f"hello v{version}")
    assert re.fullmatch(EVENT_ID.get(n, URL_SAFE_EVENT_ID), hello), hello
    ev = await _event(c, owner, room, hello)
    assert (ev["event_id"], ev["content"]["body"], ev["room_id"]) == (hello, f"hello v{version}",
                                                                      room)
    await _check_pdu(server, version, hello)

    # state
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.topic/",
                                   {"topic": f"topic v{version}"}, owner.access_token)
    assert status == 200, body
    topic_id = body["event_id"]
    status, topic = await c.request("GET", f"/rooms/{room}/state/m.room.topic/",
                                    token=member.access_token)
    assert (status, topic) == (200, {"topic": f"topic v{version}"})
    await _check_pdu(server, version, topic_id)

    # redaction of the member's own message
    status, body = await c.request("PUT", f"/rooms/{room}/redact/{_eid(hello)}/r1",
                                   {"reason": "oops"}, member.access_token)
    assert status == 200, body
    redaction_id = body["event_id"]
    redaction_pdu = await _check_pdu(server, version, redaction_id)
    if n >= 11:
        assert redaction_pdu["content"]["redacts"] == hello
    else:
        assert redaction_pdu["redacts"] == hello
    ev = await _event(c, owner, room, hello)
    assert ev["content"] == {}
    assert ev["unsigned"]["redacted_because"]["event_id"] == redaction_id

    # /messages and /sync see all of it
    status, page = await c.request("GET", f"/rooms/{room}/messages", token=member.access_token,
                                   params={"dir": "b", "limit": "20"})
    assert status == 200, page
    by_id = {e["event_id"]: e for e in page["chunk"]}
    assert by_id[hello]["content"] == {}
    assert by_id[redaction_id]["redacts"] == hello
    assert by_id[topic_id]["content"] == {"topic": f"topic v{version}"}
    sync = await c.sync(member, filter='{"room": {"timeline": {"limit": 50}}}')
    joined = sync["rooms"]["join"][room]
    timeline = {e["event_id"]: e for e in joined["timeline"]["events"]}
    assert {hello, topic_id, redaction_id} <= set(timeline)
    assert timeline[hello]["content"] == {}
    # the room's state, in the timeline or before it, has the topic and the member's join
    everything = joined["timeline"]["events"] + joined.get("state", {}).get("events", [])
    assert any(e["type"] == "m.room.topic" for e in everything)
    assert any(e["type"] == "m.room.member" and e["state_key"] == member.user_id
               for e in everything)

    # the next event follows the redaction in the DAG
    later = await c.send(member, room, "after")
    pdu = await _check_pdu(server, version, later)
    assert prev_event_ids(pdu) == [redaction_id]


@pytest.mark.parametrize("version", VERSIONS)
async def test_canonical_json_enforced_from_v6(c: Client, version: str) -> None:
    """rooms/v6.md: a float or an integer outside +-(2**53 - 1) is M_BAD_JSON from v6 on;
    v1-v5 rooms take them as they are."""
    u = await c.register()
    room = await c.create_room(u, room_version=version)
    for value in (1.5, 2**53, -(2**60)):
        status, body = await _send(c, u, room, {"msgtype": "m.text", "body": "n", "n": value})
        if int(version) >= 6:
            assert status == 400 and body["errcode"] == "M_BAD_JSON", (value, body)
        else:
            assert status == 200, body
            assert (await _event(c, u, room, body["event_id"]))["content"]["n"] == value
    status, body = await _send(c, u, room, {"msgtype": "m.text", "body": "n", "n": 2**53 - 1})
    assert status == 200, body
    # the state endpoint and createRoom go through the same check
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.topic/",
                                   {"topic": "t", "n": 0.5}, u.access_token)
    assert status == (400 if int(version) >= 6 else 200), body
    status, body = await c.request("POST", "/createRoom",
                                   {"room_version": version, "creation_content": {"x": 0.5}},
                                   u.access_token)
    assert status == (400 if int(version) >= 6 else 200), body


@pytest.mark.parametrize("version", VERSIONS)
async def test_knocking_from_v7(c: Client, version: str) -> None:
    admin, knocker = await c.register(), await c.register()
    room = await c.create_room(admin, room_version=version, initial_state=[
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}])
    status, body = await c.request("POST", f"/knock/{quote(room)}", {}, knocker.access_token)
    if int(version) >= 7:
        assert status == 200, body
    else:
        assert status == 403 and body["errcode"] == "M_FORBIDDEN", body


@pytest.mark.parametrize("version", VERSIONS)
async def test_string_power_levels_before_v10(c: Client, version: str) -> None:
    """rooms/v1.md "stringy power levels": accepted and honoured until v10 made them
    integers only."""
    owner, member = await c.register(), await c.register()
    room = await c.create_room(owner, room_version=version, preset="public_chat")
    await c.join(member, room)
    status, pl = await c.request("GET", f"/rooms/{room}/state/m.room.power_levels/",
                                 token=owner.access_token)
    assert status == 200, pl
    users = {**pl["users"], member.user_id: " +50"}
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.power_levels/",
                                   {**pl, "users": users}, owner.access_token)
    if int(version) >= 10:
        assert status == 403 and body["errcode"] == "M_FORBIDDEN", body
        return
    assert status == 200, body
    # the member now has level 50, the state default, and may set the topic
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.topic/",
                                   {"topic": "mine"}, member.access_token)
    assert status == 200, body


async def test_v1_room_after_reload(c: Client, server: Server) -> None:
    """A v1 room read back from the database (as after a restart) still cites its latest
    event with the right hash."""
    u = await c.register()
    room = await c.create_room(u, room_version="1")
    last = await c.send(u, room, "before")
    server.hs.rooms.rooms.drop(room)
    after = await c.send(u, room, "after")
    pdu = await _check_pdu(server, "1", after)
    assert prev_event_ids(pdu) == [last]
