"""Table-driven tests for the authorisation rules of room versions 1 to 12.

Each case builds a small room with :class:`Room`, makes one event and says whether the
rules allow it: a bool for every version, or ``since(n)``/``before(n)`` where the spec
changed the answer in version n. Rooms start as: ALICE created the room and is joined
(power 100 in v1-v11, an infinite-power creator in v12), MOD is joined at 50, BOB is joined
at 0, EVE has no membership. The join rule is "invite" unless the case changes it. In v1/v2
rooms every event carries an ``event_id`` on its sender's server, as those versions require.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest

from homeserver.events.auth import (
    AuthError,
    auth_event_types,
    check_auth,
    check_auth_events_list,
    creators,
    redaction_applies,
    redacts_event_id,
    required_power_level_for_event,
    user_power_level,
)
from homeserver.events.hashing import compute_event_id, room_id_for_create_event
from homeserver.events.room_versions import ROOM_VERSIONS, RoomVersion
from homeserver.signing import ServerSigningKey

ALICE = "@alice:a.test"
MOD = "@mod:a.test"
BOB = "@bob:b.test"
EVE = "@eve:e.test"
CAROL = "@carol:c.test"

ALL = [str(n) for n in range(1, 13)]
MEMBER = "m.room.member"
JOIN = {"membership": "join"}

JsonDict = dict[str, Any]
_ids = itertools.count()


class Room:
    """A room state map plus helpers to build events in it."""

    def __init__(
        self,
        rv: RoomVersion,
        *,
        create_content: JsonDict | None = None,
        bare: bool = False,
    ) -> None:
        self.rv = rv
        content: JsonDict = {"room_version": rv.identifier}
        if not rv.implicit_room_creator:
            content["creator"] = ALICE
        content.update(create_content or {})
        self.create: JsonDict = {
            "type": "m.room.create",
            "state_key": "",
            "sender": ALICE,
            "content": content,
            "origin_server_ts": 1,
            "depth": 1,
            "prev_events": [],
            "auth_events": [],
        }
        if rv.room_id_is_create_event_hash:
            self.create_id = compute_event_id(self.create, rv)
            self.room_id = room_id_for_create_event(self.create_id)
        else:
            self.room_id = "!room:a.test"
            self.create["room_id"] = self.room_id
            if not rv.reference_hash_event_ids:
                self.create["event_id"] = "$create:a.test"
            self.create_id = compute_event_id(self.create, rv)
        self.state: dict[tuple[str, str], JsonDict] = {("m.room.create", ""): self.create}
        if bare:
            return
        self.member(ALICE, "join")
        users = {MOD: 50}
        if not rv.creators_have_infinite_power:
            users[ALICE] = 100
        self.power_levels(users=users)
        self.join_rule("invite")
        self.member(MOD, "join")
        self.member(BOB, "join")

    def ev(
        self,
        event_type: str,
        sender: str,
        content: JsonDict,
        state_key: str | None = None,
        **extra: Any,
    ) -> JsonDict:
        event: JsonDict = {
            "type": event_type,
            "room_id": self.room_id,
            "sender": sender,
            "content": content,
            "origin_server_ts": 2,
            "depth": 5,
            "prev_events": self.refs("$prev"),
            "auth_events": [],
        }
        if not self.rv.reference_hash_event_ids:
            event["event_id"] = f"${next(_ids)}:{sender.partition(':')[2]}"
        if state_key is not None:
            event["state_key"] = state_key
        event.update(extra)
        return event

    def refs(self, *event_ids: str) -> list[Any]:
        """prev_events/auth_events in the room version's format."""
        if self.rv.reference_hash_event_ids:
            return list(event_ids)
        return [[i, {"sha256": "aGFzaA"}] for i in event_ids]

    def put(self, event_type: str, state_key: str, content: JsonDict, sender: str = ALICE) -> Room:
        self.state[(event_type, state_key)] = self.ev(event_type, sender, content, state_key)
        return self

    def member(self, user: str, membership: str, **content: Any) -> Room:
        return self.put("m.room.member", user, {"membership": membership, **content}, user)

    def power_levels(self, **content: Any) -> Room:
        return self.put("m.room.power_levels", "", content)

    def update_pl(self, **changes: Any) -> Room:
        content = dict(self.state[("m.room.power_levels", "")]["content"])
        content.update(changes)
        return self.power_levels(**content)

    def join_rule(self, rule: str, **content: Any) -> Room:
        return self.put("m.room.join_rules", "", {"join_rule": rule, **content})

    def membership_event(
        self, sender: str, target: str, membership: str, **content: Any
    ) -> JsonDict:
        return self.ev("m.room.member", sender, {"membership": membership, **content}, target)

    def pl_event(self, sender: str, **content: Any) -> JsonDict:
        return self.ev("m.room.power_levels", sender, content, "")

    def current_pl(self) -> JsonDict:
        return dict(self.state[("m.room.power_levels", "")]["content"])


Builder = Callable[[Room], JsonDict]
# True/False for every version, or a function of the version number.
Expect = bool | Callable[[int], bool]


def since(n: int) -> Callable[[int], bool]:
    """Allowed from room version n on (the spec added it in n)."""
    return lambda version: version >= n


def before(n: int) -> Callable[[int], bool]:
    """Allowed only before room version n (the spec removed it in n)."""
    return lambda version: version < n


def run(rv_id: str, build: Builder, allowed: Expect, room: Room | None = None) -> None:
    rv = ROOM_VERSIONS[rv_id]
    room = room or Room(rv)
    event = build(room)
    if not isinstance(allowed, bool):
        allowed = allowed(int(rv_id))
    if allowed:
        check_auth(rv, event, room.state)
    else:
        with pytest.raises(AuthError):
            check_auth(rv, event, room.state)


def cases(table: list[tuple[str, Builder, Expect]]) -> list[Any]:
    return [pytest.param(build, allowed, id=name) for name, build, allowed in table]


# ------------------------------------------------------------------------------ create


def _create(rv_id: str, content: JsonDict, **extra: Any) -> tuple[RoomVersion, JsonDict]:
    rv = ROOM_VERSIONS[rv_id]
    event: JsonDict = {
        "type": "m.room.create",
        "state_key": "",
        "sender": ALICE,
        "content": content,
        "origin_server_ts": 1,
        "depth": 1,
        "prev_events": [],
        "auth_events": [],
    }
    if not rv.room_id_is_create_event_hash:
        event["room_id"] = "!new:a.test"
    event.update(extra)
    return rv, event


