"""The CPU cost of push-rule evaluation per event, the part of the send path that grows with
the room: every message is evaluated against every local member's rules inside the event's
transaction. Runs the pure evaluator (homeserver/push/evaluator.py) with the default ruleset
shared by all members, as the server does for members without rule changes, so a change to the
predefined rules or to the evaluator shows here before it shows, blurred by the machine's
noise, in bench.py's fan-out CPU.

    python bench/push_rules_bench.py [--members 100] [--events 2000] [--repeat 5]

Prints the median microseconds per event (of --repeat runs), for a plain message, one with
`m.mentions` (what current clients send), and one whose body names a member.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from homeserver.push import rules  # noqa: E402
from homeserver.push.evaluator import USER, CompiledRules, EvalContext  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=100)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    compiled = CompiledRules(rules.merge(USER, None))
    users = [f"@user{i}:example.org" for i in range(args.members)]
    names = {u: f"User Number {i}" for i, u in enumerate(users)}
    ctx = EvalContext(member_count=args.members + 1)
    base = {"type": "m.room.message", "sender": "@sender:example.org", "room_id": "!r:x"}
    events = {
        "plain message": {"msgtype": "m.text", "body": "hello there, this is message 42"},
        "with m.mentions": {"msgtype": "m.text", "body": "hello there, this is message 42",
                            "m.mentions": {}},
        "naming a member": {"msgtype": "m.text", "body": "ask user7 about it"},
    }
    print(f"{args.members} members, default rules, median of {args.repeat} x {args.events}")
    for label, content in events.items():
        ev = {**base, "content": content}
        runs = timeit.repeat(lambda ev=ev: compiled.evaluate_many(ev, ctx, users, names.get),
                             number=args.events, repeat=args.repeat)
        per_event = statistics.median(runs) / args.events * 1e6
        print(f"  {label:16s} {per_event:8.1f} us per event")


if __name__ == "__main__":
    main()
