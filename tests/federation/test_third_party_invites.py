"""Third-party invites against a real identity server on loopback: inviting a bound address
invites its user; an unbound one leaves an m.room.third_party_invite, which the identity
server's /3pid/onbind (on the federation listener) redeems, unless the signature is not by the
invite's key or the identity server no longer vouches for that key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from signedjson.key import generate_signing_key

from tests.conftest import free_port
from tests.federation.conftest import Factory, FedServer
from tests.federation.pki import Cert, LocalCA
from tests.helpers import Client, User
from tests.identity_mocks import TOKEN, Services, client_tls, services

ADDRESS = "lemurs@monkeyworld.org"


@pytest.fixture
async def svc(server_cert: Cert) -> AsyncIterator[Services]:
    async with services(server_cert, free_port()) as s:
        yield s


async def _onbind(hs: FedServer, ca: LocalCA, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession(connector=client_tls(ca.ca_file)) as http:
        async with http.post(hs.fed_url + "/_matrix/federation/v1/3pid/onbind",
                             json=body) as resp:
            return resp.status, await resp.json(content_type=None)


async def _invite(c: Client, user: User, room: str, svc: Services,
                  address: str = ADDRESS) -> tuple[int, Any]:
    return await c.request("POST", f"/rooms/{room}/invite", {
        "id_server": svc.identity.name, "id_access_token": TOKEN, "medium": "email",
        "address": address}, token=user.access_token)


async def _membership(c: Client, user: User, room: str, target: str) -> Any:
    status, body = await c.request("GET", f"/rooms/{room}/state/m.room.member/{target}",
                                   token=user.access_token)
    return body if status == 200 else None


async def test_invite_bound_and_unbound_addresses(make_server: Factory, svc: Services,
                                                  local_ca: LocalCA) -> None:
    hs = await make_server()
    c = hs.client
    inviter, invitee, other = await c.register(), await c.register(), await c.register()
    room = await c.create_room(inviter, preset="private_chat")
    # A bound address: its user is invited directly.
    svc.identity.bindings[("email", "bound@example.org")] = invitee.user_id
    status, body = await _invite(c, inviter, room, svc, "Bound@Example.org")
    assert (status, body) == (200, {})
    assert (await _membership(c, inviter, room, invitee.user_id))["membership"] == "invite"
    # An unbound one: the invite is stored at the identity server, and shown in the room.
    status, body = await _invite(c, inviter, room, svc)
    assert (status, body) == (200, {})
    stored = svc.identity.invites[-1]
    assert stored["params"]["sender"] == inviter.user_id
    assert stored["params"]["room_join_rules"] == "invite"
    status, tpi = await c.request(
        "GET", f"/rooms/{room}/state/m.room.third_party_invite/{stored['token']}",
        token=inviter.access_token)
    assert status == 200
    assert tpi["public_key"] == svc.identity.public_key
    assert tpi["key_validity_url"].endswith("/_matrix/identity/v2/pubkey/isvalid")
    # Bound later: the identity server tells the homeserver, which redeems the invite.
    status, body = await _onbind(hs, local_ca,
                                 svc.identity.onbind_body("email", ADDRESS, other.user_id))
    assert status == 200, body
    member = await _membership(c, inviter, room, other.user_id)
    assert member["membership"] == "invite"
    assert member["third_party_invite"]["display_name"] == "B...@example.org"
    status, body = await c.request("POST", f"/rooms/{room}/join", {}, token=other.access_token)
    assert status == 200, body


async def test_redeeming_after_the_inviter_left(make_server: Factory, svc: Services,
                                                local_ca: LocalCA) -> None:
    hs = await make_server()
    c = hs.client
    inviter, stays, invitee = await c.register(), await c.register(), await c.register()
    room = await c.create_room(inviter, preset="private_chat", invite=[stays.user_id])
    await c.join(stays, room)
    assert (await _invite(c, inviter, room, svc))[0] == 200
    status, _ = await c.request("POST", f"/rooms/{room}/leave", {}, token=inviter.access_token)
    assert status == 200
    status, body = await _onbind(hs, local_ca,
                                 svc.identity.onbind_body("email", ADDRESS, invitee.user_id))
    assert status == 200, body
    assert (await _membership(c, stays, room, invitee.user_id))["membership"] == "invite"


@pytest.mark.parametrize("how", ["wrong key", "revoked key", "unreachable", "other user"])
async def test_unverifiable_invites_are_refused(make_server: Factory, svc: Services,
                                               local_ca: LocalCA, how: str) -> None:
    hs = await make_server()
    c = hs.client
    inviter, invitee = await c.register(), await c.register()
    room = await c.create_room(inviter, preset="private_chat")
    assert (await _invite(c, inviter, room, svc))[0] == 200
    key = generate_signing_key("0") if how == "wrong key" else None
    body = svc.identity.onbind_body("email", ADDRESS, invitee.user_id, key)
    if how == "revoked key":
        svc.identity.revoked.add(svc.identity.public_key)
    if how == "unreachable":
        stored = svc.identity.invites[-1]
        # The event's key validity URL points at a port nobody listens on.
        await c.request("PUT", f"/rooms/{room}/state/m.room.third_party_invite/"
                        f"{stored['token']}", {
                            "display_name": "x", "public_key": svc.identity.public_key,
                            "key_validity_url": f"https://localhost:{free_port()}/v"},
                        token=inviter.access_token)
    if how == "other user":  # the signed block names someone else than the bound user
        body["invites"][0]["signed"] = svc.identity.sign(
            {"mxid": inviter.user_id, "token": svc.identity.invites[-1]["token"]})
    status, answer = await _onbind(hs, local_ca, body)
    assert status == 403 if how != "other user" else status == 200, answer
    assert await _membership(c, inviter, room, invitee.user_id) is None
    status, _ = await c.request("POST", f"/rooms/{room}/join", {}, token=invitee.access_token)
    assert status == 403


async def test_third_party_invite_bad_input(make_server: Factory, svc: Services,
                                            local_ca: LocalCA) -> None:
    hs = await make_server()
    c = hs.client
    inviter, outsider = await c.register(), await c.register()
    room = await c.create_room(inviter, preset="private_chat")
    for body in ({"medium": "email", "address": ADDRESS, "id_access_token": TOKEN},
                 {"medium": "email", "address": "nope", "id_server": svc.identity.name,
                  "id_access_token": TOKEN},
                 {"medium": "email", "address": ADDRESS, "id_server": svc.identity.name}):
        status, answer = await c.request("POST", f"/rooms/{room}/invite", body,
                                         token=inviter.access_token)
        assert status == 400 and answer["errcode"].startswith("M_"), answer
    status, answer = await _invite(c, outsider, room, svc)
    assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")
    assert svc.identity.invites == []
    # The identity server refuses our token: its error, not a 500.
    status, answer = await c.request("POST", f"/rooms/{room}/invite", {
        "id_server": svc.identity.name, "id_access_token": "wrong", "medium": "email",
        "address": ADDRESS}, token=inviter.access_token)
    assert status == 400 and answer["errcode"] == "M_UNAUTHORIZED"
    # createRoom checks its invite_3pid before it makes the room.
    status, answer = await c.request("POST", "/createRoom", {"invite_3pid": [{"medium": "email"}]},
                                     token=inviter.access_token)
    assert (status, answer["errcode"]) == (400, "M_MISSING_PARAM")
    svc.identity.bindings[("email", ADDRESS)] = outsider.user_id
    status, answer = await c.request("POST", "/createRoom", {"invite_3pid": [{
        "id_server": svc.identity.name, "id_access_token": TOKEN, "medium": "email",
        "address": ADDRESS}]}, token=inviter.access_token)
    assert status == 200
    member = await _membership(c, inviter, answer["room_id"], outsider.user_id)
    assert member["membership"] == "invite"
    # onbind for someone of another server, or no JSON object.
    status, answer = await _onbind(hs, local_ca, {"mxid": "@x:elsewhere.example", "invites": []})
    assert status == 400
    status, answer = await _onbind(hs, local_ca, {"invites": []})
    assert status == 400


async def test_join_with_a_signed_third_party_invite(make_server: Factory, svc: Services) -> None:
    hs = await make_server()
    c = hs.client
    inviter, invitee, other = await c.register(), await c.register(), await c.register()
    room = await c.create_room(inviter, preset="private_chat")
    assert (await _invite(c, inviter, room, svc))[0] == 200
    token = svc.identity.invites[-1]["token"]
    signed = svc.identity.sign({"mxid": invitee.user_id, "sender": inviter.user_id,
                                "token": token})
    # Someone else's signed block, a malformed one, a forged one: no.
    for who, block, status in ((other, signed, 403), (invitee, {"token": token}, 400),
                               (invitee, svc.identity.sign(
                                   {"mxid": invitee.user_id, "sender": inviter.user_id,
                                    "token": token}, generate_signing_key("0")), 403)):
        got, body = await c.request("POST", f"/rooms/{room}/join",
                                    {"third_party_signed": block}, token=who.access_token)
        assert got == status, body
    assert await _membership(c, inviter, room, invitee.user_id) is None
    status, body = await c.request("POST", f"/rooms/{room}/join",
                                   {"third_party_signed": signed}, token=invitee.access_token)
    assert status == 200, body
    member = await _membership(c, inviter, room, invitee.user_id)
    assert member["membership"] == "join"


async def test_redeeming_through_the_rooms_server(make_server: Factory, svc: Services,
                                                 local_ca: LocalCA) -> None:
    """The invitee's server is not in the room: it asks the room's server to redeem
    (exchange_third_party_invite), which has the invitee's server counter-sign the invite."""
    a, b = await make_server(), await make_server()
    inviter = await a.client.register()
    invitee = await b.client.register()
    room = await a.client.create_room(inviter, preset="private_chat")
    assert (await _invite(a.client, inviter, room, svc))[0] == 200
    status, body = await _onbind(b, local_ca,
                                 svc.identity.onbind_body("email", ADDRESS, invitee.user_id))
    assert status == 200, body
    member = await _membership(a.client, inviter, room, invitee.user_id)
    assert member["membership"] == "invite"
    assert member["third_party_invite"]["display_name"] == "B...@example.org"
    sync = await b.client.sync(invitee)
    assert room in sync["rooms"]["invite"]
    status, body = await b.client.request("POST", f"/join/{room}", {},
                                          token=invitee.access_token,
                                          params={"server_name": a.name})
    assert status == 200, body
    member = await _membership(a.client, inviter, room, invitee.user_id)
    assert member["membership"] == "join"


