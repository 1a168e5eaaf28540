"""The pure presence rules (homeserver/presence/timers.py): state from per-device heartbeats,
and the timing wheel the sweep uses instead of a task per user."""

from __future__ import annotations

import pytest

from homeserver.presence.timers import Beat, TimerWheel, Timing, evaluate, live_beats

T = Timing(idle_after_ms=30_000, offline_after_ms=300_000)
ON, UN, OFF = "online", "unavailable", "offline"


def on(ts: int, grace: int = 0) -> Beat:
    return Beat(ts, grace, ON)


def idle(ts: int, grace: int = 0) -> Beat:
    return Beat(ts, grace, UN)


CASES = [
    # (name, beats, now, explicit, expected state, expected next deadline)
    ("no devices", {}, 1_000, None, OFF, None),
    ("fresh sync", {"A": on(0)}, 1_000, None, ON, 30_000),
    ("just before idle", {"A": on(0)}, 29_999, None, ON, 30_000),
    ("at idle threshold", {"A": on(0)}, 30_000, None, UN, 300_000),
    ("idle, not yet offline", {"A": on(0)}, 299_999, None, UN, 300_000),
    ("offline after longer idleness", {"A": on(0)}, 300_000, None, OFF, None),
    ("parked long-poll is not idle", {"A": on(0, grace=30_000)}, 59_999, None, ON, 60_000),
    ("idle counts from the sync's timeout", {"A": on(0, grace=30_000)}, 60_000, None, UN,
     330_000),
    ("online while any device is", {"A": on(0), "B": on(25_000)}, 40_000, None, ON, 55_000),
    ("stale device does not hold online", {"A": on(0), "B": on(25_000)}, 55_000, None, UN,
     300_000),
    ("set_presence=unavailable device", {"A": idle(0)}, 1_000, None, UN, 30_000),
    ("online device beats an idle one", {"A": idle(0), "B": on(0)}, 1_000, None, ON, 30_000),
    ("explicit unavailable caps online", {"A": on(0)}, 1_000, UN, UN, 30_000),
    ("explicit offline hides a live device", {"A": on(0)}, 1_000, OFF, OFF, 30_000),
    ("explicit does not outlive the devices", {"A": on(0)}, 400_000, UN, OFF, None),
]


@pytest.mark.parametrize(("beats", "now", "explicit", "state", "deadline"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_evaluate(beats: dict[str, Beat], now: int, explicit: str | None, state: str,
                  deadline: int | None) -> None:
    assert evaluate(beats, now, explicit, T) == (state, deadline)


def test_state_changes_only_at_deadlines() -> None:
    """Between two deadlines the state is constant, so the sweep never misses a change."""
    beats = {"A": on(0, grace=5_000), "B": idle(10_000)}
    now, states = 0, []
    while True:
        state, deadline = evaluate(beats, now, None, T)
        if not states or states[-1] != state:
            states.append(state)
        if deadline is None:
            break
        for probe in (now + 1, (now + deadline) // 2, deadline - 1):
            assert evaluate(beats, probe, None, T)[0] == state
        now = deadline
    assert states == [ON, UN, OFF]


def test_live_beats_drops_only_irrelevant_ones() -> None:
    beats = {"A": on(0), "B": on(200_000)}
    assert set(live_beats(beats, 299_999, T)) == {"A", "B"}
    assert set(live_beats(beats, 300_000, T)) == {"B"}
    # Dropping them never changes the state.
    for now in (0, 100_000, 299_999, 300_000, 450_000, 600_000):
        assert evaluate(live_beats(beats, now, T), now, None, T) == evaluate(beats, now, None, T)


def test_wheel_pops_only_expired_keys() -> None:
    w = TimerWheel(tick_ms=100)
    w.schedule("a", 1_050)
    w.schedule("b", 1_100)
    w.schedule("c", 5_000)
    assert w.due(1_000) == []
    assert w.due(1_099) == []  # a's bucket ends at 1_100: never early
    assert sorted(w.due(1_100)) == ["a", "b"]
    assert len(w) == 1
    assert w.due(4_999) == []
    assert w.due(5_000) == ["c"]
    assert len(w) == 0


def test_wheel_reschedule_and_cancel() -> None:
    w = TimerWheel(tick_ms=10)
    w.schedule("a", 100)
    w.schedule("a", 500)  # a heartbeat moves the deadline: one entry, no stale copy
    assert w.due(200) == []
    w.schedule("b", 300)
    w.cancel("b")
    w.schedule("c", 300)
    w.schedule("c", None)  # None cancels too
    assert w.due(400) == []
    assert w.due(500) == ["a"]
    assert w.due(10_000) == []


def test_wheel_past_deadline_and_long_pause() -> None:
    w = TimerWheel(tick_ms=10)
    assert w.due(1_000) == []
    w.schedule("late", 500)  # already past: due at the next look
    assert w.due(1_000) == ["late"]
    w.schedule("x", 2_000)
    w.schedule("y", 10_000_000)
    assert w.due(5_000_000) == ["x"]  # a long pause jumps over the empty buckets
    assert w.due(10_000_000) == ["y"]


def test_wheel_scales_to_many_users() -> None:
    w = TimerWheel(tick_ms=1_000)
    for i in range(100_000):
        w.schedule(f"@u{i}:hs", 30_000 + (i % 60) * 1_000)
    for i in range(0, 100_000, 2):  # half of them heartbeat again: moved, not duplicated
        w.schedule(f"@u{i}:hs", 200_000)
    assert len(w) == 100_000
    assert len(w.due(89_000)) == 50_000
    assert len(w.due(200_000)) == 50_000
