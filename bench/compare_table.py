#!/usr/bin/env python3
"""Turn one `compare.sh` sitting into a markdown table (and one combined JSON).

compare.sh writes a manifest, one server per line (tab separated):
    label  kind  revision  loadavg  started_utc  ended_utc  json_a-d  json_e-f  json_rss
with the JSON names relative to the manifest's folder. The first `parley` line is "before",
the last one "after"; the ratio column is after / before (below 1 is faster for a latency,
above 1 is more for a rate). Only the standard library is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# (row label, scenario key in the JSON, path inside it); "rss" is bench_realtime.py's output.
METRICS: list[tuple[str, str, tuple[str, ...]]] = [
    ("a 1:1 send→sync delivery p50 (ms)", "a", ("delivery", "p50_ms")),
    ("a 1:1 delivery p99 (ms)", "a", ("delivery", "p99_ms")),
    ("a send PUT p50 (ms)", "a", ("send_put", "p50_ms")),
    ("b fan-out: last of N members p50 (ms)", "b", ("last_delivery", "p50_ms")),
    ("b fan-out: last of N members p99 (ms)", "b", ("last_delivery", "p99_ms")),
    ("b fan-out: per-member delivery median (ms)", "b", ("per_member_delivery", "p50_ms")),
    ("p fan-out, every member with a pusher: last of N p50 (ms)", "p",
     ("last_delivery", "p50_ms")),
    ("p fan-out with pushers: last of N p99 (ms)", "p", ("last_delivery", "p99_ms")),
    ("p pushes received", "p", ("pushes_received",)),
    ("b server CPU while messages fan out (s)", "b", ("server_cpu_messages_s",)),
    ("p server CPU while messages fan out and push (s)", "p", ("server_cpu_messages_s",)),
    ("p pushes expected", "p", ("pushes_expected",)),
    ("p all pushes in, seconds after the last send", "p", ("push_drain_after_last_send_s",)),
    ("c 20 senders, own rooms: sends/s", "c", ("separate_rooms", "sends_per_s")),
    ("c 20 senders, 1 shared room: sends/s", "c", ("shared_room", "sends_per_s")),
    ("c shared room PUT p50 (ms)", "c", ("shared_room", "put_latency", "p50_ms")),
    ("d initial sync, median (ms)", "d", ("initial_sync", "p50_ms")),
    ("e sequential PUT p50 (ms) [target <= 1.2]", "e", ("put_latency", "p50_ms")),
    ("e sequential PUT p90 (ms)", "e", ("put_latency", "p90_ms")),
    ("e sequential PUT p99 (ms)", "e", ("put_latency", "p99_ms")),
    ("e client CPU per send (ms)", "e", ("client_cpu_ms_per_send",)),
    ("f 10 senders, 1 token, 1 room: sends/s [target >= 1500]", "f", ("sends_per_s",)),
    ("f PUT p50 (ms)", "f", ("put_latency", "p50_ms")),
    ("f PUT p99 (ms)", "f", ("put_latency", "p99_ms")),
    ("f client CPU (share of one core)", "f", ("client_cpu_share",)),
    ("g RSS per parked long-poll (KB) [target <= 10]", "rss", ("kb_per_connection",)),
    ("g parked long-polls", "rss", ("connections",)),
    ("g server RSS before the polls (MB)", "rss", ("rss_before_kb",)),
    ("g server RSS with polls parked (MB)", "rss", ("rss_open_kb",)),
    ("idle GET /versions round trip p50 (ms)", "", ("idle_versions_rtt_p50_ms",)),
]
COUNTED = ("a", "b", "c", "d", "e", "f", "p")


def dig(d: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def load(folder: Path, name: str) -> dict[str, Any]:
    if not name or name == "-":
        return {}
    p = folder / name
    try:
        return dict(json.loads(p.read_text()))
    except (OSError, ValueError) as e:
        return {"_load_error": f"{name}: {e}"}


def totals(bench: dict[str, Any]) -> tuple[int, int]:
    """429s and errors over all bench.py scenarios (and their sub-runs)."""
    n429 = errs = 0
    for k in COUNTED:
        r = bench.get(k) or {}
        for part in [r, r.get("separate_rooms") or {}, r.get("shared_room") or {}]:
            n429 += int(part.get("rate_limited_429") or 0)
            errs += int(part.get("errors") or 0)
    return n429, errs


def value(server: dict[str, Any], key: str, path: tuple[str, ...]) -> Any:
    if key == "rss":
        v = dig(server["rss"].get("connections"), path)
    else:
        v = dig(server["bench"] if key == "" else server["bench"].get(key), path)
    if key == "rss" and path[0].startswith("rss_") and isinstance(v, int | float):
        return round(v / 1024, 1)
    return v


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest")
    args = p.parse_args()
    mpath = Path(args.manifest)
    folder = mpath.parent
    servers = []
    for line in mpath.read_text().splitlines():
        if not line.strip():
            continue
        label, kind, rev, load_avg, started, ended, ad, ef, rss = line.split("\t")
        bench = load(folder, ad)
        for k, v in load(folder, ef).items():  # e, f (and their own run's metadata aside)
            if k in ("e", "f") or k not in bench:
                bench[k] = v
        servers.append({"label": label, "kind": kind, "revision": rev, "loadavg": load_avg,
                        "started": started, "ended": ended,
                        "bench": bench, "rss": load(folder, rss)})
    parleys = [s for s in servers if s["kind"] == "parley"]
    ratio = len(parleys) >= 2
    before, after = (parleys[0], parleys[-1]) if ratio else (None, None)
    head = [s["label"] for s in servers] + (["after/before"] if ratio else [])
    out = ["| metric | " + " | ".join(head) + " |",
           "| --- | " + " | ".join("---:" for _ in head) + " |"]
    for label, key, path in METRICS:
        vals = [value(s, key, path) for s in servers]
        if all(v is None for v in vals):
            continue
        cells = [fmt(v) for v in vals]
        if ratio:
            assert before is not None and after is not None
            b, a = value(before, key, path), value(after, key, path)
            ok = isinstance(a, int | float) and isinstance(b, int | float) and b
            cells.append(f"{a / b:.2f}x" if ok else "–")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    counts = [totals(s["bench"]) for s in servers]
    out.append("| 429 responses / errors (a–f) | "
               + " | ".join(f"{n} / {e}" for n, e in counts) + (" | |" if ratio else " |"))
    out.append("| load average at start | " + " | ".join(s["loadavg"] for s in servers)
               + (" | |" if ratio else " |"))
    print("\n".join(out))
    print()
    for s in servers:
        print(f"- {s['label']}: {s['kind']} {s['revision']}, {s['started']} – {s['ended']} UTC")
        for src in ("bench", "rss"):
            for k, v in s[src].items():
                if k == "_load_error" or (isinstance(v, dict) and "error" in v):
                    print(f"  - {src} {k}: ERROR {v if k == '_load_error' else v['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
