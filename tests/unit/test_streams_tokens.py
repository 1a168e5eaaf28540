"""Stream position tracking and token round trips."""

from __future__ import annotations

import pytest

from homeserver.errors import MatrixError
from homeserver.storage.streams import Stream
from homeserver.streams.tokens import PaginationToken, SyncToken


async def test_current_waits_for_the_oldest_in_flight_position() -> None:
    gen = Stream("t", "unused", None, 10)
    a, b, c = await gen.allocate_many(3)
    assert (a, b, c) == (11, 12, 13)
    gen.finish(c)
    assert gen.current == 10  # 11 and 12 are still being written
    gen.finish(a)
    assert gen.current == 11
    gen.finish(b)
    assert gen.current == 13


async def test_current_advances_when_idle() -> None:
    gen = Stream("t", "unused", None, 0)
    gen.finish(await gen.allocate())
    assert gen.current == 1


async def test_waiters_are_woken_only_once_current_covers_their_position() -> None:
    woken: list[set[str]] = []
    gen = Stream("t", "unused", None, 0, wake=lambda users: woken.append(set(users)))
    a, b = await gen.allocate_many(2)
    gen.finish(b, wake=["@late:x"])
    assert woken == []  # a is still in flight: a reader woken now would not see b
    gen.finish(a, wake=["@early:x"])
    assert woken == [{"@early:x", "@late:x"}]


async def test_other_processes_floor_bounds_current() -> None:
    gen = Stream("t", "unused", None, 5)
    gen.finish(await gen.allocate())
    assert gen.current == 6
    gen.set_others_floor(4)
    assert gen.current == 4
    gen.set_others_floor(None)
    assert gen.current == 6


async def test_publishable_floor_stops_below_unused_reserved_values() -> None:
    gen = Stream("t", "unused", None, 0, block=10)
    first = await gen.allocate()
    assert gen.publishable_floor() == first - 1  # in flight
    gen.finish(first)
    assert gen.publishable_floor() == first  # the rest of the block is reserved, unused
    gen.release_reserved()
    assert gen.publishable_floor() is None  # idle: the sequence's value may be published


@pytest.mark.parametrize(("token", "events", "account"), [
    ("s5_7", 5, 7), ("s0_0", 0, 0), ("s12", 12, 0), ("s3_4_9_1_2_3", 3, 4),
])
def test_sync_token_parse(token: str, events: int, account: int) -> None:
    t = SyncToken.parse(token)
    assert (t.events, t.account_data) == (events, account)
    assert SyncToken.parse(t.serialize()) == t


@pytest.mark.parametrize("bad", ["", "x1_2", "s", "s-1_0", "sa_b", "t1", "s1_2_3_4_5_6_7_8"])
def test_bad_sync_tokens_are_rejected(bad: str) -> None:
    with pytest.raises(MatrixError) as e:
        SyncToken.parse(bad)
    assert e.value.errcode == "M_INVALID_PARAM"


def test_pagination_token_round_trip() -> None:
    t = PaginationToken(42, 1234)
    assert PaginationToken.parse(t.serialize()) == t
    assert isinstance(PaginationToken.parse("s9_1"), SyncToken)
    with pytest.raises(MatrixError):
        PaginationToken.parse("t1")
