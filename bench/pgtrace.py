#!/usr/bin/env python3
"""Run a Python program (e.g. `-m homeserver run`) with its asyncpg round trips counted and timed.

Why: py-spy shows where a server spends CPU, not what it waits for. This wraps asyncpg's
Connection methods (no change to the program) and records, per SQL statement, how many times it
ran and the wall time of each await (network + PostgreSQL + commit/fsync + event-loop delay),
plus pool acquires and the reset query asyncpg runs on every pool release.

    python bench/pgtrace.py --out trace -- -m homeserver run

Each SIGUSR1 writes what was counted since the previous one to `<out>.<n>.json` and starts
counting afresh, so a measured window is bracketed by two signals. Counts also go to
`<out>.exit.json` at exit. Only for measuring: it adds a few microseconds per query.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import re
import runpy
import signal
import sys
import time
from typing import Any

import asyncpg
import asyncpg.connection
import asyncpg.pool

now = time.perf_counter
stats: dict[str, list[float]] = {}  # statement -> [count, total seconds, max seconds]
t_window = [now()]
n_dump = [0]
out_prefix = ["pgtrace"]


@functools.lru_cache(maxsize=4096)
def norm(query: str) -> str:
    q = re.sub(r"\s+", " ", query).strip()
    return q if len(q) <= 160 else q[:157] + "..."


def record(key: str, dt: float) -> None:
    s = stats.get(key)
    if s is None:
        stats[key] = [1, dt, dt]
    else:
        s[0] += 1
        s[1] += dt
        if dt > s[2]:
            s[2] = dt


def dump(name: str) -> None:
    window = now() - t_window[0]
    rows = sorted(stats.items(), key=lambda kv: -kv[1][1])
    data = {
        "window_s": round(window, 3),
        "statements": [
            {"sql": k, "count": int(v[0]), "total_ms": round(v[1] * 1000, 2),
             "mean_ms": round(v[1] * 1000 / v[0], 3), "max_ms": round(v[2] * 1000, 2)}
            for k, v in rows
        ],
    }
    with open(f"{out_prefix[0]}.{name}.json", "w") as f:
        json.dump(data, f, indent=1)


def on_usr1(signum: int, frame: Any) -> None:
    n_dump[0] += 1
    dump(str(n_dump[0]))
    stats.clear()
    t_window[0] = now()


def wrap(cls: type, name: str, key_of: Any) -> None:
    orig = getattr(cls, name)

    async def timed(self: Any, *args: Any, **kw: Any) -> Any:
        key = key_of(args, kw)
        if key is None:
            return await orig(self, *args, **kw)
        t0 = now()
        try:
            return await orig(self, *args, **kw)
        finally:
            record(key, now() - t0)

    setattr(cls, name, timed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="pgtrace", help="prefix of the JSON files written")
    p.add_argument("program", nargs=argparse.REMAINDER, help="-- -m module args... | script args")
    a = p.parse_args()
    prog = a.program[1:] if a.program[:1] == ["--"] else a.program
    if not prog:
        p.error("give the program to run, e.g. -- -m homeserver run")
    out_prefix[0] = a.out
    C = asyncpg.connection.Connection
    # _execute serves fetch/fetchrow/fetchval and execute-with-arguments (one extended-protocol
    # round trip, two when the statement is not yet prepared); execute without arguments is
    # the simple protocol (BEGIN, COMMIT, the pool's reset query).
    wrap(C, "_execute", lambda args, kw: norm(args[0]))
    wrap(C, "_executemany", lambda args, kw: "executemany: " + norm(args[0]))
    wrap(C, "execute", lambda args, kw: None if args[1:] else "simple: " + norm(args[0]))
    wrap(asyncpg.pool.Pool, "_acquire", lambda args, kw: "(pool acquire wait)")
    signal.signal(signal.SIGUSR1, on_usr1)
    atexit.register(dump, "exit")
    if prog[0] == "-m":
        sys.argv = [prog[1], *prog[2:]]
        runpy.run_module(prog[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = prog
        runpy.run_path(prog[0], run_name="__main__")


if __name__ == "__main__":
    main()