CREATE_CASES: list[tuple[str, str, JsonDict, JsonDict, bool]] = [
    # (name, version, content, extra top-level fields, allowed)
    ("v10-ok", "10", {"creator": ALICE, "room_version": "10"}, {}, True),
    ("v10-no-creator", "10", {"room_version": "10"}, {}, False),
    ("v10-prev-events", "10", {"creator": ALICE}, {"prev_events": ["$x"]}, False),
    ("v10-room-domain", "10", {"creator": ALICE}, {"room_id": "!new:b.test"}, False),
    ("v10-unknown-version", "10", {"creator": ALICE, "room_version": "99"}, {}, False),
    ("v11-ok-without-creator", "11", {"room_version": "11"}, {}, True),
    ("v11-no-room-version", "11", {}, {}, True),
    ("v11-room-domain", "11", {}, {"room_id": "!new:b.test"}, False),
    ("v11-prev-events", "11", {}, {"prev_events": ["$x"]}, False),
    ("v11-unknown-version", "11", {"room_version": "1000"}, {}, False),
    ("v12-ok", "12", {"room_version": "12"}, {}, True),
    ("v12-has-room-id", "12", {"room_version": "12"}, {"room_id": "!new:a.test"}, False),
    ("v12-prev-events", "12", {}, {"prev_events": ["$x"]}, False),
    ("v12-additional-ok", "12", {"additional_creators": [BOB, CAROL]}, {}, True),
    ("v12-additional-empty", "12", {"additional_creators": []}, {}, True),
    ("v12-additional-not-list", "12", {"additional_creators": BOB}, {}, False),
    ("v12-additional-non-str", "12", {"additional_creators": [BOB, 5]}, {}, False),
    ("v12-additional-bad-id", "12", {"additional_creators": ["bob"]}, {}, False),
    ("v12-additional-no-domain", "12", {"additional_creators": ["@bob"]}, {}, False),
    ("v11-additional-ignored", "11", {"additional_creators": "junk"}, {}, True),
    *[
        row
        for v in ALL[:9]
        for row in (
            (f"v{v}-ok", v, {"creator": ALICE, "room_version": v}, {}, True),
            (f"v{v}-no-creator", v, {"room_version": v}, {}, False),
            (f"v{v}-prev-events", v, {"creator": ALICE}, {"prev_events": [["$x:a", {}]]}, False),
            (f"v{v}-room-domain", v, {"creator": ALICE}, {"room_id": "!new:b.test"}, False),
            (f"v{v}-unknown-version", v, {"creator": ALICE, "room_version": "13"}, {}, False),
        )
    ],
]


@pytest.mark.parametrize(
    ("rv_id", "content", "extra", "allowed"),
    [pytest.param(*c[1:], id=c[0]) for c in CREATE_CASES],
)
def test_create_rules(rv_id: str, content: JsonDict, extra: JsonDict, allowed: bool) -> None:
    rv, event = _create(rv_id, content, **extra)
    if allowed:
        check_auth(rv, event, {})
    else:
        with pytest.raises(AuthError):
            check_auth(rv, event, {})


# ---------------------------------------------------------------- room-level checks


@pytest.mark.parametrize("rv_id", ALL)
def test_no_create_event_in_state(rv_id: str) -> None:
    room = Room(ROOM_VERSIONS[rv_id])
    del room.state[("m.room.create", "")]
    with pytest.raises(AuthError):
        check_auth(room.rv, room.ev("m.room.message", BOB, {}), room.state)


@pytest.mark.parametrize("rv_id", ALL)
def test_room_id_must_match_create(rv_id: str) -> None:
    room = Room(ROOM_VERSIONS[rv_id])
    check_auth(room.rv, room.ev("m.room.message", BOB, {}), room.state)
    other = room.ev("m.room.message", BOB, {}, room_id="!other:a.test")
    with pytest.raises(AuthError):
        check_auth(room.rv, other, room.state)


def test_v12_room_id_must_be_create_hash() -> None:
    room = Room(ROOM_VERSIONS["12"])
    forged = room.ev("m.room.message", BOB, {}, room_id="!" + "A" * 43)
    with pytest.raises(AuthError, match="room_id"):
        check_auth(room.rv, forged, room.state)


@pytest.mark.parametrize("rv_id", ALL)
@pytest.mark.parametrize(
    ("sender", "allowed"), [(MOD, True), (BOB, False)], ids=["same-domain", "other-domain"]
)
def test_m_federate_false(rv_id: str, sender: str, allowed: bool) -> None:
    room = Room(ROOM_VERSIONS[rv_id], create_content={"m.federate": False})
    run(rv_id, lambda r: r.ev("m.room.message", sender, {"body": "x"}), allowed, room)


# ---------------------------------------------------------------------------- joins


def _first_join(r: Room, user: str = ALICE) -> JsonDict:
    r.state = {("m.room.create", ""): r.create}
    return r.ev(MEMBER, user, {"membership": "join"}, user, prev_events=r.refs(r.create_id))


def _restricted_join(
    r: Room, authoriser: str | None, signed_by: str | None = None, rule: str = "restricted"
) -> JsonDict:
    r.join_rule(rule, allow=[{"type": "m.room_membership", "room_id": "!other:x"}])
    content: JsonDict = {}
    if authoriser is not None:
        content["join_authorised_via_users_server"] = authoriser
    event = r.membership_event(EVE, EVE, "join", **content)
    server = signed_by if signed_by is not None else (authoriser or "@x:none").split(":", 1)[1]
    event["signatures"] = {server: {"ed25519:k": "sig"}, "e.test": {"ed25519:k": "sig"}}
    return event


