"""Pure presence rules: a user's state from their devices' heartbeats, and a timing wheel.

No I/O and no clock: the caller passes `now` (milliseconds), so the rules are table-testable.

A heartbeat (a /sync request, a WebSocket ping, PUT /presence online|unavailable) is recorded per
device as a `Beat`: when it arrived, how long the device is known to still be connected after it
(`grace_ms`, the long-poll's timeout: a parked sync is not idleness) and what it asked for
(`online`, or `unavailable` from `set_presence=unavailable`). A device is *seen* until
`ts + grace_ms`. Then, for the user:

- online       while some device asking for online was seen less than `idle_after_ms` ago;
- unavailable  while some device (of any kind) was seen less than `idle_after_ms` ago, and after
               that until `offline_after_ms` past the last sighting;
- offline      afterwards (or with no beats at all).

A state set with PUT /presence (`explicit`) outranks the devices: `offline` hides the user while
the devices live ("invisible"), `unavailable` caps online at unavailable. The service clears it on
the next online activity (spec, "Idle timeout": any activity sets the user online again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class PresenceState(StrEnum):
    ONLINE = "online"
    UNAVAILABLE = "unavailable"
    OFFLINE = "offline"


STATES = frozenset(s.value for s in PresenceState)


@dataclass(frozen=True, slots=True)
class Beat:
    ts: int  # when the heartbeat arrived (ms since the epoch)
    grace_ms: int  # the device is known connected until ts + grace_ms (a parked long-poll)
    presence: str  # online | unavailable (what the device asked for)

    @property
    def seen_until(self) -> int:
        return self.ts + max(0, self.grace_ms)


@dataclass(frozen=True, slots=True)
class Timing:
    idle_after_ms: int = 30_000
    offline_after_ms: int = 300_000


def evaluate(beats: Mapping[str, Beat], now: int, explicit: str | None,
             timing: Timing) -> tuple[str, int | None]:
    """The user's presence at `now`, and the next time it could change by itself (None: never
    without a new heartbeat, i.e. the user is offline and no beat can matter any more)."""
    idle, offline = timing.idle_after_ms, max(timing.offline_after_ms, timing.idle_after_ms)
    state = PresenceState.OFFLINE
    deadline: int | None = None
    for beat in beats.values():
        seen = beat.seen_until
        if now < seen + idle:
            if beat.presence == PresenceState.ONLINE:
                state = PresenceState.ONLINE
            elif state == PresenceState.OFFLINE:
                state = PresenceState.UNAVAILABLE
            change = seen + idle
        elif now < seen + offline:
            if state == PresenceState.OFFLINE:
                state = PresenceState.UNAVAILABLE
            change = seen + offline
        else:
            continue
        deadline = change if deadline is None else min(deadline, change)
    if explicit == PresenceState.OFFLINE:
        state = PresenceState.OFFLINE
    elif explicit == PresenceState.UNAVAILABLE and state == PresenceState.ONLINE:
        state = PresenceState.UNAVAILABLE
    return state.value, deadline


def live_beats(beats: Mapping[str, Beat], now: int, timing: Timing) -> dict[str, Beat]:
    """The beats that can still affect the state (older ones are dropped)."""
    keep = max(timing.offline_after_ms, timing.idle_after_ms)
    return {d: b for d, b in beats.items() if now < b.seen_until + keep}


class TimerWheel:
    """Deadlines of many keys in buckets of `tick_ms`: schedule, reschedule and cancel are O(1),
    `due(now)` pops only the buckets that have expired (Synapse's WheelTimer, with moves).

    One key has at most one deadline; scheduling again moves it. A deadline already past lands in
    the next bucket `due` looks at.
    """

    def __init__(self, tick_ms: int) -> None:
        self._tick = max(1, tick_ms)
        self._buckets: dict[int, set[str]] = {}
        self._slot: dict[str, int] = {}
        self._cursor: int | None = None  # the last slot popped (late keys land there)

    def __len__(self) -> int:
        return len(self._slot)

    def schedule(self, key: str, deadline_ms: int | None) -> None:
        if deadline_ms is None:
            self.cancel(key)
            return
        slot = -(-deadline_ms // self._tick)  # ceil: a key is due only once its deadline passed
        if self._cursor is not None and slot < self._cursor:
            slot = self._cursor
        old = self._slot.get(key)
        if old == slot:
            return
        if old is not None:
            self._discard(key, old)
        self._slot[key] = slot
        self._buckets.setdefault(slot, set()).add(key)

    def cancel(self, key: str) -> None:
        old = self._slot.pop(key, None)
        if old is not None:
            self._discard(key, old)

    def due(self, now_ms: int) -> list[str]:
        """Pop every key whose deadline is at or before `now_ms`."""
        now_slot = now_ms // self._tick
        slots: Iterable[int]
        if self._cursor is None or now_slot - self._cursor > len(self._buckets):
            # First call or a long pause: look only at the buckets in use.
            slots = sorted(s for s in self._buckets if s <= now_slot)
        else:
            slots = range(self._cursor, now_slot + 1)
        out: list[str] = []
        for slot in slots:
            keys = self._buckets.pop(slot, None)
            if keys:
                for key in keys:
                    del self._slot[key]
                out.extend(keys)
        self._cursor = max(now_slot, self._cursor or 0)
        return out

    def _discard(self, key: str, slot: int) -> None:
        bucket = self._buckets.get(slot)
        if bucket is not None:
            bucket.discard(key)
            if not bucket:
                del self._buckets[slot]
