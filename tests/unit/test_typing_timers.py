"""The typing expiry heap (homeserver.rooms.typing.TypingTimers), table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.rooms.typing import TypingTimers

# Each case: a list of steps; a step is (op, args, expected result).
#   ("start", (room, user, deadline), changed?)   ("stop", (room, user), was typing?)
#   ("expire", (now,), [(room, user), ...])        ("next", (), deadline or None)
#   ("users", (room,), [user, ...])                ("len", (), count)
CASES: dict[str, list[tuple[str, tuple[Any, ...], Any]]] = {
    "expires at its deadline, not before": [
        ("start", ("!r", "@a", 10.0), True),
        ("expire", (9.9,), []),
        ("users", ("!r",), ["@a"]),
        ("expire", (10.0,), [("!r", "@a")]),
        ("users", ("!r",), []),
        ("next", (), None),
    ],
    "a refresh is not a change and moves the deadline": [
        ("start", ("!r", "@a", 10.0), True),
        ("start", ("!r", "@a", 20.0), False),
        ("next", (), 20.0),
        ("expire", (15.0,), []),
        ("expire", (20.0,), [("!r", "@a")]),
    ],
    "a refresh to an earlier deadline wins": [
        ("start", ("!r", "@a", 20.0), True),
        ("start", ("!r", "@a", 5.0), False),
        ("next", (), 5.0),
        ("expire", (5.0,), [("!r", "@a")]),
        ("expire", (30.0,), []),
    ],
    "stop removes and leaves a stale entry that never fires": [
        ("start", ("!r", "@a", 10.0), True),
        ("stop", ("!r", "@a"), True),
        ("stop", ("!r", "@a"), False),
        ("next", (), None),
        ("expire", (100.0,), []),
        ("len", (), 0),
    ],
    "stop then start again uses the new deadline only": [
        ("start", ("!r", "@a", 10.0), True),
        ("stop", ("!r", "@a"), True),
        ("start", ("!r", "@a", 30.0), True),
        ("expire", (10.0,), []),
        ("users", ("!r",), ["@a"]),
        ("expire", (30.0,), [("!r", "@a")]),
    ],
    "several rooms and users expire in deadline order": [
        ("start", ("!r1", "@a", 3.0), True),
        ("start", ("!r2", "@b", 1.0), True),
        ("start", ("!r1", "@c", 2.0), True),
        ("users", ("!r1",), ["@a", "@c"]),
        ("next", (), 1.0),
        ("expire", (2.5,), [("!r2", "@b"), ("!r1", "@c")]),
        ("users", ("!r1",), ["@a"]),
        ("len", (), 1),
        ("expire", (3.0,), [("!r1", "@a")]),
        ("len", (), 0),
    ],
    "the same user typing in two rooms is two timers": [
        ("start", ("!r1", "@a", 1.0), True),
        ("start", ("!r2", "@a", 2.0), True),
        ("expire", (1.0,), [("!r1", "@a")]),
        ("users", ("!r2",), ["@a"]),
    ],
}


@pytest.mark.parametrize("steps", list(CASES.values()), ids=list(CASES))
def test_typing_timers(steps: list[tuple[str, tuple[Any, ...], Any]]) -> None:
    timers = TypingTimers()
    for op, args, expected in steps:
        if op == "start":
            got: Any = timers.start(*args)
        elif op == "stop":
            got = timers.stop(*args)
        elif op == "expire":
            got = timers.expire(*args)
        elif op == "next":
            got = timers.next_deadline()
        elif op == "users":
            got = timers.users(*args)
        else:
            got = len(timers)
        assert got == expected, (op, args)