JOIN_CASES: list[tuple[str, Builder, Expect]] = [
    ("creator-first-join", _first_join, True),
    ("non-creator-first-join", lambda r: _first_join(r, BOB), False),
    (
        "creator-join-wrong-prev",
        lambda r: {**_first_join(r), "prev_events": r.refs("$elsewhere")},
        False,
    ),
    (
        "creator-join-two-prevs",
        lambda r: {**_first_join(r), "prev_events": r.refs(r.create_id, "$x")},
        False,
    ),
    ("public-join", lambda r: r.join_rule("public").membership_event(EVE, EVE, "join"), True),
    ("invite-only-uninvited", lambda r: r.membership_event(EVE, EVE, "join"), False),
    (
        "invite-only-invited",
        lambda r: r.member(EVE, "invite").membership_event(EVE, EVE, "join"),
        True,
    ),
    ("rejoin-already-joined", lambda r: r.membership_event(BOB, BOB, "join"), True),
    (
        "invite-only-after-leave",
        lambda r: r.member(EVE, "leave").membership_event(EVE, EVE, "join"),
        False,
    ),
    (
        "join-for-someone-else",
        lambda r: r.join_rule("public").membership_event(BOB, EVE, "join"),
        False,
    ),
    (
        "banned-public-join",
        lambda r: r.join_rule("public").member(EVE, "ban").membership_event(EVE, EVE, "join"),
        False,
    ),
    (
        "banned-with-invite-state-is-ban",
        lambda r: r.member(EVE, "ban").membership_event(EVE, EVE, "join"),
        False,
    ),
    (
        "knock-rule-invited",
        lambda r: r.join_rule("knock").member(EVE, "invite").membership_event(EVE, EVE, "join"),
        since(7),
    ),
    (
        "knock-rule-uninvited",
        lambda r: r.join_rule("knock").member(EVE, "knock").membership_event(EVE, EVE, "join"),
        False,
    ),
    (
        "private-rule",
        lambda r: r.join_rule("private").membership_event(EVE, EVE, "join"),
        False,
    ),
    (
        "no-join-rules-event",
        lambda r: (r.state.pop(("m.room.join_rules", "")), r.membership_event(EVE, EVE, "join"))[1],
        False,
    ),
    (
        "restricted-invited",
        lambda r: (r.member(EVE, "invite"), _restricted_join(r, None))[1],
        since(8),
    ),
    ("restricted-via-mod", lambda r: _restricted_join(r, MOD), since(8)),
    ("restricted-via-bob-invite-0", lambda r: _restricted_join(r, BOB), since(8)),
    (
        "restricted-via-bob-invite-50",
        lambda r: (r.update_pl(invite=50), _restricted_join(r, BOB))[1],
        False,
    ),
    ("restricted-no-authoriser", lambda r: _restricted_join(r, None), False),
    ("restricted-authoriser-not-joined", lambda r: _restricted_join(r, CAROL), False),
    (
        "restricted-authoriser-left",
        lambda r: (r.member(MOD, "leave"), _restricted_join(r, MOD))[1],
        False,
    ),
    ("restricted-not-signed-by-authoriser", lambda r: _restricted_join(r, MOD, "x.test"), False),
    (
        "restricted-authoriser-not-a-string",
        lambda r: (
            _restricted_join(r, None)
            | {"content": {"membership": "join", "join_authorised_via_users_server": 5}}
        ),
        False,
    ),
    (
        "restricted-banned",
        lambda r: (r.member(EVE, "ban"), _restricted_join(r, MOD))[1],
        False,
    ),
    (
        "knock-restricted-via-mod",
        lambda r: _restricted_join(r, MOD, rule="knock_restricted"),
        since(10),
    ),
    (
        "public-join-signed-by-wrong-authoriser-server",
        lambda r: r.join_rule("public").membership_event(
            EVE, EVE, "join", join_authorised_via_users_server=MOD
        ),
        # before v8 the key is ordinary content, so nothing needs MOD's server to sign
        before(8),
    ),
]


@pytest.mark.parametrize("rv_id", ALL)
@pytest.mark.parametrize(("build", "allowed"), cases(JOIN_CASES))
def test_join_rules(rv_id: str, build: Builder, allowed: Expect) -> None:
    run(rv_id, build, allowed)


@pytest.mark.parametrize("rv_id", ALL[:10])
def test_v1_to_v10_first_join_uses_content_creator(rv_id: str) -> None:
    rv = ROOM_VERSIONS[rv_id]
    room = Room(rv, create_content={"creator": BOB}, bare=True)
    check_auth(rv, room.ev(MEMBER, BOB, JOIN, BOB, prev_events=room.refs(room.create_id)),
               room.state)
    with pytest.raises(AuthError):
        check_auth(
            rv,
            room.ev(MEMBER, ALICE, JOIN, ALICE, prev_events=room.refs(room.create_id)),
            room.state,
        )


@pytest.mark.parametrize("rv_id", ["11", "12"])
def test_v11_first_join_uses_create_sender(rv_id: str) -> None:
    rv = ROOM_VERSIONS[rv_id]
    # a stray "creator" key means nothing from v11 on
    room = Room(rv, create_content={"creator": BOB}, bare=True)
    check_auth(rv, room.ev(MEMBER, ALICE, JOIN, ALICE, prev_events=room.refs(room.create_id)),
               room.state)
    with pytest.raises(AuthError):
        check_auth(rv, room.ev(MEMBER, BOB, JOIN, BOB, prev_events=room.refs(room.create_id)),
                   room.state)


# -------------------------------------------------------------------------- invites

INVITE_CASES: list[tuple[str, Builder, Expect]] = [
    ("member-invites", lambda r: r.membership_event(BOB, EVE, "invite"), True),
    ("non-member-invites", lambda r: r.membership_event(CAROL, EVE, "invite"), False),
    (
        "invited-user-cannot-invite",
        lambda r: r.member(CAROL, "invite").membership_event(CAROL, EVE, "invite"),
        False,
    ),
    ("invite-joined-user", lambda r: r.membership_event(MOD, BOB, "invite"), False),
    (
        "invite-banned-user",
        lambda r: r.member(EVE, "ban").membership_event(MOD, EVE, "invite"),
        False,
    ),
    (
        "re-invite-invited",
        lambda r: r.member(EVE, "invite").membership_event(MOD, EVE, "invite"),
        True,
    ),
    (
        "invite-left-user",
        lambda r: r.member(EVE, "leave").membership_event(MOD, EVE, "invite"),
        True,
    ),
    (
        "invite-level-too-high",
        lambda r: r.update_pl(invite=50).membership_event(BOB, EVE, "invite"),
        False,
    ),
    (
        "invite-level-equal",
        lambda r: r.update_pl(invite=50).membership_event(MOD, EVE, "invite"),
        True,
    ),
    ("missing-membership", lambda r: r.ev("m.room.member", BOB, {}, EVE), False),
    ("missing-state-key", lambda r: r.ev("m.room.member", BOB, {"membership": "invite"}), False),
    ("unknown-membership", lambda r: r.membership_event(BOB, EVE, "frobnicate"), False),
    ("non-string-membership", lambda r: r.ev("m.room.member", BOB, {"membership": 1}, EVE), False),
]


@pytest.mark.parametrize("rv_id", ALL)
@pytest.mark.parametrize(("build", "allowed"), cases(INVITE_CASES))
def test_invite_rules(rv_id: str, build: Builder, allowed: Expect) -> None:
    run(rv_id, build, allowed)


# ------------------------------------------------------------- third-party invites

TPI_KEY = ServerSigningKey.from_seed(
    "id.test", "ed25519:0", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
)
OTHER_KEY = ServerSigningKey.generate("id.test")


def _tpi(
    r: Room,
    *,
    mxid: str = EVE,
    token: str = "tok",
    signer: ServerSigningKey = TPI_KEY,
    invite_sender: str = BOB,
    key_field: str = "public_key",
    with_invite_event: bool = True,
    drop: str | None = None,
) -> JsonDict:
    if with_invite_event:
        if key_field == "public_key":
            content: JsonDict = {"public_key": TPI_KEY.verify_key_base64}
        else:
            content = {
                "public_key": OTHER_KEY.verify_key_base64,
                "public_keys": [
                    {"public_key": "junk"},
                    {"public_key": TPI_KEY.verify_key_base64},
                ],
            }
        content.update(display_name="e...@example.org", key_validity_url="https://id.test/v")
        r.put("m.room.third_party_invite", "tok", content, invite_sender)
    signed = signer.sign_json({"mxid": mxid, "token": token})
    if drop is not None:
        signed.pop(drop)
    return r.membership_event(
        BOB, EVE, "invite", third_party_invite={"display_name": "e", "signed": signed}
    )


