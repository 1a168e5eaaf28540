#!/usr/bin/env python3
"""Summarise a `py-spy record -f raw` profile of Parley into where its CPU goes.

Why: py-spy's flame graph is hard to read for an asyncio server (every stack starts in the
event loop). This puts each sample in ONE category: the deepest frame that belongs to a part
of the send path (asyncpg, event hashing/signing, aiohttp, ...), looking through event-loop
and standard-library frames (json, copy) to the Parley code that called them. Samples idle in
epoll_pwait (with --native) and executor threads waiting for work are not CPU and are left
out. Also prints the top leaf frames and the Parley functions with the most inclusive time.

    python bench/pyspy_summary.py pyspy.txt
"""

from __future__ import annotations

import sys
from collections import Counter

LOOP = "event loop (uvloop/asyncio core, task stepping)"
# Looked through: frames of the loop and the standard library; the caller decides.
TRANSPARENT = ["copy.py", "json/", "_json.c", "homeserver/__main__.py", "runpy", "threading.py",
               "asyncio/", "loop.c:", "_asynciomodule.c", "core.c", "linux.c", "uv__",
               "object.h", "libpython", "libc.so", "pgtrace.py", "contextlib.py", "abc>"]
CATS: list[tuple[str, list[str]]] = [
    ("DB: asyncpg (build/parse protocol messages, write() to PostgreSQL)",
     ["asyncpg/", "protocol.c:", "coreproto", "buffer.pyx", "codecs/"]),
    ("event build: hashes, canonical JSON, ed25519 signature (finalize_event)",
     ["homeserver/events/hashing.py", "homeserver/signing.py", "nacl/", "canonicaljson",
      "signedjson", "ed25519", "crypto_sign", "fe25519", "ge25519", "sc25519"]),
    ("auth rules (check_auth)", ["homeserver/events/auth.py"]),
    ("response write (aiohttp headers, write() to the client)",
     ["write_eof", "_send_headers", "_prepare_headers", "StreamResponse.prepare",
      "aiohttp/http_writer.py", "aiohttp/web_response.py", "_http_writer"]),
    ("aiohttp server: request parsing, routing, middleware, body read",
     ["aiohttp/", "multidict", "yarl/", "_http_parser"]),
    ("Parley http.py (token lookup, read_json, error middleware)", ["homeserver/http.py"]),
    ("client_api send handler", ["client_api/"]),
    ("RoomWriter (persist bookkeeping, _apply, publish, wake syncs)",
     ["homeserver/rooms/writer.py", "homeserver/sync/", "homeserver/storage/streams.py"]),
    ("RoomService (send, group commit, txn ids, _build)", ["homeserver/rooms/service.py"]),
    ("e2ee services (keys: query, claim, upload, key checks)", ["e2ee/"]),
    ("other Parley code", ["homeserver/", "client_api/"]),
    ("garbage collector", ["gc_collect"]),
]


def category(frames: list[str]) -> str:
    loopish = False
    for fr in reversed(frames):
        if any(k in fr for k in TRANSPARENT):
            loopish = True
            continue
        for name, keys in CATS:
            if any(k in fr for k in keys):
                return name
    return LOOP if loopish else "other"


def short(frame: str) -> str:
    func, _, where = frame.partition(" (")
    return f"{func} ({where.split(':')[0]})"


def main(path: str) -> None:
    cats: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    side: Counter[str] = Counter()
    total = idle = 0
    with open(path) as f:
        for line in f:
            stack, _, num = line.rstrip().rpartition(" ")
            if not stack:
                continue
            n = int(num)
            frames = stack.split(";")
            if frames[-1].startswith(("epoll_pwait", "epoll_wait")) or (
                    "concurrent/futures/thread.py:81" in stack):
                idle += n
                continue
            total += n
            cats[category(frames)] += n
            leaf[short(frames[-1])] += n
            for fr in {short(x) for x in frames
                       if "homeserver/" in x or "client_api/" in x or "e2ee/" in x}:
                if "__main__" not in fr:
                    incl[fr] += n
            for key, lab in (("copy.py", "copy.deepcopy"), ("json/encoder.py", "stdlib json"),
                             ("write (libc", "write() syscalls"), ("read (libc", "read()")):
                if key in stack:
                    side[lab] += n
    if not total:
        print("no busy samples")
        return
    print(f"{total} busy samples ({idle} idle samples left out)")
    print("by category:")
    for k, v in cats.most_common():
        print(f"  {v / total * 100:5.1f}%  {k}")
    if side:
        print("across categories: " + ", ".join(f"{k} {v / total * 100:.1f}%"
                                                for k, v in side.most_common()))
    print("top leaf frames (self time):")
    for k, v in leaf.most_common(15):
        print(f"  {v / total * 100:5.1f}%  {k}")
    print("Parley functions, inclusive:")
    for k, v in incl.most_common(30):
        print(f"  {v / total * 100:5.1f}%  {k}")


if __name__ == "__main__":
    main(sys.argv[1])
