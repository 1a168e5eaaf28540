"""The remote door of the room writer: PDUs from another server, forks and merges, rejection,
soft failure, outliers, checked through the client API of a real server.

A "remote.test" server is simulated by a signing key of its own; its PDUs enter through
`RoomWriter.accept` as federation will feed them, and what local clients then see (state,
members, /sync, /messages, /event) is read over HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from homeserver.events.auth import auth_event_types
from homeserver.events.checks import InvalidPdu
from homeserver.events.hashing import finalize_event
from homeserver.rooms.writer import MissingEvents
from homeserver.signing import ServerSigningKey
from tests.conftest import Server
from tests.helpers import Client, User

REMOTE = "remote.test"


class Keys:
    """The KeyFetcher federation will implement: here, the remote server's one key."""

    def __init__(self, key: ServerSigningKey) -> None:
        self.key = key

    async def server_keys(self, server_name: str, key_ids: Iterable[str],
                          valid_at_ts: int) -> Mapping[str, str]:
        if server_name != REMOTE:
            return {}
        kid = f"ed25519:{self.key.signing_key.version}"
        return {kid: self.key.verify_key_base64} if kid in key_ids else {}


@pytest.fixture(scope="module")
def remote_key() -> ServerSigningKey:
    return ServerSigningKey.generate(REMOTE)


