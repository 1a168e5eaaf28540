"""Application services that encrypt as their users' devices ("appservice mode" bridges):
to-device messages in transactions (MSC2409/MSC4203), MSC3202's device lists and key counts,
and device masquerading with `org.matrix.msc3202.device_id`. A real server, and a mock AS on
loopback receiving real transactions."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.client_api.test_appservice import MockAS, server_with_ases
from tests.conftest import PgAdmin, Server
from tests.e2ee.keys import new_device
from tests.helpers import Client, User

SERVER = "parley.test"


@dataclass
class Env:
    server: Server
    client: Client
    bridge: MockAS  # push_ephemeral and org.matrix.msc3202
    plain: MockAS  # neither
    bridge_token: str
    plain_token: str


def uid(localpart: str) -> str:
    return f"@{localpart}:{SERVER}"


@pytest.fixture(scope="module")
async def env(pg_admin: PgAdmin, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[Env]:
    bridge, plain = MockAS("hs-token-b"), MockAS("hs-token-p")
    tb, tp = "as-token-b-" + secrets.token_hex(4), "as-token-p-" + secrets.token_hex(4)

    def regs(base: str) -> list[dict[str, Any]]:
        return [
            {"id": "bridge", "url": f"{base}/b", "as_token": tb,
             "hs_token": bridge.hs_token, "sender_localpart": "bridgebot",
             "de.sorunome.msc2409.push_ephemeral": True, "org.matrix.msc3202": True,
             "namespaces": {"users": [{"regex": f"@bridgee_.*:{SERVER}", "exclusive": True},
                                      {"regex": f"@shared_.*:{SERVER}", "exclusive": False}]}},
            {"id": "plain", "url": f"{base}/p", "as_token": tp,
             "hs_token": plain.hs_token, "sender_localpart": "plainbot",
             "namespaces": {"users": [{"regex": f"@shared_.*:{SERVER}", "exclusive": False}]}},
        ]
    async with server_with_ases(pg_admin, tmp_path_factory.mktemp("as-e2ee"),
                                {"b": bridge, "p": plain}, regs) as (srv, client):
        yield Env(srv, client, bridge, plain, tb, tp)


def bodies(mock: MockAS) -> list[dict[str, Any]]:
    return [body for t, body in mock.transactions if not t.startswith("failed:")]


async def wait_for(mock: MockAS, check: Callable[[dict[str, Any]], bool],
                   timeout: float = 10.0) -> dict[str, Any]:
    """The first accepted transaction body that passes `check`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for body in bodies(mock):
            if check(body):
                return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no such transaction; got {bodies(mock)}")
        await asyncio.sleep(0.02)


async def ghost(env: Env, localpart: str, device_id: str) -> User:
    """A user of the bridge, registered by it, with one device the bridge created for it
    (MSC4190: PUT /devices/{id}, no UIA)."""
    c = env.client
    status, body = await c.request("POST", "/register", {
        "type": "m.login.application_service", "username": localpart, "inhibit_login": True},
        env.bridge_token)
    assert status == 200, body
    status, body = await c.request("PUT", f"/devices/{device_id}", {"display_name": "bridge"},
                                   env.bridge_token, params={"user_id": uid(localpart)})
    assert status == 201, body
    return User(uid(localpart), env.bridge_token, device_id)


def as_device(user: User) -> dict[str, str]:
    """Query parameters of MSC3202 device masquerading."""
    return {"user_id": user.user_id, "org.matrix.msc3202.device_id": user.device_id}


async def test_to_device_messages_are_pushed_to_the_as(env: Env) -> None:
    c = env.client
    alice = await c.register()
    excl = await ghost(env, "bridgee_td", "EXCLDEV")
    shared = await ghost(env, "shared_td", "SHAREDDEV")
    content = {"algorithm": "m.olm.v1.curve25519-aes-sha2", "n": secrets.token_hex(4)}
    status, _ = await c.request("PUT", "/sendToDevice/m.room.encrypted/td1", {"messages": {
        excl.user_id: {"EXCLDEV": content}, shared.user_id: {"*": content}}},
        alice.access_token)
    assert status == 200

    body = await wait_for(env.bridge, lambda b: any(
        m["content"] == content for m in b.get("to_device", [])))
    got = sorted((m["to_user_id"], m["to_device_id"]) for m in body["to_device"]
                 if m["content"] == content)
    assert got == [(excl.user_id, "EXCLDEV"), (shared.user_id, "SHAREDDEV")]
    assert body["de.sorunome.msc2409.to_device"] == body["to_device"]
    msg = next(m for m in body["to_device"] if m["to_user_id"] == excl.user_id)
    assert msg["type"] == "m.room.encrypted" and msg["sender"] == alice.user_id
    # The AS without ephemeral data gets none, though its namespace covers shared_td.
    await asyncio.sleep(0.3)
    assert not any("to_device" in b for b in bodies(env.plain))

    # The exclusive user's message left the inbox with the transaction; the shared user's
    # waits for a sync of that device too (a client of that user's own may run it).
    async def inbox(user: User) -> list[Any]:
        status, data = await c.request("GET", "/sync", token=env.bridge_token,
                                       params={"timeout": "0", **as_device(user)})
        assert status == 200, data
        return [e for e in data.get("to_device", {}).get("events", [])
                if e["content"] == content]

    assert await inbox(excl) == []
    assert len(await inbox(shared)) == 1