TPI_CASES: list[tuple[str, Builder, Expect]] = [
    ("valid", _tpi, True),
    ("valid-public-keys-list", lambda r: _tpi(r, key_field="public_keys"), True),
    ("wrong-mxid", lambda r: _tpi(r, mxid=CAROL), False),
    ("unknown-token", lambda r: _tpi(r, token="nope"), False),
    ("no-invite-event", lambda r: _tpi(r, with_invite_event=False), False),
    ("sender-differs", lambda r: _tpi(r, invite_sender=MOD), False),
    ("wrong-signing-key", lambda r: _tpi(r, signer=OTHER_KEY), False),
    ("unsigned", lambda r: _tpi(r, drop="signatures"), False),
    ("no-mxid", lambda r: _tpi(r, drop="mxid"), False),
    ("target-banned", lambda r: (r.member(EVE, "ban"), _tpi(r))[1], False),
    (
        "no-signed",
        lambda r: r.membership_event(BOB, EVE, "invite", third_party_invite={"x": 1}),
        False,
    ),
    (
        "tampered-signed",
        lambda r: (
            _tpi(r)
            | {
                "content": {
                    "membership": "invite",
                    "third_party_invite": {
                        "signed": {**_tpi(r)["content"]["third_party_invite"]["signed"], "x": 1}
                    },
                }
            }
        ),
        False,
    ),
]


@pytest.mark.parametrize("rv_id", ALL)
@pytest.mark.parametrize(("build", "allowed"), cases(TPI_CASES))
def test_third_party_invite_rules(rv_id: str, build: Builder, allowed: Expect) -> None:
    run(rv_id, build, allowed)


# ---------------------------------------------------------------- leave / kick / ban

LEAVE_BAN_CASES: list[tuple[str, Builder, Expect]] = [
    ("self-leave-joined", lambda r: r.membership_event(BOB, BOB, "leave"), True),
    (
        "reject-invite",
        lambda r: r.member(EVE, "invite").membership_event(EVE, EVE, "leave"),
        True,
    ),
    (
        "rescind-knock",
        lambda r: r.member(EVE, "knock").membership_event(EVE, EVE, "leave"),
        since(7),
    ),
    ("self-leave-not-member", lambda r: r.membership_event(EVE, EVE, "leave"), False),
    (
        "self-leave-already-left",
        lambda r: r.member(EVE, "leave").membership_event(EVE, EVE, "leave"),
        False,
    ),
    (
        "self-unban",
        lambda r: r.member(EVE, "ban").membership_event(EVE, EVE, "leave"),
        False,
    ),
    ("mod-kicks-bob", lambda r: r.membership_event(MOD, BOB, "leave"), True),
    ("bob-kicks-mod", lambda r: r.membership_event(BOB, MOD, "leave"), False),
    ("mod-kicks-alice", lambda r: r.membership_event(MOD, ALICE, "leave"), False),
    ("alice-kicks-mod", lambda r: r.membership_event(ALICE, MOD, "leave"), True),
    (
        "kick-equal-level",
        lambda r: r.update_pl(users={**r.current_pl()["users"], BOB: 50}).membership_event(
            MOD, BOB, "leave"
        ),
        False,
    ),
    (
        "kick-level-raised",
        lambda r: r.update_pl(kick=51).membership_event(MOD, BOB, "leave"),
        False,
    ),
    (
        "kick-by-non-member",
        lambda r: r.member(MOD, "leave").membership_event(MOD, BOB, "leave"),
        False,
    ),
    (
        "mod-kicks-invitee",
        lambda r: r.member(EVE, "invite").membership_event(MOD, EVE, "leave"),
        True,
    ),
    ("mod-unbans", lambda r: r.member(EVE, "ban").membership_event(MOD, EVE, "leave"), True),
    (
        "unban-needs-ban-level",
        lambda r: r.update_pl(ban=60).member(EVE, "ban").membership_event(MOD, EVE, "leave"),
        False,
    ),
    (
        "unban-needs-kick-level",
        lambda r: r.update_pl(kick=60).member(EVE, "ban").membership_event(MOD, EVE, "leave"),
        False,
    ),
    ("mod-bans-bob", lambda r: r.membership_event(MOD, BOB, "ban"), True),
    ("mod-bans-outsider", lambda r: r.membership_event(MOD, EVE, "ban"), True),
    ("bob-bans-eve", lambda r: r.membership_event(BOB, EVE, "ban"), False),
    ("mod-bans-alice", lambda r: r.membership_event(MOD, ALICE, "ban"), False),
    (
        "ban-by-non-member",
        lambda r: r.member(MOD, "leave").membership_event(MOD, BOB, "ban"),
        False,
    ),
    (
        "ban-level-lowered-but-target-equal",
        lambda r: r.update_pl(ban=0).membership_event(BOB, EVE, "ban"),
        False,
    ),
    (
        "ban-level-lowered",
        lambda r: r.update_pl(ban=0, users={**r.current_pl()["users"], BOB: 1}).membership_event(
            BOB, EVE, "ban"
        ),
        True,
    ),
    ("self-ban-by-mod", lambda r: r.membership_event(MOD, MOD, "ban"), False),
]


@pytest.mark.parametrize("rv_id", ALL)
@pytest.mark.parametrize(("build", "allowed"), cases(LEAVE_BAN_CASES))
def test_leave_and_ban_rules(rv_id: str, build: Builder, allowed: Expect) -> None:
    run(rv_id, build, allowed)


# ---------------------------------------------------------------------------- knocks

KNOCK_CASES: list[tuple[str, Builder, Expect]] = [
    ("knock", lambda r: r.join_rule("knock").membership_event(EVE, EVE, "knock"), since(7)),
    (
        "knock-restricted",
        lambda r: r.join_rule("knock_restricted").membership_event(EVE, EVE, "knock"),
        since(10),
    ),
    ("knock-invite-room", lambda r: r.membership_event(EVE, EVE, "knock"), False),
    (
        "knock-public-room",
        lambda r: r.join_rule("public").membership_event(EVE, EVE, "knock"),
        False,
    ),
    (
        "knock-restricted-room",
        lambda r: r.join_rule("restricted").membership_event(EVE, EVE, "knock"),
        False,
    ),
    (
        "knock-for-other",
        lambda r: r.join_rule("knock").membership_event(BOB, EVE, "knock"),
        False,
    ),
    (
        "knock-after-leave",
        lambda r: r.join_rule("knock").member(EVE, "leave").membership_event(EVE, EVE, "knock"),
        since(7),
    ),
    (
        "knock-again",
        lambda r: r.join_rule("knock").member(EVE, "knock").membership_event(EVE, EVE, "knock"),
        since(7),
    ),
    (
        "knock-while-invited",
        lambda r: r.join_rule("knock").member(EVE, "invite").membership_event(EVE, EVE, "knock"),
        False,
    ),
    (
        "knock-while-joined",
        lambda r: r.join_rule("knock").membership_event(BOB, BOB, "knock"),
        False,
    ),
    (
        "knock-while-banned",
        lambda r: r.join_rule("knock").member(EVE, "ban").membership_event(EVE, EVE, "knock"),
        False,
    ),
]


