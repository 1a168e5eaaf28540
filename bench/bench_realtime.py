#!/usr/bin/env python3
"""Real-time benchmarks over the client-server API (loopback only): see bench/README.md.

  latency      1:1 delivery latency: long-poll vs WebSocket (HTTP send), and WebSocket send
               to WebSocket receive; p50/p99 over --messages sequential messages
  connections  --connections concurrently open WebSockets (or parked long-polls with
               --mode longpoll) and the server's RSS per connection (--server-pid)
  presence     a member of a --members room changes presence; time until every other member's
               WebSocket (or, with --mode longpoll, parked /sync long-poll) has the m.presence
               event

Every loop is bounded in count and by --max-time. Only aiohttp is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import resource
import secrets
import statistics
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

API = "/_matrix/client/v3"
now = time.perf_counter
ROOM_ONLY = {"presence": {"types": []}, "account_data": {"types": []},
             "room": {"timeline": {"limit": 5}, "ephemeral": {"types": []},
                      "account_data": {"types": []}, "state": {"types": []}}}
# Presence long-poll: no room sections and no account data, presence kept (Synapse and Parley
# filter only what is returned, not whose presence one may see: that is the shared rooms).
PRESENCE_ONLY = {"room": {"rooms": []}, "account_data": {"not_types": ["*"]}}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_ms": round(pct(values, 50) * 1000, 2),
            "p99_ms": round(pct(values, 99) * 1000, 2),
            "mean_ms": round(statistics.fmean(values) * 1000, 2),
            "max_ms": round(max(values) * 1000, 2)}


def rss_kb(pid: int | None) -> int | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


class Bench:
    def __init__(self, args: argparse.Namespace, session: aiohttp.ClientSession) -> None:
        self.args = args
        self.base = args.url.rstrip("/")
        self.s = session
        self.prefix = "rt" + secrets.token_hex(3)
        self.n = 0

    async def call(self, method: str, path: str, token: str | None = None,
                   body: Any = None, params: dict[str, str] | None = None,
                   timeout: float = 60, attempts: list[float] | None = None) -> Any:
        """`attempts`, if given, gets the perf_counter time just before each attempt."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for _ in range(20):  # bounded 429 retries
            if attempts is not None:
                attempts.append(now())
            async with self.s.request(method, self.base + API + path, json=body, params=params,
                                      headers=headers,
                                      timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                data = await r.json(content_type=None)
                if r.status == 429:
                    await asyncio.sleep(min(10, data.get("retry_after_ms", 1000) / 1000))
                    continue
                if r.status != 200:
                    raise RuntimeError(f"{method} {path}: {r.status} {data}")
                return data
        raise RuntimeError(f"{method} {path}: rate limited too often")

    async def register(self) -> dict[str, str]:
        self.n += 1
        return dict(await self.call("POST", "/register", body={
            "username": f"{self.prefix}_{self.n}", "password": "bench-pw-1",
            "auth": {"type": "m.login.dummy"}}))

    async def users(self, n: int) -> list[dict[str, str]]:
        sem = asyncio.Semaphore(self.args.setup_concurrency)

        async def one() -> dict[str, str]:
            async with sem:
                return await self.register()
        return list(await asyncio.gather(*(one() for _ in range(n))))

    async def room(self, owner: dict[str, str], members: list[dict[str, str]]) -> str:
        room_id = (await self.call("POST", "/createRoom", owner["access_token"],
                                   {"preset": "public_chat"}))["room_id"]
        sem = asyncio.Semaphore(self.args.setup_concurrency)

        async def join(u: dict[str, str]) -> None:
            async with sem:
                await self.call("POST", f"/rooms/{room_id}/join", u["access_token"], {})
        await asyncio.gather(*(join(u) for u in members))
        return str(room_id)

    async def ws(self, user: dict[str, str], flt: dict[str, Any] | None = None,
                 since: str | None = None) -> aiohttp.ClientWebSocketResponse:
        q: dict[str, str] = {}
        if flt is not None:
            q["filter"] = json.dumps(flt)
        if since:
            q["since"] = since
        url = self.base + API + "/sync" + ("?" + urllib.parse.urlencode(q) if q else "")
        return await self.s.ws_connect(url, headers={
            "Authorization": f"Bearer {user['access_token']}"}, heartbeat=None,
            max_msg_size=64 << 20)


def bench_ids(body: dict[str, Any], room_id: str) -> list[int]:
    events = body.get("rooms", {}).get("join", {}).get(room_id, {}).get(
        "timeline", {}).get("events", [])
    return [e["content"]["bench_id"] for e in events if "bench_id" in e.get("content", {})]


# ------------------------------------------------------------------------------ latency

async def scenario_latency(b: Bench) -> dict[str, Any]:
    a_user, b_user = await b.users(2)
    room = await b.room(a_user, [b_user])
    flt = {**ROOM_ONLY, "room": {**ROOM_ONLY["room"], "rooms": [room]}}
    arrived: dict[int, float] = {}
    got = asyncio.Event()
    seq = iter(range(1, 10**9))

    async def run(label: str, send: Callable[[int], Awaitable[None]],
                  ready: Callable[[], Awaitable[None]]) -> dict[str, Any]:
        lat: list[float] = []
        for i in range(b.args.messages + 10):
            await ready()
            await asyncio.sleep(b.args.gap_ms / 1000)
            bid = next(seq)
            got.clear()
            t0 = now()
            await send(bid)
            async with asyncio.timeout(b.args.delivery_timeout):
                while bid not in arrived:
                    await got.wait()
                    got.clear()
            if i >= 10:  # warm-up
                lat.append(arrived[bid] - t0)
        log(f"latency {label}: {summary(lat)}")
        return summary(lat)

    async def http_send(bid: int) -> None:
        await b.call("PUT", f"/rooms/{room}/send/m.room.message/t{bid}", a_user["access_token"],
                     {"msgtype": "m.text", "body": "x", "bench_id": bid})

    # Long-poll receiver: re-issues its poll at once after each response.
    first = await b.call("GET", "/sync", b_user["access_token"],
                         params={"timeout": "0", "filter": json.dumps(flt)})
    issued = asyncio.Event()

    async def poller(since: str) -> None:
        while True:
            issued.set()
            body = await b.call("GET", "/sync", b_user["access_token"], timeout=120, params={
                "since": since, "timeout": str(b.args.poll_ms), "filter": json.dumps(flt)})
            issued.clear()
            t = now()
            for bid in bench_ids(body, room):
                arrived.setdefault(bid, t)
            got.set()
            since = body["next_batch"]

    async def poll_ready() -> None:
        await asyncio.wait_for(issued.wait(), b.args.delivery_timeout)

    task = asyncio.create_task(poller(first["next_batch"]))
    results: dict[str, Any] = {}
    try:
        results["longpoll_http_send"] = await run("long-poll", http_send, poll_ready)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # WebSocket receiver.
    ws_b = await b.ws(b_user, flt)
    ws_a = await b.ws(a_user, flt)

    async def reader(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            t = now()
            data = json.loads(msg.data)
            if data.get("type") == "sync":
                for bid in bench_ids(data["body"], room):
                    arrived.setdefault(bid, t)
                got.set()

    acks: dict[Any, asyncio.Future[Any]] = {}

    async def a_reader() -> None:
        async for msg in ws_a:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            fut = acks.pop(data.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(data)

    async def ws_send(bid: int) -> None:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        acks[bid] = fut
        await ws_a.send_str(json.dumps({"id": bid, "method": "send", "params": {
            "room_id": room, "type": "m.room.message", "txn_id": f"w{bid}",
            "content": {"msgtype": "m.text", "body": "x", "bench_id": bid}}}))

    async def ws_ready() -> None:
        return None

    tasks = [asyncio.create_task(reader(ws_b)), asyncio.create_task(a_reader())]
    try:
        results["ws_http_send"] = await run("ws (HTTP send)", http_send, ws_ready)
        results["ws_ws_send"] = await run("ws (ws send)", ws_send, ws_ready)
    finally:
        await ws_a.close()
        await ws_b.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return results


# ------------------------------------------------------------------------------ connections

async def scenario_connections(b: Bench) -> dict[str, Any]:
    args = b.args
    users = await b.users(min(args.users, args.connections))
    pid = args.server_pid
    sem = asyncio.Semaphore(50)
    flt = {"presence": {"types": []}}
    await asyncio.sleep(1)
    before = rss_kb(pid)
    t0 = now()
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    polls: list[asyncio.Task[Any]] = []
    if args.mode == "ws":
        async def open_one(u: dict[str, str]) -> None:
            async with sem:
                ws = await b.ws(u, flt)
                sockets.append(ws)
                msg = await ws.receive(timeout=60)
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
        await asyncio.gather(*(open_one(users[i % len(users)])
                               for i in range(args.connections)))
    else:
        tokens = {}
        for u in users:
            tokens[u["user_id"]] = (await b.call("GET", "/sync", u["access_token"], params={
                "timeout": "0", "filter": json.dumps(flt)}))["next_batch"]
        for i in range(args.connections):
            u = users[i % len(users)]
            polls.append(asyncio.create_task(b.call(
                "GET", "/sync", u["access_token"], timeout=300, params={
                    "since": tokens[u["user_id"]], "timeout": str(args.poll_ms),
                    "filter": json.dumps(flt)})))
    opened = now() - t0
    await asyncio.sleep(3)  # let every connection park
    if any(p.done() for p in polls):
        raise RuntimeError("a long-poll returned early: raise --poll-ms")
    after = rss_kb(pid)
    for ws in sockets:
        await ws.close()
    for p in polls:
        p.cancel()
    await asyncio.gather(*polls, return_exceptions=True)
    await asyncio.sleep(2)
    closed = rss_kb(pid)
    out: dict[str, Any] = {"mode": args.mode, "connections": args.connections,
                           "users": len(users), "open_s": round(opened, 2),
                           "rss_before_kb": before, "rss_open_kb": after,
                           "rss_after_close_kb": closed}
    if before is not None and after is not None:
        out["kb_per_connection"] = round((after - before) / args.connections, 2)
    log(f"connections: {out}")
    return out


# ------------------------------------------------------------------------------ presence

async def scenario_presence(b: Bench) -> dict[str, Any]:
    args = b.args
    members = await b.users(args.members)
    room = await b.room(members[0], members[1:])
    if args.mode == "longpoll":
        return await presence_longpoll(b, members)
    flt = {"account_data": {"types": []},
           "room": {"rooms": [room], "timeline": {"limit": 1}, "state": {"types": []},
                    "ephemeral": {"types": []}}}
    seen: list[dict[str, float]] = [{} for _ in members]  # per member: status_msg -> time
    sockets = []
    sem = asyncio.Semaphore(50)

    async def open_one(i: int) -> None:
        async with sem:
            ws = await b.ws(members[i], flt)
            sockets.append(ws)
            await ws.receive(timeout=60)  # initial sync

    await asyncio.gather(*(open_one(i) for i in range(len(members))))
    changed = asyncio.Event()

    async def reader(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            t = now()
            data = json.loads(msg.data)
            for ev in data.get("body", {}).get("presence", {}).get("events", []):
                status = ev.get("content", {}).get("status_msg")
                if status:
                    seen[i].setdefault(f"{ev['sender']}|{status}", t)
            changed.set()

    tasks = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(sockets)]
    await asyncio.sleep(2)  # let the connect-time presence changes settle
    to_all: list[float] = []
    each: list[float] = []
    try:
        for r in range(args.presence_rounds):
            who = members[1 + r % (len(members) - 1)]
            key = f"{who['user_id']}|bench round {r} {b.prefix}"
            others = [i for i, m in enumerate(members) if m is not who]
            t0 = now()
            await b.call("PUT", f"/presence/{who['user_id']}/status", who["access_token"],
                         {"presence": "online", "status_msg": key.split("|", 1)[1]})
            async with asyncio.timeout(args.delivery_timeout):
                while not all(key in seen[i] for i in others):
                    changed.clear()
                    await changed.wait()
            times = [seen[i][key] - t0 for i in others]
            to_all.append(max(times))
            each.extend(times)
            await asyncio.sleep(args.fanout_gap_ms / 1000)
    finally:
        for ws in sockets:
            await ws.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    out = {"mode": "ws", "members": len(members), "rounds": args.presence_rounds,
           "time_to_all": summary(to_all), "per_member": summary(each)}
    log(f"presence: {out}")
    return out


async def presence_longpoll(b: Bench, members: list[dict[str, str]]) -> dict[str, Any]:
    """Every member keeps one `/sync?since=…&timeout=--presence-poll-ms` parked, re-issued at
    once after each response. Per round one member PUTs its presence (online / unavailable
    alternating by round) with a status_msg unique to the round; delivery to a member = the first
    response of its poll holding an m.presence event from that sender with that status_msg, so
    servers that coalesce intermediate states are timed correctly. Before each round every poll
    must have been re-issued at least --fanout-gap-ms earlier (parked, not in flight)."""
    args = b.args
    flt = json.dumps(PRESENCE_ONLY)
    poll_params = {"timeout": str(args.presence_poll_ms), "filter": flt,
                   "set_presence": args.poll_set_presence}
    n = len(members)
    seen: list[dict[str, tuple[float, str]]] = [{} for _ in members]  # key -> (time, presence)
    armed = [False] * n  # a poll is issued and has not answered yet
    issued = [0] * n  # polls issued per member
    responses = [0] * n
    changed = asyncio.Event()
    sem = asyncio.Semaphore(50)

    async def initial(i: int) -> str:
        async with sem:
            body = await b.call("GET", "/sync", members[i]["access_token"],
                                params={**poll_params, "timeout": "0"})
            return str(body["next_batch"])

    tokens = await asyncio.gather(*(initial(i) for i in range(n)))
    max_polls = 100 + 20 * args.presence_rounds  # per member; a round costs one or two polls

    async def poller(i: int, since: str) -> None:
        for _ in range(max_polls):
            armed[i] = True
            issued[i] += 1
            try:
                body = await b.call("GET", "/sync", members[i]["access_token"],
                                    timeout=args.presence_poll_ms / 1000 + 30,
                                    params={**poll_params, "since": since})
            finally:
                armed[i] = False
            t = now()
            responses[i] += 1
            for ev in body.get("presence", {}).get("events", []):
                content = ev.get("content", {})
                status = content.get("status_msg")
                if ev.get("type") == "m.presence" and status:
                    seen[i].setdefault(f"{ev.get('sender')}|{status}",
                                       (t, str(content.get("presence"))))
            since = body["next_batch"]
            changed.set()
        raise RuntimeError(f"member {i}: more than {max_polls} polls (server answers at once?)")

    tasks = [asyncio.create_task(poller(i, tok)) for i, tok in enumerate(tokens)]

    def check_tasks() -> None:
        for task in tasks:
            if task.done():
                raise RuntimeError("a long-poll loop ended") from task.exception()

    async def wait_until(cond: Callable[[], bool], limit: float) -> bool:
        deadline = now() + limit
        for _ in range(100_000):  # bounded; each pass waits for a poll to answer
            check_tasks()
            if cond():
                return True
            left = deadline - now()
            if left <= 0:
                return False
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), min(left, 1.0))
            except TimeoutError:
                pass
        return cond()

    async def all_parked() -> None:
        for _ in range(50):  # bounded: until no poll was re-issued during a whole gap
            if not await wait_until(lambda: all(armed), args.delivery_timeout):
                raise RuntimeError("long-polls were not all re-armed in --delivery-timeout")
            before = sum(issued)
            await asyncio.sleep(args.fanout_gap_ms / 1000)
            if all(armed) and sum(issued) == before:
                return
        raise RuntimeError("long-polls kept answering: presence noise from the server?")

    to_all: list[float] = []
    each: list[float] = []
    missed = incomplete = mismatched = put_retries = 0
    responses_in_rounds = 0
    try:
        for r in range(args.presence_rounds):
            await all_parked()
            who = members[1 + r % (n - 1)]
            state = ("online", "unavailable")[r % 2]
            status_msg = f"bench round {r} {b.prefix} {state}"
            key = f"{who['user_id']}|{status_msg}"
            others = [i for i, m in enumerate(members) if m is not who]
            before = sum(responses)
            attempts: list[float] = []
            await b.call("PUT", f"/presence/{who['user_id']}/status", who["access_token"],
                         {"presence": state, "status_msg": status_msg}, attempts=attempts)
            t0 = attempts[-1]  # a 429 changed nothing: time from the accepted attempt
            put_retries += len(attempts) - 1
            await wait_until(lambda k=key, o=others: all(k in seen[i] for i in o),
                             args.delivery_timeout)
            responses_in_rounds += sum(responses) - before
            times = [seen[i][key][0] - t0 for i in others if key in seen[i]]
            mismatched += sum(1 for i in others if key in seen[i] and seen[i][key][1] != state)
            each.extend(times)
            if len(times) == len(others):
                to_all.append(max(times))
            else:
                missed += len(others) - len(times)
                incomplete += 1
                log(f"round {r}: {len(others) - len(times)} of {len(others)} members did not "
                    f"see the change within {args.delivery_timeout} s")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    out = {"mode": "longpoll", "members": n, "rounds": args.presence_rounds,
           "poll_timeout_ms": args.presence_poll_ms, "poll_set_presence": args.poll_set_presence,
           "time_to_all": summary(to_all), "per_member": summary(each),
           "missed_deliveries": missed, "incomplete_rounds": incomplete,
           "state_mismatches": mismatched, "put_429_retries": put_retries,
           "sync_responses_per_round": round(responses_in_rounds / max(1, args.presence_rounds),
                                             1)}
    log(f"presence: {out}")
    return out


SCENARIOS = {"latency": scenario_latency, "connections": scenario_connections,
             "presence": scenario_presence}


def check_loopback(url: str) -> None:
    host = urllib.parse.urlparse(url).hostname or ""
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError
        except ValueError:
            sys.exit(f"refusing non-loopback URL {url}")


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8008")
    p.add_argument("--scenarios", default="latency,connections,presence")
    p.add_argument("--messages", type=int, default=300)
    p.add_argument("--gap-ms", type=int, default=20)
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--users", type=int, default=100, help="connections: distinct users")
    p.add_argument("--mode", choices=("ws", "longpoll"), default="ws")
    p.add_argument("--server-pid", type=int, help="connections: server PID for VmRSS")
    p.add_argument("--members", type=int, default=100)
    p.add_argument("--presence-rounds", type=int, default=10)
    p.add_argument("--fanout-gap-ms", type=int, default=300)
    p.add_argument("--poll-ms", type=int, default=60_000)
    p.add_argument("--presence-poll-ms", type=int, default=30_000,
                   help="presence --mode longpoll: the /sync timeout of each parked poll")
    p.add_argument("--poll-set-presence", choices=("offline", "online", "unavailable"),
                   default="offline",
                   help="presence --mode longpoll: set_presence of the polls (offline: the "
                   "polls change nobody's presence, only the PUTs do)")
    p.add_argument("--delivery-timeout", type=float, default=30)
    p.add_argument("--setup-concurrency", type=int, default=8)
    p.add_argument("--max-time", type=float, default=1800)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    check_loopback(args.url)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.connections + 500))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    results: dict[str, Any] = {"url": args.url}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        b = Bench(args, s)
        async with asyncio.timeout(args.max_time):
            for name in args.scenarios.split(","):
                log(f"scenario {name}")
                results[name] = await SCENARIOS[name](b)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