class Remote:
    """Builds and submits PDUs as remote.test would."""

    def __init__(self, server: Server, key: ServerSigningKey, room_id: str) -> None:
        self.hs = server.hs
        self.key = key
        self.keys = Keys(key)
        self.room_id = room_id
        self.ts = int(time.time() * 1000)

    async def room(self) -> Any:
        return await self.hs.rooms.get_room(self.room_id)

    async def state_at(self, event_id: str) -> dict[tuple[str, str], str]:
        entry = (await self.hs.rooms._cache.get_many([event_id]))[event_id]
        return dict(await self.hs.reader.state_ids_at(entry))

    async def build(self, sender: str, etype: str, content: dict[str, Any],
                    prev: list[str], state_key: str | None = None,
                    ts: int | None = None) -> tuple[str, dict[str, Any]]:
        room = await self.room()
        rv = room.version
        state = await self.state_at(prev[0])
        depth = max([(await self.hs.rooms._cache.get_many([p]))[p].depth for p in prev])
        auth = [state[k] for k in auth_event_types(rv, etype, sender, state_key, content)
                if k in state]
        self.ts += 1
        pdu: dict[str, Any] = {
            "type": etype, "sender": sender, "room_id": self.room_id, "content": content,
            "origin_server_ts": ts if ts is not None else self.ts, "depth": depth + 1,
            "prev_events": prev, "auth_events": auth,
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        # v1/v2 cite prev and auth events with their content hashes.
        cited = await self.hs.rooms._cache.get_many(prev + auth)
        hashes = {k: e.pdu["hashes"]["sha256"] for k, e in cited.items()}
        return finalize_event(pdu, rv, self.key, event_hashes=hashes, server_name=REMOTE)

    async def accept(self, event_id: str, pdu: dict[str, Any]) -> Any:
        async with self.hs.rooms.locked(self.room_id) as room:
            return await self.hs.writer.accept(room, event_id, pdu, self.keys)

    async def send(self, sender: str, etype: str, content: dict[str, Any], prev: list[str],
                   state_key: str | None = None, ts: int | None = None) -> Any:
        event_id, pdu = await self.build(sender, etype, content, prev, state_key, ts)
        return await self.accept(event_id, pdu)

    async def extremities(self) -> list[str]:
        return list((await self.room()).extremities)


async def _setup(c: Client, server: Server, key: ServerSigningKey, version: str
                 ) -> tuple[User, Remote, str, str]:
    alice = await c.register()
    room_id = await c.create_room(alice, preset="public_chat", room_version=version)
    remote = Remote(server, key, room_id)
    bob = f"@bob:{REMOTE}"
    join = await remote.send(bob, "m.room.member", {"membership": "join"},
                             await remote.extremities(), state_key=bob)
    assert join.rejected is None and not join.soft_failed
    # Alice gives bob power 50, so his topic changes are allowed.
    await _set_power(c, alice, room_id, bob, 50)
    return alice, remote, room_id, bob


async def _set_power(c: Client, admin: User, room_id: str, user: str, level: int) -> None:
    """`admin` (a local user) sets `user`'s power level in the room over HTTP."""
    status, pl = await c.request("GET", f"/rooms/{room_id}/state/m.room.power_levels",
                                 token=admin.access_token)
    assert status == 200
    pl["users"] = {**pl.get("users", {}), user: level}
    status, _ = await c.request("PUT", f"/rooms/{room_id}/state/m.room.power_levels", pl,
                                admin.access_token)
    assert status == 200


async def _topic(c: Client, user: User, room_id: str) -> str:
    status, data = await c.request("GET", f"/rooms/{room_id}/state/m.room.topic",
                                   token=user.access_token)
    assert status == 200, data
    return str(data["topic"])


@pytest.mark.parametrize("version", ["1", "3", "10", "12"])
async def test_a_remote_join_is_accepted_and_served(c: Client, server: Server,
                                                    remote_key: ServerSigningKey,
                                                    version: str) -> None:
    alice, remote, room_id, bob = await _setup(c, server, remote_key, version)
    status, data = await c.request("GET", f"/rooms/{room_id}/joined_members",
                                   token=alice.access_token)
    assert status == 200 and bob in data["joined"]
    body = await c.sync(alice)
    timeline = body["rooms"]["join"][room_id]["timeline"]["events"]
    state = body["rooms"]["join"][room_id].get("state", {}).get("events", [])
    assert any(e["sender"] == bob for e in timeline + state)


@pytest.mark.parametrize("version", ["3", "10", "12"])
async def test_a_fork_is_merged_by_state_resolution(c: Client, server: Server,
                                                    remote_key: ServerSigningKey,
                                                    version: str) -> None:
    alice, remote, room_id, bob = await _setup(c, server, remote_key, version)
    base = await remote.extremities()
    assert len(base) == 1
    # Two concurrent topics on one parent: both stay forward extremities.
    first = await remote.send(bob, "m.room.topic", {"topic": "early"}, base, "", ts=1000)
    second = await remote.send(bob, "m.room.topic", {"topic": "late"}, base, "", ts=2000)
    assert sorted(await remote.extremities()) == sorted([first.event_id, second.event_id])
    # Equal mainline position: the later origin_server_ts is applied last and wins.
    assert await _topic(c, alice, room_id) == "late"
    # The room's cache is only a cache: reloaded from the database, the fork is still there.
    server.hs.rooms.rooms.drop(room_id)
    assert sorted(await remote.extremities()) == sorted([first.event_id, second.event_id])
    assert await _topic(c, alice, room_id) == "late"
    # A local message now merges the fork: it cites both extremities.
    msg = await c.send(alice, room_id, "merged")
    assert await remote.extremities() == [msg]
    entry = (await server.hs.rooms._cache.get_many([msg]))[msg]
    assert sorted(entry.pdu["prev_events"]) == sorted([first.event_id, second.event_id])
    assert await _topic(c, alice, room_id) == "late"
    status, page = await c.request("GET", f"/rooms/{room_id}/messages",
                                   token=alice.access_token, params={"dir": "b", "limit": "5"})
    assert status == 200
    ids = [e["event_id"] for e in page["chunk"]]
    assert {first.event_id, second.event_id, msg} <= set(ids)


@pytest.mark.parametrize("version", ["3", "10", "12"])
async def test_a_state_event_losing_the_resolution_does_not_become_current(
        c: Client, server: Server, remote_key: ServerSigningKey, version: str) -> None:
    """Found by two servers setting the topic at once: the branch arriving second lost the
    resolution but was written as current state anyway."""
    alice, remote, room_id, bob = await _setup(c, server, remote_key, version)
    base = await remote.extremities()
    await remote.send(bob, "m.room.topic", {"topic": "late"}, base, "", ts=2000)
    await remote.send(bob, "m.room.topic", {"topic": "early"}, base, "", ts=1000)
    assert await _topic(c, alice, room_id) == "late"
    server.hs.rooms.rooms.drop(room_id)  # the database agrees
    assert await _topic(c, alice, room_id) == "late"


@pytest.mark.parametrize("version", ["3", "10", "12"])
async def test_a_concurrent_ban_wins_over_the_banned_users_state(
        c: Client, server: Server, remote_key: ServerSigningKey, version: str) -> None:
    alice, remote, room_id, bob = await _setup(c, server, remote_key, version)
    carol = f"@carol:{REMOTE}"  # a remote admin
    join = await remote.send(carol, "m.room.member", {"membership": "join"},
                             await remote.extremities(), state_key=carol)
    assert join.rejected is None
    await _set_power(c, alice, room_id, carol, 100)
    status, _ = await c.request("PUT", f"/rooms/{room_id}/state/m.room.topic",
                                {"topic": "original"}, alice.access_token)
    assert status == 200
    fork = await remote.extremities()
    # bob changes the topic on one branch (accepted: nothing forbids it yet) ...
    vandal = await remote.send(bob, "m.room.topic", {"topic": "vandalised"}, fork, "")
    assert vandal.rejected is None and not vandal.soft_failed
    assert await _topic(c, alice, room_id) == "vandalised"
    # ... while carol bans him on another branch from the same parent.
    ban = await remote.send(carol, "m.room.member", {"membership": "ban"}, fork,
                            state_key=bob)
    assert ban.rejected is None and not ban.soft_failed
    # The ban is a power event and is ordered first; bob's topic then fails against the
    # resolved state (he is banned), so the topic is the one from before the fork.
    assert await _topic(c, alice, room_id) == "original"
    status, members = await c.request("GET", f"/rooms/{room_id}/joined_members",
                                      token=alice.access_token)
    assert bob not in members["joined"]
    # A local event merges the branches and keeps the resolved state.
    await c.send(alice, room_id, "after the merge")
    assert await _topic(c, alice, room_id) == "original"


async def test_rejected_events_are_stored_but_never_state(c: Client, server: Server,
                                                          remote_key: ServerSigningKey) -> None:
    alice, remote, room_id, bob = await _setup(c, server, remote_key, "10")
    status, pl = await c.request("GET", f"/rooms/{room_id}/state/m.room.power_levels",
                                 token=alice.access_token)
    before = await remote.extremities()
    grab = dict(pl)
    grab["users"] = {**pl["users"], bob: 100}  # above his own level: not allowed
    entry = await remote.send(bob, "m.room.power_levels", grab, before, "")
    assert entry.rejected is not None
    assert await remote.extremities() == before
    status, now = await c.request("GET", f"/rooms/{room_id}/state/m.room.power_levels",
                                  token=alice.access_token)
    assert now["users"][bob] == 50
    status, _ = await c.request("GET", f"/rooms/{room_id}/event/{entry.event_id}",
                                token=alice.access_token)
    assert status == 404
    # Accepting it again is a no-op that returns the stored verdict.
    again = await remote.accept(entry.event_id, entry.pdu)
    assert again.rejected is not None


@pytest.mark.parametrize("version", ["1", "10"])
async def test_soft_failed_events_are_not_served(c: Client, server: Server,
                                                 remote_key: ServerSigningKey,
                                                 version: str) -> None:
    alice, remote, room_id, bob = await _setup(c, server, remote_key, version)
    before_ban = await remote.extremities()
    since = (await c.sync(alice))["next_batch"]
    status, _ = await c.request("POST", f"/rooms/{room_id}/ban", {"user_id": bob},
                                alice.access_token)
    assert status == 200
    extremities = await remote.extremities()
    # bob, banned now, sends on a branch from before the ban: allowed there, not by now.
    late = await remote.send(bob, "m.room.message", {"msgtype": "m.text", "body": "sneaky"},
                             before_ban)
    assert late.soft_failed and late.rejected is None
    assert await remote.extremities() == extremities
    body = await c.sync(alice, since=since)
    timeline = body["rooms"]["join"][room_id]["timeline"]["events"]
    assert late.event_id not in [e["event_id"] for e in timeline]
    status, page = await c.request("GET", f"/rooms/{room_id}/messages",
                                   token=alice.access_token, params={"dir": "b"})
    assert late.event_id not in [e["event_id"] for e in page["chunk"]]


async def test_bad_signatures_and_missing_events(c: Client, server: Server,
                                                 remote_key: ServerSigningKey) -> None:
    alice, remote, room_id, bob = await _setup(c, server, remote_key, "10")
    event_id, pdu = await remote.build(bob, "m.room.message", {"body": "x"},
                                       await remote.extremities())
    forged = dict(pdu, signatures={REMOTE: {"ed25519:bogus": "AAAA"}})
    with pytest.raises(InvalidPdu):
        await remote.accept(event_id, forged)
    nothing = await server.hs.rooms._cache.get_many([event_id])
    assert event_id not in nothing
    # A PDU of another room is not this room's writer's business.
    other_room = dict(pdu, room_id="!elsewhere:remote.test")
    with pytest.raises(InvalidPdu):
        await remote.accept(event_id, other_room)
    # A prev event we do not have: federation must fetch it (or the state) first.
    other = ServerSigningKey.generate("elsewhere.test")
    fake_prev, _ = finalize_event({"type": "x", "sender": bob, "room_id": room_id,
                                   "content": {}, "origin_server_ts": 1, "depth": 1,
                                   "prev_events": [], "auth_events": []},
                                  (await remote.room()).version, other)
    event_id, pdu = await remote.build(bob, "m.room.message", {"body": "y"},
                                       await remote.extremities())
    pdu["prev_events"] = [fake_prev]
    event_id, pdu = finalize_event({k: v for k, v in pdu.items()
                                    if k not in ("hashes", "signatures")},
                                   (await remote.room()).version, remote_key)
    with pytest.raises(MissingEvents) as e:
        await remote.accept(event_id, pdu)
    assert e.value.event_ids == [fake_prev]


async def test_a_content_hash_mismatch_keeps_the_event_redacted(
        c: Client, server: Server, remote_key: ServerSigningKey) -> None:
    alice, remote, room_id, bob = await _setup(c, server, remote_key, "10")
    event_id, pdu = await remote.build(bob, "m.room.message",
                                       {"msgtype": "m.text", "body": "original"},
                                       await remote.extremities())
    tampered = dict(pdu, content={"msgtype": "m.text", "body": "tampered"})
    entry = await remote.accept(event_id, tampered)
    assert entry.rejected is None
    assert entry.pdu["content"] == {}


async def test_an_outlier_is_deoutliered_when_it_arrives_in_the_dag(
        c: Client, server: Server, remote_key: ServerSigningKey) -> None:
    alice, remote, room_id, bob = await _setup(c, server, remote_key, "10")
    event_id, pdu = await remote.build(bob, "m.room.message",
                                       {"msgtype": "m.text", "body": "first as outlier"},
                                       await remote.extremities())
    async with server.hs.rooms.locked(room_id) as room:
        out = await server.hs.writer.store_outlier(room, event_id, pdu, remote.keys)
    assert out.outlier and out.stream_ordering < 0
    status, _ = await c.request("GET", f"/rooms/{room_id}/event/{event_id}",
                                token=alice.access_token)
    assert status == 404
    entry = await remote.accept(event_id, pdu)
    assert not entry.outlier and entry.stream_ordering > 0
    assert await remote.extremities() == [event_id]
    status, got = await c.request("GET", f"/rooms/{room_id}/event/{event_id}",
                                  token=alice.access_token)
    assert status == 200 and got["content"]["body"] == "first as outlier"


@pytest.mark.parametrize("version", ["10", "12"])
async def test_a_merge_that_drops_a_join_updates_memberships(
        c: Client, server: Server, remote_key: ServerSigningKey, version: str) -> None:
    alice, remote, room_id, bob = await _setup(c, server, remote_key, version)
    carol = f"@carol:{REMOTE}"
    await remote.send(carol, "m.room.member", {"membership": "join"},
                      await remote.extremities(), state_key=carol)
    await _set_power(c, alice, room_id, carol, 100)
    fork = await remote.extremities()
    dave = f"@dave:{REMOTE}"
    members = server.hs.rooms._members
    # dave joins the public room on one branch ...
    join = await remote.send(dave, "m.room.member", {"membership": "join"}, fork, state_key=dave)
    assert join.rejected is None and not join.soft_failed
    assert (await members.rooms_of(dave))[room_id].membership == "join"
    # ... while carol makes the room invite-only on another branch from the same parent.
    rule = await remote.send(carol, "m.room.join_rules", {"join_rule": "invite"}, fork, "")
    assert rule.rejected is None and not rule.soft_failed
    # The join rule is a power event and is ordered first; dave's join then fails against it.
    status, joined = await c.request("GET", f"/rooms/{room_id}/joined_members",
                                     token=alice.access_token)
    assert dave not in joined["joined"]
    assert (await members.rooms_of(dave))[room_id].membership != "join"
    server.hs.rooms.rooms.drop(room_id)  # and so it stays when reloaded from the database
    status, joined = await c.request("GET", f"/rooms/{room_id}/joined_members",
                                     token=alice.access_token)
    assert dave not in joined["joined"]