@pytest.mark.parametrize("rv_id", ALL)
@pytest.mark.parametrize(("build", "allowed"), cases(KNOCK_CASES))
def test_knock_rules(rv_id: str, build: Builder, allowed: Expect) -> None:
    run(rv_id, build, allowed)


# -------------------------------------------------------- non-membership events

SEND_CASES: list[tuple[str, Builder, Expect]] = [
    ("message-by-member", lambda r: r.ev("m.room.message", BOB, {"body": "hi"}), True),
    ("message-by-outsider", lambda r: r.ev("m.room.message", EVE, {"body": "hi"}), False),
    (
        "message-by-invitee",
        lambda r: r.member(EVE, "invite").ev("m.room.message", EVE, {}),
        False,
    ),
    ("message-after-leave", lambda r: r.member(BOB, "leave").ev("m.room.message", BOB, {}), False),
    (
        "events-default-raised",
        lambda r: r.update_pl(events_default=10).ev("m.room.message", BOB, {}),
        False,
    ),
    (
        "events-override-higher",
        lambda r: r.update_pl(events={"m.custom": 60}).ev("m.custom", MOD, {}),
        False,
    ),
    (
        "events-override-lower-for-state",
        lambda r: r.update_pl(events={"m.room.topic": 0}).ev("m.room.topic", BOB, {}, ""),
        True,
    ),
    ("state-by-bob-default-50", lambda r: r.ev("m.room.topic", BOB, {"topic": "t"}, ""), False),
    ("state-by-mod", lambda r: r.ev("m.room.topic", MOD, {"topic": "t"}, ""), True),
    (
        "state-default-unset-without-pl",
        lambda r: (r.state.pop(("m.room.power_levels", "")), r.ev("m.room.name", BOB, {}, ""))[1],
        False,
    ),
    (
        "message-without-pl-event",
        lambda r: (r.state.pop(("m.room.power_levels", "")), r.ev("m.room.message", BOB, {}))[1],
        True,
    ),
    (
        "own-user-state-key",
        lambda r: r.update_pl(state_default=0).ev("m.custom.state", BOB, {}, BOB),
        True,
    ),
    (
        "other-user-state-key",
        lambda r: r.update_pl(state_default=0).ev("m.custom.state", BOB, {}, MOD),
        False,
    ),
    (
        "at-state-key-not-user",
        lambda r: r.update_pl(state_default=0).ev("m.custom.state", BOB, {}, "@bobby"),
        False,
    ),
    (
        "at-state-key-by-mod-for-bob",
        lambda r: r.ev("m.custom.state", MOD, {}, BOB),
        False,
    ),
    ("tpi-event-by-member", lambda r: r.ev("m.room.third_party_invite", BOB, {}, "t"), True),
    (
        "tpi-event-invite-level",
        lambda r: r.update_pl(invite=50).ev("m.room.third_party_invite", BOB, {}, "t"),
        False,
    ),
    (
        "tpi-event-ignores-state-default",
        lambda r: r.update_pl(state_default=100).ev("m.room.third_party_invite", MOD, {}, "t"),
        True,
    ),
    (
        "tpi-event-by-outsider",
        lambda r: r.ev("m.room.third_party_invite", EVE, {}, "t"),
        False,
    ),
    (
        # v1/v2 rule 11: below the redact level, only an event ID on the redaction's server
        "redaction-of-others-allowed-by-auth",
        lambda r: r.ev("m.room.redaction", BOB, {"redacts": "$x:a.test"}, redacts="$x:a.test"),
        since(3),
    ),
    (
        "redaction-same-event-id-domain",
        lambda r: r.ev("m.room.redaction", BOB, {"redacts": "$x:b.test"}, redacts="$x:b.test"),
        True,
    ),
    (
        "redaction-at-redact-level",
        lambda r: r.ev("m.room.redaction", MOD, {"redacts": "$x:b.test"}, redacts="$x:b.test"),
        True,
    ),
    (
        "redaction-v1-without-own-event-id",
        lambda r: {
            k: v
            for k, v in r.ev("m.room.redaction", BOB, {}, redacts="$x:b.test").items()
            if k != "event_id"
        },
        since(3),
    ),
    (
        "redaction-send-level",
        lambda r: r.update_pl(events={"m.room.redaction": 51}).ev(
            "m.room.redaction", MOD, {"redacts": "$x"}, redacts="$x"
        ),
        False,
    ),
    (
        "redaction-redact-level-ignored",
        lambda r: r.update_pl(redact=100).ev(
            "m.room.redaction", BOB, {"redacts": "$x:a.test"}, redacts="$x:a.test"
        ),
        since(3),
    ),
    (
        "redaction-v1-v2-redact-level-applies",
        lambda r: r.update_pl(redact=0).ev(
            "m.room.redaction", BOB, {"redacts": "$x:a.test"}, redacts="$x:a.test"
        ),
        True,
    ),
    ("no-type", lambda r: {k: v for k, v in r.ev("x", BOB, {}).items() if k != "type"}, False),
]


@pytest.mark.parametrize("rv_id", ALL)
@pytest.mark.parametrize(("build", "allowed"), cases(SEND_CASES))
def test_send_rules(rv_id: str, build: Builder, allowed: Expect) -> None:
    run(rv_id, build, allowed)


# ------------------------------------------------------------------ power levels