async def test_device_masquerading_with_the_msc3202_parameter(env: Env) -> None:
    c = env.client
    bob = await ghost(env, "bridgee_masq", "MASQDEV")
    dev = new_device(bob)
    status, body = await c.request("POST", "/keys/upload", {
        "device_keys": dev.device_keys(), "one_time_keys": dev.one_time_keys(2)},
        env.bridge_token, params=as_device(bob))
    assert (status, body) == (200, {"one_time_key_counts": {"signed_curve25519": 2}}), body
    status, body = await c.request("GET", "/account/whoami", token=env.bridge_token,
                                   params=as_device(bob))
    assert (status, body["device_id"]) == (200, "MASQDEV")
    status, body = await c.request("POST", "/keys/query",
                                   {"device_keys": {bob.user_id: []}}, env.bridge_token,
                                   params=as_device(bob))
    assert status == 200 and "MASQDEV" in body["device_keys"][bob.user_id]
    # Only a device of that user: an unknown one, or another user's, is refused.
    other = await ghost(env, "bridgee_other", "OTHERDEV")
    for device_id in ("NOSUCH", other.device_id):
        status, body = await c.request("POST", "/keys/claim", {"one_time_keys": {}},
                                       env.bridge_token,
                                       params={**as_device(bob),
                                               "org.matrix.msc3202.device_id": device_id})
        assert (status, body["errcode"]) == (400, "M_UNKNOWN_DEVICE"), device_id


async def test_key_counts_follow_a_claim(env: Env) -> None:
    c = env.client
    bob = await ghost(env, "bridgee_otk", "OTKDEV")
    dev = new_device(bob)
    fallback = {"signed_curve25519:FB": dev.sign({"key": "fb", "fallback": True})}
    status, _ = await c.request("POST", "/keys/upload", {
        "device_keys": dev.device_keys(), "one_time_keys": dev.one_time_keys(3),
        "fallback_keys": fallback}, env.bridge_token, params=as_device(bob))
    assert status == 200
    alice = await c.register()
    status, body = await c.request("POST", "/keys/claim", {
        "one_time_keys": {bob.user_id: {"OTKDEV": "signed_curve25519"}}}, alice.access_token)
    assert status == 200 and body["one_time_keys"][bob.user_id]["OTKDEV"]

    def counted(b: dict[str, Any]) -> bool:
        counts = b.get("org.matrix.msc3202.device_one_time_keys_count", {})
        return counts.get(bob.user_id, {}).get("OTKDEV") == {"signed_curve25519": 2}

    body = await wait_for(env.bridge, counted)
    assert body["org.matrix.msc3202.device_unused_fallback_key_types"][bob.user_id] == {
        "OTKDEV": ["signed_curve25519"]}
    assert body["org.matrix.msc3202.device_one_time_key_counts"] == body[
        "org.matrix.msc3202.device_one_time_keys_count"]
    assert not any(k.startswith("org.matrix.msc3202") for b in bodies(env.plain) for k in b)


async def test_device_list_changes_of_users_sharing_a_room(env: Env) -> None:
    c = env.client
    bot = await ghost(env, "bridgee_lists", "LISTDEV")
    owner, loner = await c.register(), await c.register()
    room_id = await c.create_room(owner, preset="public_chat")
    status, _ = await c.request("POST", f"/rooms/{room_id}/join", {}, env.bridge_token,
                                params={"user_id": bot.user_id})
    assert status == 200
    for user in (loner, owner):  # the loner first: their change must not show
        status, _ = await c.request("POST", "/keys/upload",
                                    {"device_keys": new_device(user).device_keys()},
                                    user.access_token)
        assert status == 200

    def changed(b: dict[str, Any]) -> list[str]:
        return list(b.get("org.matrix.msc3202.device_lists", {}).get("changed", []))

    body = await wait_for(env.bridge, lambda b: owner.user_id in changed(b))
    assert body["org.matrix.msc3202.device_lists"]["left"] == []
    assert not any(loner.user_id in changed(b) for b in bodies(env.bridge))
    assert not any("org.matrix.msc3202.device_lists" in b for b in bodies(env.plain))


async def test_device_lists_follow_membership(env: Env) -> None:
    """A user the bridge's users start sharing a room with is `changed`, one they share no
    room with any more is `left`, as /sync's device_lists goes."""
    c = env.client
    bot = await ghost(env, "bridgee_member", "MEMBERDEV")
    owner, dave = await c.register(), await c.register()
    room_id = await c.create_room(owner, preset="public_chat")

    def lists(b: dict[str, Any], key: str) -> list[str]:
        return list(b.get("org.matrix.msc3202.device_lists", {}).get(key, []))

    async def member(token: str, action: str, **params: str) -> None:
        status, body = await c.request("POST", f"/rooms/{room_id}/{action}", {}, token,
                                       params=params or None)
        assert status == 200, body

    await member(env.bridge_token, "join", user_id=bot.user_id)
    await wait_for(env.bridge, lambda b: owner.user_id in lists(b, "changed"))
    await member(dave.access_token, "join")
    await wait_for(env.bridge, lambda b: dave.user_id in lists(b, "changed"))
    await member(dave.access_token, "leave")
    await wait_for(env.bridge, lambda b: dave.user_id in lists(b, "left"))
    await member(env.bridge_token, "leave", user_id=bot.user_id)
    await wait_for(env.bridge, lambda b: owner.user_id in lists(b, "left"))
    # The bridge's own user is never "left" (its own users always concern it).
    assert not any(bot.user_id in lists(b, "left") for b in bodies(env.bridge))
