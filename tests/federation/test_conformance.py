"""The receiving and serving details SyTest's 50federation checks, against a scripted remote
(tests/federation/scripted.py) that plays the other server exactly: rejected PDUs answered
as handled and keeping their state, a gap filled with /state_ids (our state of the prev
events we have combined with the remote's for those we lack), a pushed PDU whose prev events
its sender will not give refused, auth events fetched one by one from a server without
/event_auth, an outlier's state not served, make_join errors passed to the client, a v1-only
send_join, the notary's refetch for minimum_valid_until_ts, device lists with odd keys and
the cache fetched for /keys/query, redactions that must not apply, erased users' events
served redacted, and the membership handshake refused without a local member."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from federation.client import FederationError
from homeserver.events.auth import auth_event_types
from homeserver.events.room_versions import ROOM_VERSIONS
from tests.federation.conftest import Factory, FedServer
from tests.federation.pki import Cert, LocalCA
from tests.federation.scripted import Remote, json, scripted_remote
from tests.federation.test_rooms import eventually, membership_of, messages
from tests.helpers import User

F = "/_matrix/federation/v1"


@pytest.fixture
async def remote(server_cert: Cert, local_ca: LocalCA) -> AsyncIterator[Remote]:
    async with scripted_remote(server_cert, local_ca.ca_file) as r:
        yield r


def q(s: str) -> str:
    return quote(s, safe="")


async def _room(p: FedServer, room_id: str) -> Any:
    return await p.hs.rooms.rooms.get(room_id)


def _now() -> int:
    return int(time.time() * 1000)


async def build(p: FedServer, r: Remote, room_id: str, sender: str, etype: str,
                content: dict[str, Any], state_key: str | None = None,
                prev: list[str] | None = None, auth: list[str] | None = None,
                depth: int | None = None) -> tuple[str, dict[str, Any]]:
    """A PDU of the remote's in a room of `p`, citing p's current state and extremities
    unless told otherwise."""
    room = await _room(p, room_id)
    state = {k: e.event_id for k, e in room.state.items()}
    if auth is None:
        auth = [state[k] for k in auth_event_types(room.version, etype, sender, state_key,
                                                   content) if k in state]
    pdu: dict[str, Any] = {
        "type": etype, "sender": sender, "room_id": room_id, "content": content,
        "origin_server_ts": _now(), "depth": depth if depth is not None else room.depth + 1,
        "prev_events": prev if prev is not None else list(room.extremities),
        "auth_events": auth}
    if state_key is not None:
        pdu["state_key"] = state_key
    return r.event(room.version.identifier, pdu)


async def remote_joins(p: FedServer, r: Remote, room_id: str, local: str = "rita") -> str:
    user = r.user(local)
    room = await _room(p, room_id)
    got = await r.client.request(p.name, "GET", f"{F}/make_join/{q(room_id)}/{q(user)}",
                                 query={"ver": [room.version.identifier]})
    tmpl = got["event"]
    fields = ("type", "sender", "state_key", "room_id", "content", "prev_events",
              "auth_events", "depth")
    event_id, pdu = r.event(got["room_version"], {
        **{k: tmpl[k] for k in fields}, "origin_server_ts": _now()})
    await r.client.request(p.name, "PUT",
                           f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(event_id)}",
                           body=pdu)
    return user


async def _setup(make_server: Factory, r: Remote) -> tuple[FedServer, User, str, str]:
    p: FedServer = await make_server()
    alice = await p.client.register("alice")
    # (version 10, as SyTest runs: its events cite the create event)
    room_id = await p.client.create_room(alice, preset="public_chat", room_version="10")
    rita = await remote_joins(p, r, room_id)
    return p, alice, room_id, rita


async def _state_ids(r: Remote, p: FedServer, room_id: str, event_id: str) -> Any:
    return await r.client.request(p.name, "GET", f"{F}/state_ids/{q(room_id)}",
                                  query={"event_id": event_id})


def _current(room: Any) -> set[str]:
    return {e.event_id for e in room.state.values()}


async def test_rejected_pdu_is_handled_and_keeps_the_state(make_server: Factory,
                                                           remote: Remote) -> None:
    p, alice, room_id, rita = await _setup(make_server, remote)
    before = _current(await _room(p, room_id))
    # A sender who never joined: rejected by its auth events; the answer has no error (the
    # PDU was handled), and an event citing it as prev is accepted on the state before it.
    room = await _room(p, room_id)
    create = room.state[("m.room.create", "")].event_id
    power = room.state[("m.room.power_levels", "")].event_id
    rej_id, rej = await build(p, remote, room_id, remote.user("mallory"), "m.room.topic",
                              {"topic": "pwned"}, "", auth=[create, power])
    assert (await remote.send(p, [rej]))["pdus"] == {rej_id: {}}
    assert (await p.hs.rooms._cache.get_many([rej_id]))[rej_id].rejected is not None
    msg_id, msg = await build(p, remote, room_id, rita, "m.room.message", {"body": "after"},
                              prev=[rej_id])
    assert (await remote.send(p, [msg]))["pdus"] == {msg_id: {}}
    await eventually(lambda: _has(p, alice, room_id, "after"))
    assert set((await _state_ids(remote, p, room_id, msg_id))["pdu_ids"]) == before
    assert _current(await _room(p, room_id)) == before
    # The state at a rejected event is not served.
    with pytest.raises(FederationError) as e:
        await _state_ids(remote, p, room_id, rej_id)
    assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")


async def _has(p: FedServer, user: User, room_id: str, text: str) -> bool:
    return text in await messages(p.client, user, room_id)


async def test_gap_filled_with_state_ids_and_our_state_of_known_prevs(
        make_server: Factory, remote: Remote) -> None:
    p, alice, room_id, rita = await _setup(make_server, remote)
    status, levels = await p.client.request(
        "GET", f"/rooms/{room_id}/state/m.room.power_levels", token=alice.access_token)
    levels["users"][rita] = 100  # so that her state event Y is allowed
    status, _ = await p.client.request("PUT", f"/rooms/{room_id}/state/m.room.power_levels",
                                       levels, alice.access_token)
    assert status == 200
    fork = list((await _room(p, room_id)).extremities)
    remote_state = sorted(_current(await _room(p, room_id)))
    # Alice changes the topic: state the remote's branch (Y) does not have.
    status, topic = await p.client.request("PUT", f"/rooms/{room_id}/state/m.room.topic",
                                           {"topic": "ours"}, alice.access_token)
    assert status == 200
    room = await _room(p, room_id)
    y_id, y = await build(p, remote, room_id, rita, "test_state", {"v": "y"}, "Y", prev=fork,
                          depth=room.depth + 1)
    x_id, x = await build(p, remote, room_id, rita, "m.room.message", {"body": "x"},
                          prev=[*room.extremities, y_id], depth=room.depth + 2)
    c_id, c = await build(p, remote, room_id, rita, "m.room.message", {"body": "c"},
                          prev=[*room.extremities, x_id], depth=room.depth + 3)

    async def missing(request: web.Request) -> web.Response:
        return json({"events": [x]})

    async def state_ids(request: web.Request) -> web.Response:
        assert request.query["event_id"] == y_id
        return json({"pdu_ids": remote_state, "auth_chain_ids": []})

    async def event(request: web.Request) -> web.Response:
        return json({"origin": remote.name, "origin_server_ts": _now(), "pdus": [y]})

    remote.on("POST", f"{F}/get_missing_events/.*", missing)
    remote.on("GET", f"{F}/state_ids/.*", state_ids)
    remote.on("GET", f"{F}/event/.*", event)
    assert (await remote.send(p, [c]))["pdus"] == {c_id: {}}
    await eventually(lambda: _has(p, alice, room_id, "c"))
    assert "x" in await messages(p.client, alice, room_id)
    at_c = set((await _state_ids(remote, p, room_id, c_id))["pdu_ids"])
    assert {y_id, topic["event_id"]} <= at_c  # the remote's Y and our own topic
    assert remote.asked("/state/") == []  # one event missing: fetched alone, not /state
    assert [s.path for s in remote.asked("/event/")] == [f"{F}/event/{y_id}"]


async def test_pushed_pdu_whose_prevs_are_not_divulged_is_refused(
        make_server: Factory, remote: Remote) -> None:
    p, alice, room_id, rita = await _setup(make_server, remote)
    room = await _room(p, room_id)
    hidden_id, _ = await build(p, remote, room_id, rita, "m.room.message", {"body": "hidden"})
    c_id, c = await build(p, remote, room_id, rita, "m.room.message", {"body": "c"},
                          prev=[hidden_id], depth=room.depth + 2)

    async def nothing(request: web.Request) -> web.Response:
        return json({"events": []})

    remote.on("POST", f"{F}/get_missing_events/.*", nothing)
    got = await remote.send(p, [c])
    assert "error" in got["pdus"][c_id]
    assert len(remote.asked("/get_missing_events/")) == 1
    assert remote.asked("/state_ids/") == [] and remote.asked("/state/") == []
    assert c_id not in await p.hs.rooms._cache.get_many([c_id])


async def test_outlier_from_a_server_without_event_auth(make_server: Factory,
                                                       remote: Remote) -> None:
    """SyTest's send_and_await_outlier: S is sent, R comes from /get_missing_events, and Q
    (R's prev event and its sender's membership) only through /event and the state at it."""
    p, alice, room_id, rita = await _setup(make_server, remote)
    room = await _room(p, room_id)
    initial = sorted(_current(room))
    q_id, q_ev = await build(p, remote, room_id, rita, "m.room.member",
                             {"membership": "join", "displayname": "Q"}, rita)
    state = {k: e.event_id for k, e in room.state.items()}
    auth_q = [state[("m.room.create", "")], state[("m.room.power_levels", "")]]
    r_id, r_ev = await build(p, remote, room_id, rita, "m.room.message", {"body": "R"},
                             prev=[q_id], auth=[*auth_q, q_id], depth=room.depth + 2)
    s_id, s_ev = await build(p, remote, room_id, rita, "m.room.message", {"body": "S"},
                             prev=[r_id], auth=[*auth_q, q_id], depth=room.depth + 3)
    remote.on("POST", f"{F}/get_missing_events/.*",
              lambda request: _answer({"events": [r_ev]}))
    remote.on("GET", f"{F}/state_ids/.*", lambda request: _answer(
        {"pdu_ids": initial, "auth_chain_ids": q_ev["auth_events"]}))
    remote.on("GET", f"{F}/event/.*", lambda request: _answer(
        {"origin": remote.name, "origin_server_ts": _now(), "pdus": [q_ev]}))
    assert (await remote.send(p, [s_ev]))["pdus"] == {s_id: {}}
    await eventually(lambda: _has(p, alice, room_id, "S"))
    assert remote.asked("/event_auth/")  # asked, unanswered (404), then event by event
    assert (await p.hs.rooms._cache.get_many([q_id]))[q_id].outlier
    # The state at an outlier is not known here: 404, for /state and /state_ids.
    for endpoint in ("state", "state_ids"):
        with pytest.raises(FederationError) as e:
            await remote.client.request(p.name, "GET", f"{F}/{endpoint}/{q(room_id)}",
                                        query={"event_id": q_id})
        assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")


async def _answer(body: Any, status: int = 200) -> web.Response:
    return json(body, status)


async def test_remote_room_join_errors_pass_through_and_v1_send_join(
        make_server: Factory, remote: Remote) -> None:
    p: FedServer = await make_server()
    alice = await p.client.register("alice")
    room_id, (create, member, pl, jr) = _remote_room(remote)
    create_id, pl_id, jr_id = create["_id"], pl["_id"], jr["_id"]
    # The resident refuses: its error (status, errcode, room_version) is the client's.
    remote.on("GET", f"{F}/make_join/.*", lambda request: _answer(
        {"errcode": "M_INCOMPATIBLE_ROOM_VERSION", "error": "upgrade",
         "room_version": "sytest-room-ver"}, 400))
    status, body = await p.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                          params={"via": remote.name})
    assert (status, body["errcode"], body.get("room_version")) == (
        400, "M_INCOMPATIBLE_ROOM_VERSION", "sytest-room-ver")
    # A resident with only the v1 send_join: the join goes through it.
    template = {"type": "m.room.member", "sender": alice.user_id,
                "state_key": alice.user_id, "room_id": room_id,
                "content": {"membership": "join"}, "prev_events": [jr_id],
                "auth_events": [create_id, jr_id, pl_id], "depth": 5,
                "origin_server_ts": _now()}
    remote.on("GET", f"{F}/make_join/.*",
              lambda request: _answer({"event": template, "room_version": "10"}))
    remote.on("PUT", f"{F}/send_join/.*", lambda request: _answer(
        [200, {"origin": remote.name, "state": [_pdu(e) for e in (create, member, pl, jr)],
               "auth_chain": [_pdu(e) for e in (create, member, pl)]}]))
    status, body = await p.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                          params={"via": remote.name})
    assert status == 200, body
    assert await membership_of(p, room_id, alice.user_id) == "join"
    assert remote.asked("/v2/send_join/") and remote.asked("/v1/send_join/")


def _remote_room(remote: Remote, messages: int = 0) -> tuple[str, list[dict[str, Any]]]:
    """A public v10 room of the remote's: create, rob's join, power levels, join rules, then
    `messages` messages; each PDU carries its id under "_id" (dropped before sending)."""
    rob = remote.user("rob")
    room_id = f"!room{time.monotonic_ns()}:{remote.name}"
    base = {"room_id": room_id, "sender": rob, "origin_server_ts": _now()}
    events: list[dict[str, Any]] = []

    def add(etype: str, content: dict[str, Any], state_key: str | None,
            auth: list[int]) -> None:
        pdu = {**base, "type": etype, "content": content, "depth": len(events) + 1,
               "prev_events": [events[-1]["_id"]] if events else [],
               "auth_events": [events[i]["_id"] for i in auth]}
        if state_key is not None:
            pdu["state_key"] = state_key
        event_id, signed = remote.event("10", pdu)
        events.append({**signed, "_id": event_id})

    add("m.room.create", {"creator": rob, "room_version": "10"}, "", [])
    add("m.room.member", {"membership": "join"}, rob, [0])
    add("m.room.power_levels", {"users": {rob: 100}}, "", [0, 1])
    add("m.room.join_rules", {"join_rule": "public"}, "", [0, 1, 2])
    for i in range(messages):
        add("m.room.message", {"body": f"old {i}"}, None, [0, 1, 2])
    return room_id, events


def _pdu(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "_id"}


async def test_backfill_asks_enough_to_reach_known_events(make_server: Factory,
                                                          remote: Remote) -> None:
    """History before our join comes with /backfill: asked for 100 events whatever the page
    wants, the answer reaches back to the state we got with the join (kept as outliers), so
    the oldest events get their state from the DAG, not from /state_ids."""
    p: FedServer = await make_server()
    alice = await p.client.register("alice")
    room_id, events = _remote_room(remote, messages=10)
    create, member, pl, jr = events[:4]
    last = events[-1]
    template = {"type": "m.room.member", "sender": alice.user_id,
                "state_key": alice.user_id, "room_id": room_id,
                "content": {"membership": "join"}, "prev_events": [last["_id"]],
                "auth_events": [create["_id"], jr["_id"], pl["_id"]],
                "depth": len(events) + 1, "origin_server_ts": _now()}
    remote.on("GET", f"{F}/make_join/.*",
              lambda request: _answer({"event": template, "room_version": "10"}))
    remote.on("PUT", "/_matrix/federation/v2/send_join/.*", lambda request: _answer(
        {"origin": remote.name, "state": [_pdu(e) for e in (create, member, pl, jr)],
         "auth_chain": [_pdu(e) for e in (create, member, pl)]}))

    async def backfill(request: web.Request) -> web.Response:
        limit = int(request.query["limit"])
        newest_first = [_pdu(e) for e in reversed(events)][:limit]
        return json({"origin": remote.name, "origin_server_ts": _now(),
                     "pdus": newest_first})

    remote.on("GET", f"{F}/backfill/.*", backfill)
    status, body = await p.client.request("POST", f"/join/{room_id}", {}, alice.access_token,
                                          params={"via": remote.name})
    assert status == 200, body
    status, page = await p.client.request("GET", f"/rooms/{room_id}/messages", None,
                                          alice.access_token, params={"dir": "b", "limit": "5"})
    assert status == 200, page
    bodies = [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"]
    assert bodies == ["old 9", "old 8", "old 7", "old 6"]
    assert [s.query["limit"] for s in remote.asked("/backfill/")] == ["100"]
    assert remote.asked("/state_ids/") == [] and remote.asked("/state/") == []


async def test_notary_refetches_for_minimum_valid_until_ts(make_server: Factory,
                                                          remote: Remote) -> None:
    p: FedServer = await make_server()
    from homeserver.federation.keys import own_key_response

    expired = _now() - 86_400_000
    status = {"code": 200}

    def key_response() -> Any:
        if status["code"] != 200:
            raise web.HTTPBadRequest(text="{}", content_type="application/json")
        return own_key_response(remote.key, [], expired)

    remote.key_response = key_response

    async def ask(minimum: int) -> Any:
        return await remote.client.request(p.name, "POST", "/_matrix/key/v2/query", body={
            "server_keys": {remote.name: {remote.key.key_id: {
                "minimum_valid_until_ts": minimum}}}}, signed=False)

    def fetches() -> int:
        return len(remote.asked("/_matrix/key/v2/server"))

    first = await ask(0)
    assert first["server_keys"][0]["valid_until_ts"] == expired and fetches() == 1
    # A later minimum than the cached key's: the origin is asked again at once (the notary's
    # own refetch throttle does not apply), and the same answer is served.
    again = await ask(expired + 1000)
    assert fetches() == 2 and again["server_keys"][0]["valid_until_ts"] == expired
    # The origin fails: the expired key known here is still served.
    status["code"] = 400
    third = await ask(expired + 1000)
    assert fetches() == 3
    assert remote.key.key_id in third["server_keys"][0]["verify_keys"]
    # The older GET form naming one key.
    got = await remote.client.request(
        p.name, "GET", f"/_matrix/key/v2/query/{remote.name}/{remote.key.key_id}",
        signed=False)
    assert remote.key.key_id in got["server_keys"][0]["verify_keys"]
    assert p.name in got["server_keys"][0]["signatures"]


async def test_membership_handshake_needs_a_local_member(make_server: Factory,
                                                        remote: Remote) -> None:
    p: FedServer = await make_server()
    alice = await p.client.register("alice")
    room_id = await p.client.create_room(alice, preset="public_chat")
    rita = remote.user("rita")
    path = f"{F}/make_join/{q(room_id)}/{q(rita)}"
    got = await remote.client.request(p.name, "GET", path, query={"ver": list(ROOM_VERSIONS)})
    # An unsigned join, and one with a bogus signature: 403, not a complaint about its shape.
    tmpl = {**got["event"], "origin_server_ts": _now()}
    event_id, _ = remote.event(got["room_version"], tmpl)
    for pdu in (tmpl, {**tmpl, "signatures": {remote.name: {remote.key.key_id: "a" * 86}}}):
        with pytest.raises(FederationError) as e:
            await remote.client.request(p.name, "PUT", f"{F}/send_join/{q(room_id)}/{event_id}",
                                        body=pdu)
        assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")
    # Once every local member has left, the room is not this server's to let others in.
    status, _ = await p.client.request("POST", f"/rooms/{room_id}/leave", {}, alice.access_token)
    assert status == 200
    with pytest.raises(FederationError) as e:
        await remote.client.request(p.name, "GET", path, query={"ver": list(ROOM_VERSIONS)})
    assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")


async def test_redactions_that_must_not_apply(make_server: Factory, remote: Remote) -> None:
    p, alice, room_id, rita = await _setup(make_server, remote)
    other = await p.client.create_room(alice, preset="public_chat", room_version="10")
    await remote_joins(p, remote, other)
    target = await p.client.send(alice, room_id, "keep me")
    since = (await p.client.sync(alice))["next_batch"]
    # Rita may not redact others' events (power 0, another server): kept in the DAG, not
    # applied, not shown to clients.
    fake_id, fake = await _redaction(p, remote, room_id, rita, target)
    # ... nor one from another room naming it.
    cross_id, cross = await _redaction(p, remote, other, rita, target)
    assert (await remote.send(p, [fake]))["pdus"] == {fake_id: {}}
    assert (await remote.send(p, [cross]))["pdus"] == {cross_id: {}}
    sentinel_id, sentinel = await build(p, remote, room_id, rita, "m.room.message",
                                        {"body": "sentinel"})
    await remote.send(p, [sentinel])
    await eventually(lambda: _has(p, alice, room_id, "sentinel"))
    status, ev = await p.client.request("GET", f"/rooms/{room_id}/event/{target}",
                                        token=alice.access_token)
    assert status == 200 and ev["content"]["body"] == "keep me"
    assert "redacted_because" not in ev.get("unsigned", {})
    sync = await p.client.sync(alice, since)
    seen = [e["event_id"] for r in sync["rooms"]["join"].values()
            for e in r["timeline"]["events"]]
    assert sentinel_id in seen and fake_id not in seen and cross_id not in seen
    # A redaction Alice may make applies, and says by whom.
    status, red = await p.client.request("PUT", f"/rooms/{room_id}/redact/{target}/t1", {},
                                         alice.access_token)
    assert status == 200
    status, ev = await p.client.request("GET", f"/rooms/{room_id}/event/{target}",
                                        token=alice.access_token)
    assert ev["content"] == {} and ev["unsigned"]["redacted_by"] == red["event_id"]


async def _redaction(p: FedServer, r: Remote, room_id: str, sender: str,
                     target: str) -> tuple[str, dict[str, Any]]:
    """A redaction in the room's version's shape (`redacts` at the top level before v11)."""
    room = await _room(p, room_id)
    _, pdu = await build(p, r, room_id, sender, "m.room.redaction", {"redacts": target})
    if not room.version.redacts_in_content:
        pdu["redacts"] = target
    return r.event(room.version.identifier, {
        k: v for k, v in pdu.items() if k not in ("hashes", "signatures")})


async def test_erased_users_events_are_served_redacted(make_server: Factory,
                                                       remote: Remote) -> None:
    p, alice, room_id, rita = await _setup(make_server, remote)
    bob = await p.client.register("bob")
    await p.client.join(bob, room_id)  # (so the server stays in the room)
    eid = await p.client.send(alice, room_id, "body1")
    got = await remote.client.request(p.name, "GET", f"{F}/event/{q(eid)}")
    assert got["pdus"][0]["content"]["body"] == "body1"
    auth = {"type": "m.login.password", "password": "pw-secret-1",
            "identifier": {"type": "m.id.user", "user": alice.user_id}}
    status, body = await p.client.request("POST", "/account/deactivate",
                                          {"auth": auth, "erase": True}, alice.access_token)
    assert status == 200, body
    got = await remote.client.request(p.name, "GET", f"{F}/event/{q(eid)}")
    assert "body" not in got["pdus"][0]["content"]
    assert got["pdus"][0]["signatures"]  # still verifiable: the redacted form is signed


async def test_get_missing_events_without_latest_events(make_server: Factory,
                                                        remote: Remote) -> None:
    p, alice, room_id, rita = await _setup(make_server, remote)
    got = await remote.client.request(p.name, "POST", f"{F}/get_missing_events/{q(room_id)}",
                                      body={})
    assert got == {"events": []}


async def test_device_list_updates_with_odd_keys_and_resync_for_keys_query(
        make_server: Factory, remote: Remote) -> None:
    """SyTest 40devicelists: keys are kept as the remote sent them; a user not cached is
    fetched (/user/devices) before /keys/query answers; when no room is shared any more the
    cache is stale and fetched again later."""
    p, alice, room_id, rita = await _setup(make_server, remote)
    answers = {"devices": [{"device_id": "D1", "keys": {"device_keys": {}}}], "stream_id": 1}

    async def user_devices(request: web.Request) -> web.Response:
        return json({"user_id": rita, **answers})

    remote.on("GET", f"{F}/user/devices/.*", user_devices)

    async def query() -> Any:
        status, body = await p.client.request("POST", "/keys/query",
                                              {"device_keys": {rita: []}}, alice.access_token)
        assert status == 200, body
        return body

    got = await query()
    assert set(got["device_keys"][rita]) == {"D1"} and got["failures"] == {}
    assert len(remote.asked("/user/devices/")) == 1
    # An update in sequence, with keys of an odd shape: applied as sent.
    await remote.send(p, [], [{"edu_type": "m.device_list_update", "content": {
        "user_id": rita, "device_id": "D1", "stream_id": 2, "prev_id": [1],
        "device_display_name": "renamed", "keys": {"device_keys": {}}}}])

    async def renamed() -> bool:
        d = (await query())["device_keys"][rita].get("D1", {})
        return d.get("unsigned", {}).get("device_display_name") == "renamed"

    await eventually(renamed)
    assert len(remote.asked("/user/devices/")) == 1
    # Alice leaves: no room is shared with rita now, so her list is no longer kept.
    status, _ = await p.client.request("POST", f"/rooms/{room_id}/leave", {}, alice.access_token)
    assert status == 200

    async def stale() -> bool:
        return bool(await p.hs.db.fetchval(
            "SELECT stale FROM remote_device_lists WHERE user_id = $1", rita))

    await eventually(stale)


async def test_keys_query_during_a_resync_waits_for_it(make_server: Factory,
                                                       remote: Remote) -> None:
    """SyTest 40devicelists "Server correctly handles incoming m.device_list_update": a
    /keys/query that arrives while the list is being fetched (for an update) waits for that
    fetch and answers from it, rather than asking the remote a second time (SyTest's fake
    server answers /user/devices once)."""
    p, alice, _room_id, rita = await _setup(make_server, remote)
    asked = 0
    release = asyncio.Event()

    async def user_devices(request: web.Request) -> web.Response:
        nonlocal asked
        asked += 1
        if asked > 1:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "once"}, status=404)
        await release.wait()
        return json({"user_id": rita, "stream_id": 1,
                     "devices": [{"device_id": "D1", "keys": {"device_keys": {}}}]})

    remote.on("GET", f"{F}/user/devices/.*", user_devices)
    await remote.send(p, [], [{"edu_type": "m.device_list_update", "content": {
        "user_id": rita, "device_id": "D1", "stream_id": 1, "prev_id": [],
        "keys": {"device_keys": {}}}}])
    for _ in range(100):  # the background fetch has started
        if asked:
            break
        await asyncio.sleep(0.05)
    assert asked == 1
    query = asyncio.create_task(p.client.request(
        "POST", "/keys/query", {"device_keys": {rita: []}}, alice.access_token))
    await asyncio.sleep(0.3)
    release.set()
    status, body = await query
    assert status == 200 and body["failures"] == {}, body
    assert set(body["device_keys"][rita]) == {"D1"}, body
    assert asked == 1