PL_CASES: list[tuple[str, Builder, Expect]] = [
    ("mod-no-change", lambda r: r.pl_event(MOD, **r.current_pl()), True),
    # v1-v9 "stringy power levels", v1-v5 "floaty power levels"; v10 integers only
    (
        "scalar-string",
        lambda r: r.pl_event(ALICE, **{**r.current_pl(), "ban": "50"}),
        before(10),
    ),
    (
        "scalar-string-padded-signed",
        lambda r: r.pl_event(ALICE, **{**r.current_pl(), "ban": " +0050 "}),
        before(10),
    ),
    (
        "scalar-string-not-integer",
        lambda r: r.pl_event(ALICE, **{**r.current_pl(), "ban": "5O"}),
        False,
    ),
    (
        "scalar-string-decimal",
        lambda r: r.pl_event(ALICE, **{**r.current_pl(), "ban": "50.0"}),
        False,
    ),
    (
        "mod-string-scalar-above-self",
        lambda r: r.pl_event(MOD, **{**r.current_pl(), "kick": "51"}),
        False,
    ),
    ("scalar-bool", lambda r: r.pl_event(ALICE, **{**r.current_pl(), "kick": True}), False),
    ("scalar-float", lambda r: r.pl_event(ALICE, **{**r.current_pl(), "invite": 1.5}), before(6)),
    (
        # 50.9 truncates to 50, MOD's own level
        "mod-float-truncated-to-own",
        lambda r: r.pl_event(MOD, **{**r.current_pl(), "kick": 50.9}),
        before(6),
    ),
    (
        "mod-float-above-self",
        lambda r: r.pl_event(MOD, **{**r.current_pl(), "kick": 51.0}),
        False,
    ),
    (
        "scalar-float-infinite",
        lambda r: r.pl_event(ALICE, **{**r.current_pl(), "invite": math.inf}),
        False,
    ),
    (
        "users-value-float",
        lambda r: r.pl_event(
            ALICE, **{**r.current_pl(), "users": {**r.current_pl()["users"], BOB: 50.57}}
        ),
        before(6),
    ),
    (
        "events-value-string",
        lambda r: r.pl_event(ALICE, **{**r.current_pl(), "events": {"m.x": "1"}}),
        before(10),
    ),
    ("events-not-object", lambda r: r.pl_event(ALICE, **{**r.current_pl(), "events": []}), False),
    (
        "notifications-value-string",
        lambda r: r.pl_event(ALICE, **{**r.current_pl(), "notifications": {"room": "50"}}),
        before(10),
    ),
    (
        "users-invalid-key",
        lambda r: r.pl_event(
            ALICE, **{**r.current_pl(), "users": {**r.current_pl()["users"], "bob": 1}}
        ),
        False,
    ),
    (
        "users-value-string",
        lambda r: r.pl_event(
            ALICE, **{**r.current_pl(), "users": {**r.current_pl()["users"], BOB: "1"}}
        ),
        before(10),
    ),
    ("users-not-object", lambda r: r.pl_event(ALICE, **{**r.current_pl(), "users": []}), False),
    (
        "mod-promotes-bob-to-own-level",
        lambda r: r.pl_event(
            MOD, **{**r.current_pl(), "users": {**r.current_pl()["users"], BOB: 50}}
        ),
        True,
    ),
    (
        "mod-promotes-bob-above-self",
        lambda r: r.pl_event(
            MOD, **{**r.current_pl(), "users": {**r.current_pl()["users"], BOB: 51}}
        ),
        False,
    ),
    (
        "mod-demotes-self",
        lambda r: r.pl_event(
            MOD, **{**r.current_pl(), "users": {**r.current_pl()["users"], MOD: 10}}
        ),
        True,
    ),
    (
        "mod-removes-self",
        lambda r: r.pl_event(
            MOD,
            **{
                **r.current_pl(),
                "users": {k: v for k, v in r.current_pl()["users"].items() if k != MOD},
            },
        ),
        True,
    ),
    (
        "mod-demotes-peer",
        lambda r: r.update_pl(users={**r.current_pl()["users"], CAROL: 50}).pl_event(
            MOD, **{**r.current_pl(), "users": {**r.current_pl()["users"], CAROL: 0}}
        ),
        False,
    ),
    (
        "mod-demotes-lower-user",
        lambda r: r.update_pl(users={**r.current_pl()["users"], CAROL: 49}).pl_event(
            MOD, **{**r.current_pl(), "users": {**r.current_pl()["users"], CAROL: 0}}
        ),
        True,
    ),
    (
        "bob-promotes-self",
        lambda r: r.update_pl(events={"m.room.power_levels": 0}).pl_event(
            BOB, **{**r.current_pl(), "users": {**r.current_pl()["users"], BOB: 1}}
        ),
        False,
    ),
    (
        "bob-lacks-pl-send-level",
        lambda r: r.pl_event(BOB, **r.current_pl()),
        False,
    ),
    ("mod-lowers-ban", lambda r: r.pl_event(MOD, **{**r.current_pl(), "ban": 40}), True),
    (
        "mod-raises-kick-above-self",
        lambda r: r.pl_event(MOD, **{**r.current_pl(), "kick": 60}),
        False,
    ),
    ("mod-adds-redact-at-own", lambda r: r.pl_event(MOD, **{**r.current_pl(), "redact": 50}), True),
    (
        "mod-changes-value-above-self",
        lambda r: r.update_pl(redact=100).pl_event(MOD, **{**r.current_pl(), "redact": 50}),
        False,
    ),
    (
        "mod-removes-value-above-self",
        lambda r: r.update_pl(users_default=0, kick=75).pl_event(
            MOD, **{k: v for k, v in r.current_pl().items() if k != "kick"}
        ),
        False,
    ),
    (
        "mod-adds-event-above-self",
        lambda r: r.pl_event(MOD, **{**r.current_pl(), "events": {"m.x": 51}}),
        False,
    ),
    (
        "mod-adds-event-at-own",
        lambda r: r.pl_event(MOD, **{**r.current_pl(), "events": {"m.x": 50}}),
        True,
    ),
    (
        "mod-changes-event-from-above",
        lambda r: r.update_pl(events={"m.x": 100}).pl_event(
            MOD, **{**r.current_pl(), "events": {"m.x": 0}}
        ),
        False,
    ),
    (
        "mod-removes-event-from-above",
        lambda r: r.update_pl(events={"m.x": 100}).pl_event(
            MOD, **{**r.current_pl(), "events": {}}
        ),
        False,
    ),
    (
        # v6 added ``notifications`` to rules 10.4/10.5
        "mod-changes-notification-from-above",
        lambda r: r.update_pl(notifications={"room": 100}).pl_event(
            MOD, **{**r.current_pl(), "notifications": {"room": 0}}
        ),
        before(6),
    ),
    (
        "mod-adds-notification-above-self",
        lambda r: r.pl_event(MOD, **{**r.current_pl(), "notifications": {"room": 99}}),
        before(6),
    ),
    (
        "mod-adds-notification-at-own",
        lambda r: r.pl_event(MOD, **{**r.current_pl(), "notifications": {"room": 50}}),
        True,
    ),
    (
        "first-pl-event-anything-goes",
        lambda r: (
            r.state.pop(("m.room.power_levels", "")),
            r.pl_event(ALICE, users={BOB: 1000}, ban=9000),
        )[1],
        True,
    ),
    (
        "pl-state-key-non-empty",
        lambda r: r.ev("m.room.power_levels", MOD, r.current_pl(), "x"),
        True,
    ),
]


@pytest.mark.parametrize("rv_id", ALL)
@pytest.mark.parametrize(("build", "allowed"), cases(PL_CASES))
def test_power_level_rules(rv_id: str, build: Builder, allowed: Expect) -> None:
    run(rv_id, build, allowed)


# ------------------------------------------------- version-specific power behaviour


def _aliases(r: Room, sender: str, server: str | None) -> JsonDict:
    return r.ev("m.room.aliases", sender, {"aliases": [f"#a:{server}"]}, server)