async def test_the_rooms_server_checks_a_forwarded_invite(make_server: Factory, svc: Services,
                                                         local_ca: LocalCA) -> None:
    a, b = await make_server(), await make_server()
    inviter = await a.client.register()
    invitee = await b.client.register()
    room = await a.client.create_room(inviter, preset="private_chat")
    assert (await _invite(a.client, inviter, room, svc))[0] == 200
    forged = svc.identity.onbind_body("email", ADDRESS, invitee.user_id,
                                      generate_signing_key("0"))
    status, body = await _onbind(b, local_ca, forged)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert await _membership(a.client, inviter, room, invitee.user_id) is None


async def test_redeeming_when_both_servers_are_in_the_room(make_server: Factory, svc: Services,
                                                          local_ca: LocalCA) -> None:
    """The invitee's server is in the room: it makes the invite as the inviter, and the
    inviter's server accepts it with the invitee's server's signature."""
    a, b = await make_server(), await make_server()
    inviter = await a.client.register()
    joiner, invitee = await b.client.register(), await b.client.register()
    room = await a.client.create_room(inviter, preset="private_chat", invite=[joiner.user_id])
    status, body = await b.client.request("POST", f"/join/{room}", {},
                                          token=joiner.access_token,
                                          params={"server_name": a.name})
    assert status == 200, body
    assert (await _invite(a.client, inviter, room, svc))[0] == 200
    token = svc.identity.invites[-1]["token"]
    for _ in range(100):  # the invitee's server learns of the third-party invite
        status, _ = await b.client.request(
            "GET", f"/rooms/{room}/state/m.room.third_party_invite/{token}",
            token=joiner.access_token)
        if status == 200:
            break
        await asyncio.sleep(0.05)
    # The invitee's server makes the invite (signed with its key, sent as the inviter).
    status, body = await _onbind(b, local_ca,
                                 svc.identity.onbind_body("email", ADDRESS, invitee.user_id))
    assert status == 200, body
    for _ in range(100):
        member = await _membership(a.client, inviter, room, invitee.user_id)
        if member is not None:
            break
        await asyncio.sleep(0.05)
    assert member is not None and member["membership"] == "invite"
    # The invite reaches the invitee's server in the room's next federation transaction.
    for _ in range(100):
        seen = await _membership(b.client, joiner, room, invitee.user_id)
        if seen is not None and seen["membership"] == "invite":
            break
        await asyncio.sleep(0.05)
    status, body = await b.client.request("POST", f"/join/{room}", {},
                                          token=invitee.access_token,
                                          params={"server_name": a.name})
    assert status == 200, body
