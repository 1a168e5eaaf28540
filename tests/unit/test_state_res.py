"""Table-driven tests for state resolution (v2 for rooms 10/11, v2.1 for room 12, v1).

A :class:`Dag` builds a room the way servers do: each event's ``auth_events`` are selected from
the state before it, and where an event has several ``prev_events`` that state is itself
*resolved* from the states after them. Every room starts with the same six events (create;
ALICE joins; power levels giving ALICE 100; public join rules; BOB joins; CHARLIE joins), each
citing the previous one. Cases name their events; the expected answer is the state at START
(the last initial event) with the named events put in, compared as an exact map.

The classic cases (ban vs power levels, topic reset, join rule evasion, offtopic power levels,
topic basic, topic, mainline sort) are the standard v2 scenarios, written out here anew.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.events.auth import auth_event_types
from homeserver.events.hashing import compute_event_id, room_id_for_create_event
from homeserver.events.room_versions import ROOM_VERSIONS, RoomVersion
from homeserver.events.state_res import (
    EventCache,
    StateKey,
    _V2Resolver,
    referenced_ids,
    resolve_state,
)
from homeserver.events.state_res_v1 import resolve_state_v1

JsonDict = dict[str, Any]

ALICE = "@alice:a.test"
BOB = "@bob:b.test"
CHARLIE = "@charlie:c.test"
DAVE = "@dave:d.test"
EVELYN = "@evelyn:e.test"
ZARA = "@zara:z.test"
MOD1 = "@mod1:m.test"
MOD2 = "@mod2:m.test"

CREATE = "m.room.create"
MEMBER = "m.room.member"
PL = "m.room.power_levels"
JR = "m.room.join_rules"
TOPIC = "m.room.topic"

V2_VERSIONS = ["10", "11"]
ALL_VERSIONS = ["10", "11", "12"]
START = "IMC"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class DictFetcher:
    """Serves PDUs from a dict; optionally answers in a shuffled order and counts calls."""

    def __init__(self, events: Mapping[str, JsonDict], rng: random.Random | None = None) -> None:
        self.events = events
        self.rng = rng
        self.calls = 0

    async def get_events(self, event_ids: Iterable[str]) -> Mapping[str, JsonDict]:
        self.calls += 1
        found = [(e, self.events[e]) for e in event_ids if e in self.events]
        if self.rng is not None:
            self.rng.shuffle(found)
        return dict(found)


class Dag:
    def __init__(self, rv: RoomVersion, *, initial_users: Mapping[str, int] | None = None) -> None:
        self.rv = rv
        self.events: dict[str, JsonDict] = {}
        self.ids: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.after: dict[str, dict[StateKey, str]] = {}
        self._ts = 0
        content: JsonDict = {"room_version": rv.identifier}
        if not rv.implicit_room_creator:
            content["creator"] = ALICE
        create: JsonDict = {
            "type": CREATE,
            "state_key": "",
            "sender": ALICE,
            "content": content,
            "origin_server_ts": 0,
            "depth": 1,
            "prev_events": [],
            "auth_events": [],
        }
        if rv.room_id_is_create_event_hash:
            self.room_id = room_id_for_create_event(compute_event_id(create, rv))
        else:
            self.room_id = "!room:a.test"
            create["room_id"] = self.room_id
        self._store("CREATE", compute_event_id(create, rv), create, {})
        self.member("IMA", ALICE, ALICE, "join", prev=["CREATE"])
        self.pl("IPOWER", ALICE, {ALICE: 100, **(initial_users or {})})
        self.jr("IJR", ALICE, "public")
        self.member("IMB", BOB, BOB, "join")
        self.member("IMC", CHARLIE, CHARLIE, "join")

    # --- building

    def _store(self, name: str, event_id: str, pdu: JsonDict, before: dict[StateKey, str]) -> None:
        self.events[event_id] = pdu
        self.ids[name] = event_id
        self.names[event_id] = name
        after = dict(before)
        if "state_key" in pdu:
            after[(pdu["type"], pdu["state_key"])] = event_id
        self.after[name] = after
        self._last = name

    def add(
        self,
        name: str,
        event_type: str,
        sender: str,
        content: JsonDict,
        state_key: str | None = None,
        prev: list[str] | None = None,
        ts: int | None = None,
    ) -> str:
        prev = prev or [self._last]
        before = self.resolve(*prev)
        wanted = auth_event_types(self.rv, event_type, sender, state_key, content)
        self._ts += 1
        pdu: JsonDict = {
            "type": event_type,
            "room_id": self.room_id,
            "sender": sender,
            "content": content,
            "origin_server_ts": self._ts if ts is None else ts,
            "depth": 1 + max(self.events[self.ids[p]]["depth"] for p in prev),
            "prev_events": [self.ids[p] for p in prev],
            "auth_events": [before[k] for k in wanted if k in before],
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        self._store(name, "$" + name, pdu, before)
        return "$" + name

    def topic(self, name: str, sender: str, **kw: Any) -> str:
        return self.add(name, TOPIC, sender, {"topic": name}, "", **kw)

    def pl(self, name: str, sender: str, users: Mapping[str, int], **kw: Any) -> str:
        extra = kw.pop("content", {})
        if self.rv.creators_have_infinite_power:  # v12: creators may not be listed
            users = {u: v for u, v in users.items() if u != ALICE}
        return self.add(name, PL, sender, {"users": dict(users), **extra}, "", **kw)

    def jr(self, name: str, sender: str, rule: str, **kw: Any) -> str:
        return self.add(name, JR, sender, {"join_rule": rule}, "", **kw)

    def member(self, name: str, sender: str, target: str, membership: str, **kw: Any) -> str:
        return self.add(name, MEMBER, sender, {"membership": membership}, target, **kw)

    def msg(self, name: str, sender: str, **kw: Any) -> str:
        return self.add(name, "m.room.message", sender, {"body": name}, None, **kw)

    # --- resolving

    def resolve(self, *names: str, rv: RoomVersion | None = None) -> dict[StateKey, str]:
        sets = [self.after[n] for n in names]
        return run(resolve_state(rv or self.rv, sets, DictFetcher(self.events)))

    def named(self, state: Mapping[StateKey, str]) -> dict[StateKey, str]:
        return {k: self.names.get(v, v) for k, v in state.items()}

    def expected(self, *names: str, base: str = START) -> dict[StateKey, str]:
        state = self.named(self.after[base])
        for n in names:
            pdu = self.events[self.ids[n]]
            state[(pdu["type"], pdu["state_key"])] = n
        return state


# ----------------------------------------------------------------- cases over a real DAG


@dataclass(frozen=True)
class Case:
    """``steps`` are ``(method, name, sender, arg, prev)``; prev ``None`` = the previous step."""

    name: str
    steps: tuple[tuple[str, str, str, Any, tuple[str, ...] | None], ...]
    end: tuple[str, ...]
    expected: tuple[str, ...]
    initial_users: tuple[tuple[str, int], ...] = ()


def build(case: Case, rv: RoomVersion) -> Dag:
    dag = Dag(rv, initial_users=dict(case.initial_users))
    for method, name, sender, arg, prev in case.steps:
        kw: dict[str, Any] = {"prev": list(prev)} if prev else {}
        if method == "topic":
            dag.topic(name, sender, **kw)
        elif method == "msg":
            dag.msg(name, sender, **kw)
        elif method == "pl":
            users, content = arg if isinstance(arg, tuple) else (arg, {})
            dag.pl(name, sender, users, content=content, **kw)
        elif method == "jr":
            dag.jr(name, sender, arg, **kw)
        elif method == "member":
            dag.member(name, sender, arg[0], arg[1], **kw)
        else:
            raise AssertionError(method)
    return dag


CASES = [
    # Alice bans Bob while Bob, concurrently, sends power levels: the ban (Alice is more
    # powerful) sorts first, so Bob's power levels fail and the ban stands.
    Case(
        "ban_vs_pl",
        (
            ("pl", "PA", ALICE, {ALICE: 100, BOB: 50}, (START,)),
            ("member", "MA", ALICE, (ALICE, "join"), None),
            ("member", "MB", ALICE, (BOB, "ban"), None),
            ("pl", "PB", BOB, {ALICE: 100, BOB: 50}, ("PA",)),
        ),
        end=("MB", "PB"),
        expected=("PA", "MA", "MB"),
    ),
    # Bob's topic came after his promotion, but a concurrent branch never saw either: once
    # Alice bans Bob, the older topic must not come back and Bob's topic must not survive.
    Case(
        "topic_reset",
        (
            ("topic", "T1", ALICE, None, (START,)),
            ("pl", "PA", ALICE, {ALICE: 100, BOB: 50}, None),
            ("topic", "T2", BOB, None, None),
            ("member", "MB", ALICE, (BOB, "ban"), None),
        ),
        end=("MB", "T1"),
        expected=("T1", "MB", "PA"),
    ),
    # Alice makes the room invite-only while Evelyn joins it concurrently: join rules are a
    # power event and are applied first, so the join fails.
    Case(
        "join_rule_evasion",
        (
            ("jr", "JR", ALICE, "invite", (START,)),
            ("member", "ME", EVELYN, (EVELYN, "join"), (START,)),
        ),
        end=("JR", "ME"),
        expected=("JR",),
    ),
    # A chain of power level changes beats an older one it descends from.
    Case(
        "offtopic_pl",
        (
            ("pl", "PA", ALICE, {ALICE: 100, BOB: 50}, (START,)),
            ("pl", "PB", BOB, {ALICE: 100, BOB: 50, CHARLIE: 50}, None),
            ("pl", "PC", CHARLIE, {ALICE: 100, BOB: 50, CHARLIE: 0}, None),
        ),
        end=("PC", "PA"),
        expected=("PC",),
    ),
    # Alice demotes Bob while Bob, still a moderator on his branch, sets power levels and a
    # topic: the demotion wins and Alice's topic survives.
    Case(
        "topic_basic",
        (
            ("topic", "T1", ALICE, None, (START,)),
            ("pl", "PA1", ALICE, {ALICE: 100, BOB: 50}, None),
            ("topic", "T2", ALICE, None, None),
            ("pl", "PA2", ALICE, {ALICE: 100, BOB: 0}, None),
            ("pl", "PB", BOB, {ALICE: 100, BOB: 50}, ("PA1",)),
            ("topic", "T3", BOB, None, None),
        ),
        end=("PA2", "T3"),
        expected=("PA2", "T2"),
    ),
    # As topic_basic, but the branches merged (at a message from a non-member) before Alice's
    # last topic: that topic is still the answer when the merge point is resolved again.
    Case(
        "topic",
        (
            ("topic", "T1", ALICE, None, (START,)),
            ("pl", "PA1", ALICE, {ALICE: 100, BOB: 50}, None),
            ("topic", "T2", ALICE, None, None),
            ("pl", "PA2", ALICE, {ALICE: 100, BOB: 0}, None),
            ("pl", "PB", BOB, {ALICE: 100, BOB: 50}, ("PA1",)),
            ("topic", "T3", BOB, None, None),
            ("msg", "MZ1", ZARA, None, ("PA2", "T3")),
            ("topic", "T4", ALICE, None, None),
        ),
        end=("T4", "MZ1"),
        expected=("T4", "PA2"),
    ),
    # Bob's topic T3 cites the newest power levels (mainline position 0) while Alice's T4
    # cites an older one, so T3 sorts last and wins although Alice sent hers later.
    Case(
        "mainline_sort",
        (
            ("topic", "T1", ALICE, None, (START,)),
            ("pl", "PA1", ALICE, {ALICE: 100, BOB: 50}, None),
            ("topic", "T2", ALICE, None, None),
            ("pl", "PA2", ALICE, ({ALICE: 100, BOB: 50}, {"events": {PL: 100}}), None),
            ("pl", "PB", BOB, {ALICE: 100, BOB: 50}, ("PA1",)),
            ("topic", "T3", BOB, None, ("PA2",)),
            ("topic", "T4", ALICE, None, ("PB",)),
        ),
        end=("T3", "T4"),
        expected=("T3", "PA2"),
    ),
    # A ban concurrent with the target's join: the ban is a power event, resolved first, so
    # the join fails against it.
    Case(
        "ban_vs_join",
        (
            ("member", "MBAN", ALICE, (EVELYN, "ban"), (START,)),
            ("member", "MJOIN", EVELYN, (EVELYN, "join"), (START,)),
        ),
        end=("MJOIN", "MBAN"),
        expected=("MBAN",),
    ),
    # The join happened first and was seen by Alice's ban: both branches are merged and the
    # ban still stands over the concurrent re-join.
    Case(
        "ban_after_join_vs_rejoin",
        (
            ("member", "MJ1", EVELYN, (EVELYN, "join"), (START,)),
            ("member", "MBAN", ALICE, (EVELYN, "ban"), None),
            ("member", "ML", EVELYN, (EVELYN, "leave"), ("MJ1",)),
            ("member", "MJ2", EVELYN, (EVELYN, "join"), None),
        ),
        end=("MJ2", "MBAN"),
        expected=("MBAN",),
    ),
    # Alice removes Bob's moderator power while Bob sets a topic with it: no topic.
    Case(
        "topic_by_demoted_moderator",
        (
            ("pl", "PDEMOTE", ALICE, {ALICE: 100, BOB: 0}, (START,)),
            ("topic", "TB", BOB, None, (START,)),
        ),
        end=("PDEMOTE", "TB"),
        expected=("PDEMOTE",),
        initial_users=((BOB, 50),),
    ),
    # A self-leave is not a power event: it is ordered with the topic by mainline and
    # timestamp, so Bob's earlier topic is applied before his leave and survives.
    Case(
        "self_leave_is_not_a_power_event",
        (
            ("topic", "TB", BOB, None, (START,)),
            ("member", "MLB", BOB, (BOB, "leave"), (START,)),
        ),
        end=("MLB", "TB"),
        expected=("TB", "MLB"),
        initial_users=((BOB, 50),),
    ),
    # A kick is a power event: applied before Bob's concurrent topic, which then fails.
    Case(
        "kick_beats_concurrent_topic",
        (
            ("topic", "TB", BOB, None, (START,)),
            ("member", "KB", ALICE, (BOB, "leave"), (START,)),
        ),
        end=("KB", "TB"),
        expected=("KB",),
        initial_users=((BOB, 50),),
    ),
    # Dave's join is in the auth chain of his kick, a power event, so it is sorted with the
    # power events (before MOD2's later switch to invite-only) and passes; left to the
    # mainline phase it would be checked after the join rules change and fail.
    Case(
        "power_events_bring_their_conflicted_auth_events",
        (
            ("member", "MJ", DAVE, (DAVE, "join"), (START,)),
            ("member", "K", DAVE, (CHARLIE, "leave"), None),
            ("jr", "JRM", MOD2, "invite", (START,)),
        ),
        end=("K", "JRM"),
        expected=("MJ", "K", "JRM"),
        initial_users=((MOD2, 50), (DAVE, 50)),
    ),
    # Concurrent topics by the same sender citing the same power levels: the later
    # origin_server_ts is applied last and wins, whichever branch is listed first.
    Case(
        "concurrent_topics_later_ts_wins",
        (
            ("topic", "TX", ALICE, None, (START,)),
            ("topic", "TY", ALICE, None, (START,)),
        ),
        end=("TY", "TX"),
        expected=("TY",),
    ),
    # Two moderators of equal power change power levels concurrently: the later one is
    # applied last (it is still allowed on top of the other) and wins.
    Case(
        "equal_power_pl_later_ts_wins",
        (
            ("pl", "P1", MOD1, {ALICE: 100, MOD1: 50, MOD2: 50, BOB: 10}, (START,)),
            ("pl", "P2", MOD2, {ALICE: 100, MOD1: 50, MOD2: 50, BOB: 20}, (START,)),
        ),
        end=("P1", "P2"),
        expected=("P2",),
        initial_users=((MOD1, 50), (MOD2, 50)),
    ),
    # Alice (100) and a moderator (50) change power levels concurrently and Alice's is the
    # later one; the reverse topological power ordering still puts the more powerful sender
    # first, so the moderator's change is applied last and wins.
    Case(
        "more_power_sorts_first",
        (
            ("pl", "PM", MOD1, {ALICE: 100, MOD1: 50, BOB: 20}, (START,)),
            ("pl", "PALICE", ALICE, {ALICE: 100, MOD1: 50, CHARLIE: 5}, (START,)),
        ),
        end=("PALICE", "PM"),
        expected=("PM",),
        initial_users=((MOD1, 50),),
    ),
]


def _add_members(case: Case) -> Case:
    """The moderators must be in the room before the case's own events."""
    mods = [u for u, _ in case.initial_users if u in (MOD1, MOD2)]
    if not mods:
        return case
    joins = []
    for i, user in enumerate(mods):
        joins.append(("member", f"IMOD{i}", user, (user, "join"), (START,) if i == 0 else None))
    last = joins[-1][1]
    steps = tuple(
        (m, n, s, a, tuple(last if p == START else p for p in prev) if prev else prev)
        for m, n, s, a, prev in case.steps
    )
    return dataclasses.replace(case, steps=tuple(joins) + steps)