def _old_versions_cases() -> list[tuple[str, str, Builder, bool]]:
    """v1-v5 m.room.aliases rule 4 (gone in v6), and levels read as strings or floats."""
    rows: list[tuple[str, str, Builder, bool]] = []
    for v in ALL:
        n = int(v)
        rows += [
            # BOB (level 0, state_default 50) names his own server: rule 4 allows it
            (f"v{v}-aliases-own-server", v, lambda r: _aliases(r, BOB, "b.test"), n < 6),
            (f"v{v}-aliases-other-server", v, lambda r: _aliases(r, BOB, "a.test"), False),
            # MOD has the state level but not the server named
            (f"v{v}-aliases-mod-for-other", v, lambda r: _aliases(r, MOD, "b.test"), n >= 6),
            # rule 4 comes before the membership rule
            (f"v{v}-aliases-by-outsider", v, lambda r: _aliases(r, EVE, "e.test"), n < 6),
            # from v6 an m.room.aliases without a state_key is just a message event
            (f"v{v}-aliases-no-state-key", v, lambda r: _aliases(r, MOD, None), n >= 6),
        ]
    for v in ALL[:9]:
        rows += [
            (
                f"v{v}-string-level-read",
                v,
                lambda r: r.update_pl(users={ALICE: 100, BOB: " +50"}).ev(
                    "m.room.topic", BOB, {}, ""
                ),
                True,
            ),
            (
                f"v{v}-string-state-default-read",
                v,
                lambda r: r.update_pl(state_default="000").ev("m.room.topic", BOB, {}, ""),
                True,
            ),
            (
                f"v{v}-junk-string-level-is-default",
                v,
                lambda r: r.update_pl(users={ALICE: 100, BOB: "5 0"}).ev(
                    "m.room.topic", BOB, {}, ""
                ),
                False,
            ),
        ]
    for v in ALL[:5]:
        rows.append(
            (
                f"v{v}-float-level-read",
                v,
                lambda r: r.update_pl(users={ALICE: 100, BOB: 50.57}).ev(
                    "m.room.topic", BOB, {}, ""
                ),
                True,
            )
        )
    return rows


VERSION_CASES: list[tuple[str, str, Builder, bool]] = [
    *_old_versions_cases(),
    # v10/v11: the creator is an ordinary user listed in "users".
    (
        "v10-mod-cannot-demote-creator",
        "10",
        lambda r: r.pl_event(
            MOD, **{**r.current_pl(), "users": {**r.current_pl()["users"], ALICE: 0}}
        ),
        False,
    ),
    (
        "v11-creator-demotes-self",
        "11",
        lambda r: r.pl_event(
            ALICE, **{**r.current_pl(), "users": {**r.current_pl()["users"], ALICE: 0}}
        ),
        True,
    ),
    (
        "v11-creator-listed-ok",
        "11",
        lambda r: r.pl_event(ALICE, **r.current_pl()),
        True,
    ),
    (
        "v11-additional-creators-not-creators",
        "11",
        lambda r: r.membership_event(CAROL, MOD, "ban"),
        False,
    ),
    # v12: creators are infinite and cannot be listed.
    (
        "v12-creator-listed",
        "12",
        lambda r: r.pl_event(
            ALICE, **{**r.current_pl(), "users": {**r.current_pl()["users"], ALICE: 100}}
        ),
        False,
    ),
    (
        "v12-additional-creator-listed",
        "12",
        lambda r: r.pl_event(
            ALICE, **{**r.current_pl(), "users": {**r.current_pl()["users"], CAROL: 1}}
        ),
        False,
    ),
    (
        "v12-creator-grants-huge-level",
        "12",
        lambda r: r.pl_event(ALICE, **{**r.current_pl(), "users": {MOD: 2**53 - 1}}),
        True,
    ),
    (
        "v12-first-pl-listing-creator",
        "12",
        lambda r: (r.state.pop(("m.room.power_levels", "")), r.pl_event(ALICE, users={ALICE: 100}))[
            1
        ],
        False,
    ),
    ("v12-mod-cannot-kick-creator", "12", lambda r: r.membership_event(MOD, ALICE, "leave"), False),
    ("v12-creator-kicks-mod", "12", lambda r: r.membership_event(ALICE, MOD, "leave"), True),
    (
        "v12-additional-creator-bans-mod",
        "12",
        lambda r: r.membership_event(CAROL, MOD, "ban"),
        True,
    ),
    (
        "v12-creator-cannot-ban-creator",
        "12",
        lambda r: r.membership_event(CAROL, ALICE, "ban"),
        False,
    ),
    (
        "v12-creator-sends-anything",
        "12",
        lambda r: r.update_pl(events_default=2**53 - 1).ev("m.room.message", CAROL, {}),
        True,
    ),
    (
        "v12-creator-without-pl-event",
        "12",
        lambda r: (r.state.pop(("m.room.power_levels", "")), r.ev("m.room.name", CAROL, {}, ""))[1],
        True,
    ),
]


@pytest.mark.parametrize(
    ("rv_id", "build", "allowed"), [pytest.param(*c[1:], id=c[0]) for c in VERSION_CASES]
)
def test_version_specific_power(rv_id: str, build: Builder, allowed: bool) -> None:
    room = Room(ROOM_VERSIONS[rv_id], create_content={"additional_creators": [CAROL]})
    room.member(CAROL, "join")
    run(rv_id, build, allowed, room)


# ------------------------------------------------------------- query helpers


@pytest.mark.parametrize(
    ("rv_id", "user", "expected"),
    [
        ("1", ALICE, 100),
        ("1", CAROL, 0),
        ("6", MOD, 50),
        ("9", ALICE, 100),
        ("10", ALICE, 100),
        ("10", MOD, 50),
        ("10", BOB, 0),
        ("10", CAROL, 0),
        ("11", ALICE, 100),
        ("12", ALICE, math.inf),
        ("12", CAROL, math.inf),
        ("12", MOD, 50),
        ("12", EVE, 0),
    ],
)
def test_user_power_level(rv_id: str, user: str, expected: float) -> None:
    room = Room(ROOM_VERSIONS[rv_id], create_content={"additional_creators": [CAROL]})
    assert user_power_level(room.rv, user, room.state) == expected


@pytest.mark.parametrize(
    ("rv_id", "user", "expected"),
    [
        ("10", ALICE, 100),
        ("10", BOB, 0),
        ("11", ALICE, 100),
        ("12", ALICE, math.inf),
        ("12", BOB, 0),
    ],
)
def test_user_power_level_without_pl_event(rv_id: str, user: str, expected: float) -> None:
    room = Room(ROOM_VERSIONS[rv_id], bare=True)
    assert user_power_level(room.rv, user, room.state) == expected


def test_users_default_applies() -> None:
    room = Room(ROOM_VERSIONS["11"])
    room.update_pl(users_default=7)
    assert user_power_level(room.rv, EVE, room.state) == 7


@pytest.mark.parametrize(
    ("rv_id", "expected"),
    [("1", {ALICE}), ("5", {ALICE}), ("10", {ALICE}), ("11", {ALICE}), ("12", {ALICE, CAROL})],
)
def test_creators(rv_id: str, expected: set[str]) -> None:
    content: JsonDict = {"additional_creators": [CAROL]}
    if int(rv_id) <= 10:
        content["creator"] = ALICE
    room = Room(ROOM_VERSIONS[rv_id], create_content=content)
    assert creators(room.rv, room.state) == expected
    assert creators(room.rv, {}) == set()


