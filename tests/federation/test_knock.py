"""Two Parley servers: knocking on a room of the other server (make_knock / send_knock), the
knock_state and invite_state a user of the other server sees in /sync, and the knock being
answered with an invite, withdrawn, or refused."""

from __future__ import annotations

from typing import Any

from tests.federation.conftest import Factory, FedServer
from tests.federation.test_rooms import _is, eventually, membership_of
from tests.helpers import User


async def _knock_room(server: FedServer, owner: User, name: str, **body: Any) -> str:
    room_id = await server.client.create_room(owner, preset="private_chat", name=name,
                                              topic=f"about {name}", **body)
    status, resp = await server.client.request(
        "PUT", f"/rooms/{room_id}/state/m.room.join_rules", {"join_rule": "knock"},
        owner.access_token)
    assert status == 200, resp
    return room_id


async def _sync_section(server: FedServer, user: User, section: str, room_id: str) -> Any:
    sync = await server.client.sync(user)
    return sync.get("rooms", {}).get(section, {}).get(room_id)


def _by_type(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["type"], e["state_key"]): e for e in events}


async def test_knock_both_ways_then_invite_and_join(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    await _knock_and_admit(b, a)
    await _knock_and_admit(a, b)


async def _knock_and_admit(resident: FedServer, knocker: FedServer) -> None:
    owner = await resident.client.register("owner")
    guest = await knocker.client.register("guest")
    room_id = await _knock_room(resident, owner, f"Knock {resident.name}")
    status, body = await knocker.client.request(
        "POST", f"/knock/{room_id}", {"reason": "let me in"}, guest.access_token,
        params={"via": resident.name})
    assert (status, body) == (200, {"room_id": room_id})
    # The resident has the knock as room state (and its owner sees it in sync).
    assert await membership_of(resident, room_id, guest.user_id) == "knock"
    room = await resident.hs.rooms.rooms.get(room_id)
    knock = room.state[("m.room.member", guest.user_id)]
    assert knock.pdu["content"]["reason"] == "let me in"
    # The knocker's sync shows the room under `knock` with what the resident sent.
    knocked = await eventually(lambda: _sync_section(knocker, guest, "knock", room_id))
    state = _by_type(knocked["knock_state"]["events"])
    assert state[("m.room.name", "")]["content"] == {"name": f"Knock {resident.name}"}
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "knock"}
    assert ("m.room.create", "") in state
    assert state[("m.room.member", guest.user_id)]["content"]["membership"] == "knock"
    # The owner lets the knocker in with an invite; its invite_state comes from the
    # resident's invite_room_state, as the knocker's server is not in the room.
    status, body = await resident.client.request(
        "POST", f"/rooms/{room_id}/invite", {"user_id": guest.user_id}, owner.access_token)
    assert status == 200, body
    invited = await eventually(lambda: _sync_section(knocker, guest, "invite", room_id))
    state = _by_type(invited["invite_state"]["events"])
    assert state[("m.room.topic", "")]["content"] == {"topic": f"about Knock {resident.name}"}
    assert state[("m.room.member", owner.user_id)]["content"]["membership"] == "join"
    assert state[("m.room.member", guest.user_id)]["content"]["membership"] == "invite"
    await knocker.client.join(guest, room_id)
    assert await membership_of(resident, room_id, guest.user_id) == "join"
    assert await membership_of(knocker, room_id, guest.user_id) == "join"


async def test_knock_withdrawn_and_refused(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    alice, bob = await a.client.register("alice"), await b.client.register("bob")
    room_id = await _knock_room(b, bob, "Door")
    status, _ = await a.client.request("POST", f"/knock/{room_id}", {}, alice.access_token,
                                       params={"via": b.name})
    assert status == 200
    # Withdrawing the knock goes through the resident.
    status, body = await a.client.request("POST", f"/rooms/{room_id}/leave", {},
                                          alice.access_token)
    assert status == 200, body
    assert await membership_of(b, room_id, alice.user_id) == "leave"
    assert await membership_of(a, room_id, alice.user_id) == "leave"
    # A room whose join rule is not knock refuses the knock (the resident's auth rules).
    public = await b.client.create_room(bob, preset="public_chat")
    status, body = await a.client.request("POST", f"/knock/{public}", {}, alice.access_token,
                                          params={"via": b.name})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert await membership_of(b, public, alice.user_id) is None
    # A room version without knocking refuses make_knock.
    old = await b.client.create_room(bob, preset="private_chat", room_version="6")
    status, body = await a.client.request("POST", f"/knock/{old}", {}, alice.access_token,
                                          params={"via": b.name})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert await membership_of(b, old, alice.user_id) is None
    # A banned user's server is refused too.
    status, _ = await b.client.request("POST", f"/rooms/{room_id}/ban",
                                       {"user_id": alice.user_id}, bob.access_token)
    assert status == 200
    status, body = await a.client.request("POST", f"/knock/{room_id}", {}, alice.access_token,
                                          params={"via": b.name})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert await _is(b, room_id, alice.user_id, "ban")