@pytest.mark.parametrize("rv_id", ALL_VERSIONS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_resolution_cases(case: Case, rv_id: str) -> None:
    case = _add_members(case)
    dag = build(case, ROOM_VERSIONS[rv_id])
    base = next((n for n in reversed(list(dag.after)) if n.startswith("IMOD")), START)
    resolved = dag.named(dag.resolve(*case.end))
    assert resolved == dag.expected(*case.expected, base=base)


def test_ban_vs_join_removes_the_join_entirely_in_every_order() -> None:
    dag = build(next(c for c in CASES if c.name == "ban_vs_join"), ROOM_VERSIONS["11"])
    for end in (("MJOIN", "MBAN"), ("MBAN", "MJOIN")):
        assert dag.named(dag.resolve(*end))[(MEMBER, EVELYN)] == "MBAN"


# ------------------------------------------------------------------------------ tie-breaks


@pytest.mark.parametrize("rv_id", ALL_VERSIONS)
@pytest.mark.parametrize(
    ("ts_x", "ts_y", "winner"),
    [
        (50, 40, "TX"),  # later origin_server_ts applied last
        (40, 50, "TY"),
        (40, 40, "TY"),  # same ts: the larger event ID is applied last
    ],
)
def test_mainline_ties_broken_by_ts_then_event_id(
    rv_id: str, ts_x: int, ts_y: int, winner: str
) -> None:
    dag = Dag(ROOM_VERSIONS[rv_id])
    dag.topic("TX", ALICE, prev=[START], ts=ts_x)
    dag.topic("TY", ALICE, prev=[START], ts=ts_y)
    for end in (("TX", "TY"), ("TY", "TX")):
        assert dag.named(dag.resolve(*end)) == dag.expected(winner)


@pytest.mark.parametrize("rv_id", ALL_VERSIONS)
def test_many_equal_topics_largest_event_id_applied_last(rv_id: str) -> None:
    dag = Dag(ROOM_VERSIONS[rv_id])
    names = ["TQ", "TC", "TZ", "TA", "TM", "TK"]
    for name in names:
        dag.topic(name, ALICE, prev=[START], ts=77)
    assert dag.named(dag.resolve(*names)) == dag.expected("TZ")
    assert dag.named(dag.resolve(*reversed(names))) == dag.expected("TZ")


@pytest.mark.parametrize("rv_id", ALL_VERSIONS)
@pytest.mark.parametrize(
    ("ts_1", "ts_2", "winner"),
    [(10, 20, "P2"), (20, 10, "P1"), (10, 10, "P2")],
)
def test_power_ordering_ties_broken_by_ts_then_event_id(
    rv_id: str, ts_1: int, ts_2: int, winner: str
) -> None:
    dag = Dag(ROOM_VERSIONS[rv_id], initial_users={MOD1: 50, MOD2: 50})
    dag.member("IMOD1", MOD1, MOD1, "join")
    dag.member("IMOD2", MOD2, MOD2, "join")
    users = {ALICE: 100, MOD1: 50, MOD2: 50}
    dag.pl("P1", MOD1, {**users, BOB: 10}, prev=["IMOD2"], ts=ts_1)
    dag.pl("P2", MOD2, {**users, BOB: 20}, prev=["IMOD2"], ts=ts_2)
    assert dag.named(dag.resolve("P1", "P2")) == dag.expected(winner, base="IMOD2")


def test_reverse_topological_power_order_directly() -> None:
    """Kahn's algorithm: auth events first; among ready events more power, then ts, then ID."""
    rv = ROOM_VERSIONS["11"]
    dag = Dag(rv, initial_users={MOD1: 50})
    dag.member("IMOD", MOD1, MOD1, "join")
    dag.pl("PA", ALICE, {ALICE: 100, MOD1: 50}, ts=100)
    dag.topic("TM", MOD1, prev=["IMOD"], ts=1)  # lower power, earliest ts
    dag.topic("TB", ALICE, prev=["IMOD"], ts=50)
    dag.topic("TA", ALICE, prev=["IMOD"], ts=50)  # same power and ts as TB: ID decides
    dag.topic("TAFTER", ALICE, prev=["PA"], ts=0)  # would go first, but it cites PA
    resolver = _V2Resolver(rv, EventCache(DictFetcher(dag.events)))
    ids = {dag.ids[n] for n in ("PA", "TM", "TB", "TA", "TAFTER")}
    run(resolver.events.load_auth_closure(ids))
    order = [dag.names[e] for e in resolver._reverse_topological_power_order(ids)]
    assert order == ["TA", "TB", "PA", "TAFTER", "TM"]


def test_mainline_order_directly() -> None:
    """Events on an older mainline power level sort first; no power levels at all is oldest."""
    rv = ROOM_VERSIONS["11"]
    dag = Dag(rv)
    dag.topic("T0", ALICE, ts=90)  # cites IPOWER: mainline position 2
    dag.pl("P1", ALICE, {ALICE: 100, BOB: 1})
    dag.topic("T1", ALICE, ts=80)  # cites P1: position 1
    dag.pl("P2", ALICE, {ALICE: 100, BOB: 2})
    dag.topic("T2A", ALICE, ts=5)  # cites P2: position 0
    dag.topic("T2B", ALICE, prev=["P2"], ts=3)
    dag.pl("PSIDE", ALICE, {ALICE: 100, BOB: 9}, prev=["P1"])  # off the mainline
    dag.topic("TSIDE", ALICE, ts=1)  # cites PSIDE, whose chain meets the mainline at P1
    resolver = _V2Resolver(rv, EventCache(DictFetcher(dag.events)))
    # IMA (Alice's first join) cites no power levels at all: position infinity, so first.
    names = ("T0", "T1", "T2A", "T2B", "TSIDE", "IMA")
    ids = {dag.ids[n] for n in names}
    run(resolver.events.load_auth_closure(ids | {dag.ids["P2"]}))
    order = [dag.names[e] for e in resolver._mainline_order(ids, dag.ids["P2"])]
    assert order == ["IMA", "T0", "TSIDE", "T1", "T2B", "T2A"]
    # Against no power levels every event is at infinity: plain ts order.
    order = [dag.names[e] for e in resolver._mainline_order(ids, None)]
    assert order == ["IMA", "TSIDE", "T2B", "T2A", "T1", "T0"]


# ----------------------------------------------------------- v2 vs v2.1 (state resets)


V12 = ROOM_VERSIONS["12"]
V12_WITH_V2 = dataclasses.replace(V12, state_res_v2_1=False)


def _problem_a(rv: RoomVersion) -> tuple[Dag, list[dict[StateKey, str]]]:
    """Both forks' auth chains agree the join rule is JR2, but one state set (say from a
    partial /state answer) still holds the old IJR; Alice, who set both, has since left."""
    dag = Dag(rv)
    dag.jr("JR2", ALICE, "invite", prev=[START])
    dag.member("ML", ALICE, ALICE, "leave")
    right = dict(dag.after["ML"])
    stale = dict(right)
    stale[(JR, "")] = dag.ids["IJR"]
    return dag, [right, stale]


def _problem_b(rv: RoomVersion) -> tuple[Dag, list[dict[StateKey, str]]]:
    """Alice promotes Bob (PL1), Dave joins, Bob promotes Charlie (PL2); one state set has
    the original power levels although it holds Dave's join, which cites PL1."""
    dag = Dag(rv)
    dag.pl("PL1", ALICE, {ALICE: 100, BOB: 50}, prev=[START])
    dag.member("MD", DAVE, DAVE, "join")
    dag.pl("PL2", BOB, {ALICE: 100, BOB: 50, CHARLIE: 50})
    right = dict(dag.after["PL2"])
    stale = dict(right)
    stale[(PL, "")] = dag.ids["IPOWER"]
    return dag, [right, stale]


def _resolve_sets(dag: Dag, sets: list[dict[StateKey, str]], rv: RoomVersion) -> dict:
    return dag.named(run(resolve_state(rv, sets, DictFetcher(dag.events))))


@pytest.mark.parametrize(
    ("rv_id", "flip"), [("10", False), ("11", False), ("12", False), ("12", True)]
)
def test_problem_a_join_rules_reset_only_without_v2_1(rv_id: str, flip: bool) -> None:
    rv = V12_WITH_V2 if flip else ROOM_VERSIONS[rv_id]
    dag, sets = _problem_a(ROOM_VERSIONS[rv_id])
    resolved = _resolve_sets(dag, sets, rv)
    expected = dag.expected("ML", base="JR2")
    if rv.state_res_v2_1:
        assert resolved == expected  # JR2 is replayed on Alice's own auth events
    else:
        # v2 replays both join rules on the unconflicted state, where Alice has left: both
        # fail and the room is left with no join rules at all.
        del expected[(JR, "")]
        assert resolved == expected


@pytest.mark.parametrize(
    ("rv_id", "flip"), [("10", False), ("11", False), ("12", False), ("12", True)]
)
def test_problem_b_promotion_chain_reset_only_without_v2_1(rv_id: str, flip: bool) -> None:
    rv = V12_WITH_V2 if flip else ROOM_VERSIONS[rv_id]
    dag, sets = _problem_b(ROOM_VERSIONS[rv_id])
    resolved = _resolve_sets(dag, sets, rv)
    if rv.state_res_v2_1:
        # PL1 lies between the conflicted IPOWER and PL2, so it is replayed before PL2.
        assert resolved == dag.expected("MD", "PL2")
    else:
        # PL1 is in both auth chains, so v2 replays PL2 straight onto IPOWER and it fails.
        assert resolved == dag.expected("MD", "IPOWER")


# --------------------------------------------------------------------- fetching and misc


def test_agreeing_sets_return_without_fetching() -> None:
    class Refusing:
        async def get_events(self, event_ids: Iterable[str]) -> Mapping[str, JsonDict]:
            raise AssertionError("fetched although nothing was conflicted")

    state = {(CREATE, ""): "$c", (TOPIC, ""): "$t"}
    for rv in (*ROOM_VERSIONS.values(), _room_v1_like()):
        assert run(resolve_state(rv, [state, dict(state), dict(state)], Refusing())) == state
        assert run(resolve_state(rv, [state], Refusing())) == state
        assert run(resolve_state(rv, [], Refusing())) == {}


def test_fetcher_is_asked_for_each_event_once() -> None:
    dag = build(CASES[0], ROOM_VERSIONS["11"])
    asked: list[str] = []

    class Recording(DictFetcher):
        async def get_events(self, event_ids: Iterable[str]) -> Mapping[str, JsonDict]:
            ids = list(event_ids)
            asked.extend(ids)
            return await super().get_events(ids)

    sets = [dag.after["MB"], dag.after["PB"]]
    run(resolve_state(dag.rv, sets, Recording(dag.events)))
    assert asked and len(asked) == len(set(asked))


@pytest.mark.parametrize("rv_id", ALL_VERSIONS)
def test_topic_conflict_does_not_fetch_unrelated_members(rv_id: str) -> None:
    dag = Dag(ROOM_VERSIONS[rv_id])
    crowd = [f"@user{i}:crowd.test" for i in range(25)]
    for i, user in enumerate(crowd):
        dag.member(f"IMU{i}", user, user, "join")
    base = dag._last
    dag.topic("TX", ALICE, prev=[base])
    dag.topic("TY", BOB, prev=[base])
    asked: set[str] = set()

    class Recording(DictFetcher):
        async def get_events(self, event_ids: Iterable[str]) -> Mapping[str, JsonDict]:
            ids = list(event_ids)
            asked.update(ids)
            return await super().get_events(ids)

    sets = [dag.after["TX"], dag.after["TY"]]
    resolved = run(resolve_state(dag.rv, sets, Recording(dag.events)))
    # Bob (power 0) may not set the topic; Alice's stands.
    assert dag.named(resolved) == dag.expected("TX", base=base)
    assert asked.isdisjoint(dag.ids[f"IMU{i}"] for i in range(len(crowd)))


def test_unknown_conflicted_event_is_left_out() -> None:
    dag = Dag(ROOM_VERSIONS["11"])
    dag.topic("T1", ALICE, prev=[START])
    missing = dict(dag.after[START])
    missing[(TOPIC, "")] = "$never-seen"
    assert _resolve_sets(dag, [dag.after["T1"], missing], dag.rv) == dag.expected("T1")


def test_referenced_ids_reads_both_formats() -> None:
    assert referenced_ids(["$a", "$b"]) == ["$a", "$b"]
    assert referenced_ids([["$a", {"sha256": "x"}], ["$b", {}]]) == ["$a", "$b"]
    assert referenced_ids([["$a", {}], "$b", 7, [], [3]]) == ["$a", "$b"]
    assert referenced_ids(None) == []


# --------------------------------------------------------------------------------- v1


def _room_v1_like() -> RoomVersion:
    """Stands in for room version 1 (v1 state resolution, v10's auth rules, which is all these
    cases need), whether or not room_versions.py has the ``state_res_v1`` flag yet."""
    v10 = ROOM_VERSIONS["10"]
    names = [f.name for f in dataclasses.fields(RoomVersion)]
    if "state_res_v1" in names:
        return dataclasses.replace(v10, **{"state_res_v1": True})

    @dataclass(frozen=True)
    class V1Like(RoomVersion):
        state_res_v1: bool = True

    return V1Like(**{n: getattr(v10, n) for n in names})


def _v1_room() -> tuple[RoomVersion, dict[str, JsonDict], dict[StateKey, str]]:
    """A v1-format room: event IDs inside the PDUs, references as ``[id, hashes]`` pairs."""
    rv = _room_v1_like()
    events: dict[str, JsonDict] = {}
    state: dict[StateKey, str] = {}

    def add(
        eid: str, event_type: str, sender: str, content: JsonDict, key: str, depth: int
    ) -> None:
        wanted = auth_event_types(rv, event_type, sender, key, content)
        events[eid] = {
            "event_id": eid,
            "type": event_type,
            "state_key": key,
            "room_id": "!room:a.test",
            "sender": sender,
            "content": content,
            "depth": depth,
            "origin_server_ts": depth,
            "prev_events": [],
            "auth_events": [[state[k], {"sha256": "x"}] for k in wanted if k in state],
        }
        state[(event_type, key)] = eid

    add("$create:a.test", CREATE, ALICE, {"creator": ALICE}, "", 1)
    add("$ima:a.test", MEMBER, ALICE, {"membership": "join"}, ALICE, 2)
    add("$ipl:a.test", PL, ALICE, {"users": {ALICE: 100, BOB: 50}}, "", 3)
    add("$ijr:a.test", JR, ALICE, {"join_rule": "public"}, "", 4)
    add("$imb:a.test", MEMBER, BOB, {"membership": "join"}, BOB, 5)
    return rv, events, state


def _v1_fork(
    events: dict[str, JsonDict],
    base: dict[StateKey, str],
    eid: str,
    event_type: str,
    sender: str,
    depth: int,
    content: JsonDict,
) -> dict[StateKey, str]:
    """``base`` plus one new state event (state_key "") that cites the base's auth events."""
    cited = [(CREATE, ""), (PL, ""), (MEMBER, sender)]
    pdu: JsonDict = {
        "event_id": eid,
        "type": event_type,
        "state_key": "",
        "room_id": "!room:a.test",
        "sender": sender,
        "content": content,
        "depth": depth,
        "origin_server_ts": 10,
        "prev_events": [],
        "auth_events": [[base[k], {"sha256": "x"}] for k in cited if k in base],
    }
    events[eid] = pdu
    fork = dict(base)
    fork[(pdu["type"], pdu["state_key"])] = eid
    return fork


def _sha1(eid: str) -> str:
    return hashlib.sha1(eid.encode()).hexdigest()


@pytest.mark.parametrize(
    ("bob_depth", "alice_depth", "expected"),
    [
        # Ascending depth: Alice's (shallower) levels first, then Bob's, which passes.
        (7, 6, "$plbob:b.test"),
        # Bob's are first; Alice's then pass on top of them.
        (6, 7, "$plalice:a.test"),
    ],
)
def test_v1_power_levels_replayed_by_depth(bob_depth: int, alice_depth: int, expected: str) -> None:
    rv, events, base = _v1_room()
    alice = _v1_fork(
        events,
        base,
        "$plalice:a.test",
        PL,
        ALICE,
        alice_depth,
        {"users": {ALICE: 100, BOB: 50, CHARLIE: 10}},
    )
    bob = _v1_fork(
        events,
        base,
        "$plbob:b.test",
        PL,
        BOB,
        bob_depth,
        {"users": {ALICE: 100, BOB: 50, DAVE: 10}},
    )
    for sets in ([alice, bob], [bob, alice]):
        resolved = run(resolve_state(rv, sets, DictFetcher(events)))
        assert resolved == {**base, (PL, ""): expected}


def test_v1_power_levels_replay_stops_at_first_failure() -> None:
    rv, events, base = _v1_room()
    # Alice's (depth 6) demotes Bob; Bob's (depth 7) then fails and is not applied.
    alice = _v1_fork(events, base, "$plalice:a.test", PL, ALICE, 6, {"users": {ALICE: 100, BOB: 0}})
    bob = _v1_fork(
        events, base, "$plbob:b.test", PL, BOB, 7, {"users": {ALICE: 100, BOB: 50, DAVE: 10}}
    )
    assert run(resolve_state_v1(rv, [alice, bob], DictFetcher(events))) == {
        **base,
        (PL, ""): "$plalice:a.test",
    }


def test_v1_replay_does_not_resume_after_a_failure() -> None:
    rv, events, base = _v1_room()
    demote = _v1_fork(events, base, "$pl6:a.test", PL, ALICE, 6, {"users": {ALICE: 100, BOB: 0}})
    by_bob = _v1_fork(events, base, "$pl7:b.test", PL, BOB, 7, {"users": {ALICE: 100, BOB: 50}})
    later = _v1_fork(events, base, "$pl8:a.test", PL, ALICE, 8, {"users": {ALICE: 100, BOB: 5}})
    # $pl8 would pass on top of $pl6, but the replay stopped at $pl7.
    assert run(resolve_state(rv, [demote, by_bob, later], DictFetcher(events))) == {
        **base,
        (PL, ""): "$pl6:a.test",
    }


def test_v1_normal_conflict_deepest_allowed_wins_then_lowest_sha1() -> None:
    rv, events, base = _v1_room()
    # The deepest topic is Eve's, but she is not in the room.
    deep_bad = _v1_fork(events, base, "$topic-eve:e.test", TOPIC, EVELYN, 9, {"topic": "eve"})
    a = _v1_fork(events, base, "$topic-b:a.test", TOPIC, ALICE, 8, {"topic": "a"})
    b = _v1_fork(events, base, "$topic-b:b.test", TOPIC, BOB, 8, {"topic": "b"})
    lowest = min(("$topic-b:a.test", "$topic-b:b.test"), key=_sha1)
    # The IDs are chosen so that sha1 order and plain ID order disagree.
    assert lowest == "$topic-b:b.test" and "$topic-b:a.test" < lowest
    assert run(resolve_state(rv, [deep_bad, a, b], DictFetcher(events))) == {
        **base,
        (TOPIC, ""): lowest,
    }
    # With no candidate allowed the shallowest is kept (as Synapse does).
    shallow_bad = _v1_fork(events, base, "$topic-eve2:e.test", TOPIC, EVELYN, 2, {"topic": "eve2"})
    assert run(resolve_state(rv, [deep_bad, shallow_bad], DictFetcher(events))) == {
        **base,
        (TOPIC, ""): "$topic-eve2:e.test",
    }


def test_v1_keys_missing_from_some_sets_are_not_conflicts() -> None:
    rv, events, base = _v1_room()
    with_topic = _v1_fork(events, base, "$topic-a:a.test", TOPIC, ALICE, 8, {"topic": "a"})
    assert run(resolve_state(rv, [base, with_topic], DictFetcher(events))) == with_topic


# -------------------------------------------------------------------------- properties


Scenario = tuple[RoomVersion, dict[str, JsonDict], list[dict[StateKey, str]]]


def _scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    for rv_id in ("11", "12"):
        rv = ROOM_VERSIONS[rv_id]
        for case in CASES[:7]:
            dag = build(case, rv)
            out.append((rv, dag.events, [dag.after[n] for n in (*case.end, START)]))
        for problem in (_problem_a, _problem_b):
            dag, sets = problem(rv)
            out.append((rv, dag.events, sets))
    rv, events, base = _v1_room()
    v1_sets = [
        _v1_fork(events, base, "$t1:a.test", TOPIC, ALICE, 8, {"topic": "1"}),
        _v1_fork(events, base, "$t2:b.test", TOPIC, BOB, 8, {"topic": "2"}),
        _v1_fork(events, base, "$p1:a.test", PL, ALICE, 7, {"users": {ALICE: 100, BOB: 0}}),
        _v1_fork(events, base, "$p2:b.test", PL, BOB, 9, {"users": {ALICE: 100, BOB: 50}}),
    ]
    out.append((rv, events, v1_sets))
    return out


SCENARIOS = _scenarios()


@settings(max_examples=60, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=len(SCENARIOS) - 1),
    data=st.data(),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_result_independent_of_set_order_and_fetch_order(
    index: int, data: st.DataObject, seed: int
) -> None:
    rv, events, sets = SCENARIOS[index]
    chosen = data.draw(st.lists(st.sampled_from(sets), min_size=2, max_size=4))
    shuffled = data.draw(st.permutations(chosen))
    reference = run(resolve_state(rv, chosen, DictFetcher(events)))
    got = run(resolve_state(rv, shuffled, DictFetcher(events, random.Random(seed))))
    assert got == reference