@pytest.mark.parametrize(
    ("pl", "event_type", "is_state", "expected"),
    [
        (None, "m.room.message", False, 0),
        (None, "m.room.name", True, 50),
        ({}, "m.room.name", True, 50),
        ({"events_default": 5}, "m.room.message", False, 5),
        ({"state_default": 5}, "m.room.name", True, 5),
        ({"events": {"m.room.name": 1}, "state_default": 5}, "m.room.name", True, 1),
        ({"events": {"m.room.message": 9}}, "m.room.message", False, 9),
        ({"events": {"m.room.message": 9}}, "m.room.message", True, 9),
    ],
)
def test_required_power_level(
    pl: JsonDict | None, event_type: str, is_state: bool, expected: int
) -> None:
    state = {} if pl is None else {("m.room.power_levels", ""): {"content": pl}}
    assert required_power_level_for_event(event_type, is_state, state) == expected


# ------------------------------------------------------------ redaction helpers


@pytest.mark.parametrize(
    ("rv_id", "event", "expected"),
    [
        ("1", {"redacts": "$a", "content": {"redacts": "$b"}}, "$a"),
        ("10", {"redacts": "$a", "content": {"redacts": "$b"}}, "$a"),
        ("11", {"redacts": "$a", "content": {"redacts": "$b"}}, "$b"),
        ("12", {"content": {"redacts": "$b"}}, "$b"),
        ("11", {"redacts": "$a", "content": {}}, None),
    ],
)
def test_redacts_event_id(rv_id: str, event: JsonDict, expected: str | None) -> None:
    assert redacts_event_id(ROOM_VERSIONS[rv_id], event) == expected


@pytest.mark.parametrize("rv_id", ALL)
@pytest.mark.parametrize(
    ("redactor", "original_sender", "expected"),
    [
        (MOD, BOB, True),  # redact level 50
        (BOB, BOB, True),  # own event
        ("@bob2:b.test", BOB, True),  # same server
        (BOB, MOD, False),
    ],
)
def test_redaction_applies(rv_id: str, redactor: str, original_sender: str, expected: bool) -> None:
    room = Room(ROOM_VERSIONS[rv_id])
    redaction = room.ev("m.room.redaction", redactor, {"redacts": "$x"})
    original = room.ev("m.room.message", original_sender, {})
    assert redaction_applies(room.rv, redaction, original, room.state) is expected


# ------------------------------------------------------------ auth events selection

_BASE10 = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", BOB)]
_BASE12 = [("m.room.power_levels", ""), ("m.room.member", BOB)]


@pytest.mark.parametrize(
    ("rv_id", "event_type", "state_key", "content", "expected"),
    [
        ("10", "m.room.create", "", {}, []),
        ("12", "m.room.create", "", {}, []),
        ("10", "m.room.message", None, {}, _BASE10),
        ("11", "m.room.message", None, {}, _BASE10),
        ("12", "m.room.message", None, {}, _BASE12),
        ("12", "m.room.topic", "", {}, _BASE12),
        ("12", "m.room.member", BOB, {"membership": "join"}, _BASE12 + [("m.room.join_rules", "")]),
        (
            "11",
            "m.room.member",
            EVE,
            {"membership": "invite"},
            _BASE10 + [("m.room.member", EVE), ("m.room.join_rules", "")],
        ),
        (
            "12",
            "m.room.member",
            EVE,
            {"membership": "knock"},
            _BASE12 + [("m.room.member", EVE), ("m.room.join_rules", "")],
        ),
        ("12", "m.room.member", EVE, {"membership": "leave"}, _BASE12 + [("m.room.member", EVE)]),
        ("12", "m.room.member", EVE, {"membership": "ban"}, _BASE12 + [("m.room.member", EVE)]),
        (
            "12",
            "m.room.member",
            EVE,
            {"membership": "invite", "third_party_invite": {"signed": {"token": "tok"}}},
            _BASE12
            + [
                ("m.room.member", EVE),
                ("m.room.join_rules", ""),
                ("m.room.third_party_invite", "tok"),
            ],
        ),
        (
            "12",
            "m.room.member",
            BOB,
            {"membership": "join", "join_authorised_via_users_server": MOD},
            _BASE12 + [("m.room.join_rules", ""), ("m.room.member", MOD)],
        ),
        (
            "12",
            "m.room.member",
            BOB,
            {"membership": "leave", "join_authorised_via_users_server": MOD},
            _BASE12,
        ),
        ("1", "m.room.message", None, {}, _BASE10),
        ("1", "m.room.aliases", "b.test", {}, _BASE10),
        # restricted rooms (v8+) are what make the authorising user's membership an auth event
        (
            "7",
            "m.room.member",
            BOB,
            {"membership": "join", "join_authorised_via_users_server": MOD},
            _BASE10 + [("m.room.join_rules", "")],
        ),
        (
            "8",
            "m.room.member",
            BOB,
            {"membership": "join", "join_authorised_via_users_server": MOD},
            _BASE10 + [("m.room.join_rules", ""), ("m.room.member", MOD)],
        ),
    ],
)
def test_auth_event_types(
    rv_id: str,
    event_type: str,
    state_key: str | None,
    content: JsonDict,
    expected: list[tuple[str, str]],
) -> None:
    assert auth_event_types(ROOM_VERSIONS[rv_id], event_type, BOB, state_key, content) == expected


def _auth_list(r: Room, keys: list[tuple[str, str]]) -> list[JsonDict]:
    return [r.state[k] for k in keys]


@pytest.mark.parametrize(
    ("rv_id", "keys", "allowed"),
    [
        ("1", [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", BOB)], True),
        ("2", [("m.room.power_levels", ""), ("m.room.member", BOB)], False),  # no create
        ("10", [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", BOB)], True),
        ("11", [("m.room.create", ""), ("m.room.member", BOB)], True),
        ("11", [("m.room.power_levels", ""), ("m.room.member", BOB)], False),  # no create
        ("12", [("m.room.power_levels", ""), ("m.room.member", BOB)], True),
        ("12", [("m.room.create", ""), ("m.room.member", BOB)], False),  # create not selected
        ("11", [("m.room.create", ""), ("m.room.join_rules", "")], False),  # not selected
        ("11", [("m.room.create", ""), ("m.room.member", MOD)], False),  # other member
        ("12", [("m.room.member", BOB), ("m.room.member", BOB)], False),  # duplicate
    ],
)
def test_check_auth_events_list(rv_id: str, keys: list[tuple[str, str]], allowed: bool) -> None:
    room = Room(ROOM_VERSIONS[rv_id])
    event = room.ev("m.room.message", BOB, {})
    auth = _auth_list(room, keys)
    if allowed:
        check_auth_events_list(room.rv, event, auth)
    else:
        with pytest.raises(AuthError):
            check_auth_events_list(room.rv, event, auth)


@pytest.mark.parametrize("rv_id", ALL)
def test_check_auth_events_list_room_mismatch(rv_id: str) -> None:
    room = Room(ROOM_VERSIONS[rv_id])
    event = room.ev("m.room.message", BOB, {})
    foreign = {**room.state[("m.room.member", BOB)], "room_id": "!elsewhere:a.test"}
    with pytest.raises(AuthError, match="different room"):
        check_auth_events_list(room.rv, event, [foreign])


def test_check_auth_events_list_create_has_none() -> None:
    rv, event = _create("12", {})
    check_auth_events_list(rv, event, [])
