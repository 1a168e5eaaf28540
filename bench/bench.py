#!/usr/bin/env python3
"""Matrix homeserver benchmark harness (client-server API only).

Measures any homeserver reachable by URL, using only /_matrix/client/v3:

  a  1:1 send-to-sync delivery latency (sequential messages, receiver long-polls /sync)
  b  fan-out: one sender, N members long-polling /sync; time until the LAST member sees it
  c  sustained sends/second with K concurrent senders (K rooms, and one shared room)
  d  initial /sync (no since) for a user in R rooms with M messages each
  e  one client sending sequentially into one room: PUT /send round trip p50/p90/p99
  f  K concurrent senders sharing ONE access token (one device) and one room: sends/s
  p  b again with a fresh room and members, each member with an HTTP pusher aimed at a push
     gateway this harness runs on loopback (the server must be allowed to reach 127.0.0.1):
     the fan-out cost of push evaluation, counts and delivery; also pushes received

See bench/README.md. Only aiohttp is needed (Python >= 3.9).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import ipaddress
import json
import math
import os
import platform
import random
import socket
import statistics
import string
import sys
import time
import urllib.parse
import uuid

try:
    import aiohttp
except ImportError:  # pragma: no cover
    sys.exit("bench.py needs aiohttp: pip install aiohttp")

API = "/_matrix/client/v3"
now = time.perf_counter


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values, p):
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    k = (len(v) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def ms(x):
    return None if x is None else round(x * 1000.0, 2)


def summary_ms(values):
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": ms(pct(values, 50)),
        "p90_ms": ms(pct(values, 90)),
        "p99_ms": ms(pct(values, 99)),
        "mean_ms": ms(statistics.fmean(values)),
        "min_ms": ms(min(values)),
        "max_ms": ms(max(values)),
    }


# --------------------------------------------------------------------------- HTTP client


class Stats:
    def __init__(self):
        self.rate_limited = 0  # 429 responses seen (each retried after retry_after_ms)
        self.errors = 0  # non-2xx (other than 429) or transport errors in measured paths

    def snapshot(self):
        return (self.rate_limited, self.errors)


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str, deadline: float):
        self.s = session
        self.base = base.rstrip("/")
        self.stats = Stats()
        self.deadline = deadline

    def check_deadline(self):
        if now() > self.deadline:
            raise BenchError("--max-time exceeded")

    async def call(
        self,
        method,
        path,
        token=None,
        body=None,
        params=None,
        timeout=60.0,
        max_429=30,
        transport_retries=2,
        prefix=API,
    ):
        """Returns (status, parsed JSON body, perf_counter time when the body was fully read).

        429 M_LIMIT_EXCEEDED is retried after retry_after_ms (capped at 10 s), counted in stats.
        """
        url = self.base + prefix + path
        headers = {"Authorization": f"Bearer {token}"} if token else None
        n429 = 0
        ntrans = 0
        while True:
            self.check_deadline()
            try:
                async with self.s.request(
                    method,
                    url,
                    json=body,
                    params=params,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as resp:
                    raw = await resp.read()
                    t = now()
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
            except (TimeoutError, aiohttp.ClientError) as e:
                ntrans += 1
                if ntrans > transport_retries:
                    raise BenchError(f"{method} {path}: {type(e).__name__}: {e}") from e
                await asyncio.sleep(0.5 * ntrans)
                continue
            try:
                data = json.loads(raw) if raw else {}
            except ValueError:
                data = {"_raw": raw[:300].decode("utf-8", "replace")}
            if status == 429:
                self.stats.rate_limited += 1
                n429 += 1
                if n429 > max_429:
                    raise BenchError(f"{method} {path}: still rate limited after {max_429} retries")
                wait_ms = None
                if isinstance(data, dict):
                    wait_ms = data.get("retry_after_ms")
                if wait_ms is None and retry_after:
                    try:
                        wait_ms = float(retry_after) * 1000
                    except ValueError:
                        wait_ms = None
                await asyncio.sleep(min(max(float(wait_ms or 1000), 10.0), 10000.0) / 1000.0)
                continue
            return status, data, t

    async def ok(self, method, path, **kw):
        status, data, _ = await self.call(method, path, **kw)
        if status != 200:
            raise BenchError(f"{method} {path} -> {status} {json.dumps(data)[:300]}")
        return data


class User:
    def __init__(self, user_id, token, device_id):
        self.user_id = user_id
        self.token = token
        self.device_id = device_id

    def __repr__(self):
        return self.user_id


def q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


async def register(c: Client, username: str, password: str, reg_token: str | None) -> User:
    """POST /register with the user-interactive auth flow (m.login.dummy, optionally
    m.login.registration_token)."""
    body = {
        "username": username,
        "password": password,
        "initial_device_display_name": "bench",
        "auth": {"type": "m.login.dummy"},
    }
    usable = {"m.login.dummy"} | ({"m.login.registration_token"} if reg_token else set())
    for _ in range(6):
        status, data, _ = await c.call("POST", "/register", body=body)
        if status == 200:
            return User(data["user_id"], data["access_token"], data.get("device_id"))
        if status != 401 or "flows" not in data:
            raise BenchError(f"register {username} -> {status} {json.dumps(data)[:300]}")
        session = data.get("session")
        completed = set(data.get("completed") or [])
        flows = [f.get("stages", []) for f in data.get("flows", [])]
        flows = [f for f in flows if set(f) <= usable]
        if not flows:
            raise BenchError(
                f"register: no usable UIA flow in {data.get('flows')} "
                "(need m.login.dummy; try --registration-token)"
            )
        flow = min(flows, key=len)
        todo = [s for s in flow if s not in completed]
        if not todo:  # server says all done but did not register: retry with session once more
            todo = [flow[-1]]
        stage = todo[0]
        auth = {"type": stage}
        if session:
            auth["session"] = session
        if stage == "m.login.registration_token":
            auth["token"] = reg_token
        body = {**body, "auth": auth}
    raise BenchError(f"register {username}: UIA did not finish")


async def gather_limited(n, coros):
    sem = asyncio.Semaphore(n)

    async def one(co):
        async with sem:
            return await co

    return await asyncio.gather(*(one(co) for co in coros))


class Ctx:
    def __init__(self, args, client: Client):
        self.args = args
        self.c = client
        self.prefix = "pb" + "".join(random.choices(string.ascii_lowercase + string.digits, k=6))
        self.nuser = 0
        self.run_id = uuid.uuid4().hex[:10]
        self.ntxn = 0

    async def users(self, n, tag):
        names = []
        for _ in range(n):
            self.nuser += 1
            names.append(f"{self.prefix}_{tag}{self.nuser}")
        t0 = now()
        us = await gather_limited(
            self.args.setup_concurrency,
            [
                register(self.c, nm, self.args.password, self.args.registration_token)
                for nm in names
            ],
        )
        log(f"registered {n} users in {now() - t0:.1f}s")
        return us

    async def create_room(self, u: User, name):
        d = await self.c.ok(
            "POST",
            "/createRoom",
            token=u.token,
            body={"preset": "public_chat", "name": name, "visibility": "private"},
        )
        return d["room_id"]

    async def join(self, u: User, room_id):
        await self.c.ok("POST", f"/rooms/{q(room_id)}/join", token=u.token, body={})

    def txn(self):
        self.ntxn += 1
        return f"{self.run_id}.{self.ntxn}"

    async def send(self, u: User, room_id, bench_id, timeout=60.0):
        """PUT a message. Returns (status, t_done)."""
        body = {"msgtype": "m.text", "body": f"bench {bench_id}", "bench_id": bench_id}
        status, data, t = await self.c.call(
            "PUT",
            f"/rooms/{q(room_id)}/send/m.room.message/{q(self.txn())}",
            token=u.token,
            body=body,
            timeout=timeout,
        )
        return status, data, t


def room_filter(room_id, limit=50):
    """Inline sync filter: only this room's timeline; no presence/account data/ephemeral."""
    return json.dumps(
        {
            "room": {
                "rooms": [room_id],
                "timeline": {"limit": limit},
                "ephemeral": {"not_types": ["*"]},
                "account_data": {"not_types": ["*"]},
                "state": {"lazy_load_members": True},
            },
            "presence": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
        separators=(",", ":"),
    )


class Syncer:
    """Keeps one long-poll /sync always re-armed for one user and one room."""

    def __init__(self, ctx: Ctx, user: User, room_id: str, idx: int, on_event, poll_ms: int):
        self.ctx, self.user, self.room_id, self.idx = ctx, user, room_id, idx
        self.on_event = on_event
        self.poll_ms = poll_ms
        self.filter = room_filter(room_id)
        self.since = None
        self.armed_at = 0.0  # perf_counter when the current request was issued
        self.last_resp_t = 0.0  # perf_counter when the last response was read
        self.responses = 0
        self.errors = 0
        self.task = None

    async def initial(self):
        d = await self.ctx.c.ok(
            "GET",
            "/sync",
            token=self.user.token,
            params={"filter": self.filter, "timeout": "0"},
            timeout=120,
        )
        self.since = d["next_batch"]

    def start(self, deadline):
        self.task = asyncio.ensure_future(self._run(deadline))

    async def stop(self):
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self, deadline):
        c = self.ctx.c
        while now() < deadline:
            self.armed_at = now()
            try:
                status, d, t = await c.call(
                    "GET",
                    "/sync",
                    token=self.user.token,
                    timeout=self.poll_ms / 1000 + 30,
                    params={
                        "filter": self.filter,
                        "since": self.since,
                        "timeout": str(self.poll_ms),
                    },
                )
            except BenchError:
                self.errors += 1
                c.stats.errors += 1
                await asyncio.sleep(0.5)
                continue
            if status != 200:
                self.errors += 1
                c.stats.errors += 1
                await asyncio.sleep(0.5)
                continue
            self.responses += 1
            self.last_resp_t = t
            self.since = d.get("next_batch", self.since)
            room = d.get("rooms", {}).get("join", {}).get(self.room_id)
            if not room:
                continue
            for ev in room.get("timeline", {}).get("events", []):
                content = ev.get("content")
                if isinstance(content, dict) and "bench_id" in content:
                    self.on_event(content["bench_id"], t, self)


async def wait_rearmed(syncers, limit_s, gap_s):
    """Wait until every syncer has a long-poll in flight that it issued after its last
    response, then gap_s more (time for the server to park it)."""
    end = now() + limit_s
    while now() < end and any(s.armed_at <= s.last_resp_t for s in syncers):
        await asyncio.sleep(0.002)
    await asyncio.sleep(gap_s)


async def start_syncers(ctx, syncers, deadline):
    await gather_limited(ctx.args.setup_concurrency, [s.initial() for s in syncers])
    for s in syncers:
        s.start(deadline)
    # let any responses about setup events (joins etc.) drain, and polls park
    await asyncio.sleep(1.0)
    await wait_rearmed(syncers, 10.0, 1.0)


# --------------------------------------------------------------------------- scenario a


async def scenario_a(ctx: Ctx):
    args = ctx.args
    a, b = await ctx.users(2, "a")
    room = await ctx.create_room(a, "bench a")
    await ctx.join(b, room)
    pending = {}

    def on_event(bid, t, syncer):
        fut = pending.get(bid)
        if fut and not fut.done():
            fut.set_result(t)

    syncer = Syncer(ctx, b, room, 0, on_event, args.poll_ms)
    deadline = min(ctx.c.deadline, now() + args.scenario_max_time)
    await start_syncers(ctx, [syncer], deadline)
    lat, put_lat, missing = [], [], 0
    r0 = ctx.c.stats.snapshot()
    total = args.warmup_messages + args.messages
    log(f"a: {args.warmup_messages} warm-up + {args.messages} measured messages")
    t_start = now()
    for i in range(total):
        if now() > deadline:
            log("a: scenario time limit reached")
            break
        bid = f"{ctx.run_id}.a.{i}"
        fut = asyncio.get_running_loop().create_future()
        pending[bid] = fut
        t0 = now()
        status, data, t_put = await ctx.send(a, room, bid)
        if status != 200:
            ctx.c.stats.errors += 1
            pending.pop(bid, None)
            log(f"a: send failed {status} {data}")
            continue
        try:
            t_recv = await asyncio.wait_for(fut, timeout=args.delivery_timeout)
        except TimeoutError:
            missing += 1
            pending.pop(bid, None)
            continue
        pending.pop(bid, None)
        if i >= args.warmup_messages:
            lat.append(t_recv - t0)
            put_lat.append(t_put - t0)
        await wait_rearmed([syncer], 10.0, args.gap_ms / 1000)
    elapsed = now() - t_start
    await syncer.stop()
    r1 = ctx.c.stats.snapshot()
    return {
        "delivery": summary_ms(lat),
        "send_put": summary_ms(put_lat),
        "missing": missing,
        "sync_responses": syncer.responses,
        "elapsed_s": round(elapsed, 1),
        "rate_limited_429": r1[0] - r0[0],
        "errors": r1[1] - r0[1],
    }


# --------------------------------------------------------------------------- scenario b


async def scenario_b(ctx: Ctx):
    return await fanout(ctx, "b", None)


class Gateway:
    """A push gateway that accepts every notification and counts them."""

    def __init__(self):
        self.received = 0
        self.first_at = self.last_at = None
        self.runner = None
        self.url = ""

    async def start(self):
        from aiohttp import web

        async def notify(request):
            await request.read()
            self.received += 1
            self.last_at = now()
            if self.first_at is None:
                self.first_at = self.last_at
            return web.json_response({"rejected": []})

        app = web.Application()
        app.router.add_post("/_matrix/push/v1/notify", notify)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/_matrix/push/v1/notify"

    async def stop(self):
        if self.runner is not None:
            await self.runner.cleanup()


async def scenario_p(ctx: Ctx):
    gw = Gateway()
    await gw.start()
    try:
        out = await fanout(ctx, "p", gw)
        t0 = now()
        expected = out.get("messages_sent", 0) * (out["members"] - 1)
        while gw.received < expected and now() - t0 < 60:
            await asyncio.sleep(0.1)
        out["pushes_expected"] = expected
        out["pushes_received"] = gw.received
        out["push_drain_after_last_send_s"] = round(now() - t0, 2)
        return out
    finally:
        await gw.stop()


async def fanout(ctx: Ctx, tag: str, gateway: Gateway | None):
    args = ctx.args
    members = await ctx.users(args.members, tag)
    sender = members[0]
    room = await ctx.create_room(sender, f"bench {tag}")
    t0 = now()
    await gather_limited(args.setup_concurrency, [ctx.join(u, room) for u in members[1:]])
    log(f"{tag}: {len(members) - 1} joins in {now() - t0:.1f}s")
    if gateway is not None:
        await gather_limited(args.setup_concurrency, [ctx.c.ok(
            "POST", "/pushers/set", token=u.token, body={
                "kind": "http", "app_id": "bench.push", "pushkey": f"{ctx.run_id}-{i}",
                "app_display_name": "bench", "device_display_name": "bench", "lang": "en",
                "data": {"url": gateway.url, "format": "event_id_only"}})
            for i, u in enumerate(members)])
        log(f"{tag}: {len(members)} pushers set, gateway {gateway.url}")
    pending = {}
    sent = 0

    def on_event(bid, t, syncer):
        rec = pending.get(bid)
        if rec is None or syncer.idx in rec["arr"]:
            return
        rec["arr"][syncer.idx] = t
        if len(rec["arr"]) == len(members) and not rec["done"].done():
            rec["done"].set_result(t)

    syncers = [Syncer(ctx, u, room, i, on_event, args.poll_ms) for i, u in enumerate(members)]
    deadline = min(ctx.c.deadline, now() + args.scenario_max_time)
    await start_syncers(ctx, syncers, deadline)
    last, per_member, per_msg_median, first, put_lat = [], [], [], [], []
    incomplete, missed_deliveries = 0, 0
    r0 = ctx.c.stats.snapshot()
    cpu0 = server_cpu_s(args.server_pid)
    total = args.warmup_fanout + args.fanout_messages
    log(
        f"{tag}: {len(members)} syncing members, {args.warmup_fanout} warm-up + "
        f"{args.fanout_messages} measured messages"
    )
    for i in range(total):
        if now() > deadline:
            log(f"{tag}: scenario time limit reached")
            break
        bid = f"{ctx.run_id}.{tag}.{i}"
        rec = {"arr": {}, "done": asyncio.get_running_loop().create_future()}
        pending[bid] = rec
        t_send = now()
        status, data, t_put = await ctx.send(sender, room, bid)
        if i >= args.warmup_fanout:
            put_lat.append(t_put - t_send)
        if status != 200:
            ctx.c.stats.errors += 1
            log(f"{tag}: send failed {status} {data}")
            pending.pop(bid, None)
            continue
        sent += 1
        try:
            await asyncio.wait_for(asyncio.shield(rec["done"]), timeout=args.delivery_timeout)
        except TimeoutError:
            pass
        pending.pop(bid, None)
        got = rec["arr"]
        lats = [t - t_send for t in got.values()]
        if i >= args.warmup_fanout:
            if len(got) == len(members):
                last.append(max(lats))
            else:
                incomplete += 1
                missed_deliveries += len(members) - len(got)
            if lats:
                per_member.extend(lats)
                per_msg_median.append(statistics.median(lats))
                first.append(min(lats))
        await wait_rearmed(syncers, 15.0, args.fanout_gap_ms / 1000)
    if gateway is not None:  # the pushes of these messages are part of their cost
        t0 = now()
        while gateway.received < sent * (len(members) - 1) and now() - t0 < 60:
            await asyncio.sleep(0.05)
    cpu1 = server_cpu_s(args.server_pid)
    for s in syncers:
        await s.stop()
    r1 = ctx.c.stats.snapshot()
    return {
        "members": len(members),
        "messages_sent": sent,
        # server CPU from the first message until every member has it (and every push is in)
        "server_cpu_messages_s": round(cpu1 - cpu0, 3) if cpu0 is not None else None,
        "last_delivery": summary_ms(last),
        "per_member_delivery": summary_ms(per_member),
        "median_of_per_message_medians_ms": ms(statistics.median(per_msg_median))
        if per_msg_median
        else None,
        "first_delivery": summary_ms(first),
        "send_put": summary_ms(put_lat),
        "incomplete_messages": incomplete,
        "missed_deliveries": missed_deliveries,
        "rate_limited_429": r1[0] - r0[0],
        "errors": r1[1] - r0[1],
    }


# --------------------------------------------------------------------------- scenario c


async def run_senders(ctx: Ctx, senders, rooms, tag):
    args = ctx.args
    t_begin = now()
    t_measure = t_begin + args.warmup
    t_end = t_measure + args.duration
    done_in_window, lat, errors, all_done = [0], [], [0], [0]

    async def loop(i, u, room):
        n = 0
        # hard bound: no sender issues more than this many requests
        while now() < t_end and n < args.max_sends_per_sender:
            n += 1
            t0 = now()
            try:
                status, data, t1 = await ctx.send(
                    u, room, f"{ctx.run_id}.{tag}.{i}.{n}", timeout=60
                )
            except BenchError:
                errors[0] += 1
                continue
            if status != 200:
                errors[0] += 1
                await asyncio.sleep(0.1)
                continue
            all_done[0] += 1
            if t_measure <= t1 <= t_end:
                done_in_window[0] += 1
                lat.append(t1 - t0)

    r0 = ctx.c.stats.snapshot()
    await asyncio.gather(*(loop(i, u, rooms[i]) for i, u in enumerate(senders)))
    r1 = ctx.c.stats.snapshot()
    ctx.c.stats.errors += errors[0]
    return {
        "senders": len(senders),
        "rooms": len(set(rooms)),
        "sends_per_s": round(done_in_window[0] / args.duration, 1),
        "sends_in_window": done_in_window[0],
        "sends_total": all_done[0],
        "put_latency": summary_ms(lat),
        "rate_limited_429": r1[0] - r0[0],
        "errors": errors[0],
    }


async def scenario_c(ctx: Ctx):
    args = ctx.args
    senders = await ctx.users(args.senders, "c")
    own = await gather_limited(
        args.setup_concurrency, [ctx.create_room(u, f"bench c {i}") for i, u in enumerate(senders)]
    )
    shared = await ctx.create_room(senders[0], "bench c shared")
    await gather_limited(args.setup_concurrency, [ctx.join(u, shared) for u in senders[1:]])
    await asyncio.sleep(1.0)
    log(f"c: {len(senders)} senders, own rooms, {args.warmup}s warm-up + {args.duration}s")
    res_rooms = await run_senders(ctx, senders, own, "c1")
    await asyncio.sleep(2.0)
    log(f"c: {len(senders)} senders, one shared room, {args.warmup}s warm-up + {args.duration}s")
    res_shared = await run_senders(ctx, senders, [shared] * len(senders), "c2")
    return {"separate_rooms": res_rooms, "shared_room": res_shared}


# --------------------------------------------------------------------------- scenario d


async def scenario_d(ctx: Ctx):
    args = ctx.args
    (u,) = await ctx.users(1, "d")
    t0 = now()
    rooms = await gather_limited(
        min(args.setup_concurrency, 4),
        [ctx.create_room(u, f"bench d {i}") for i in range(args.rooms)],
    )
    log(f"d: created {len(rooms)} rooms in {now() - t0:.1f}s")
    t0 = now()

    async def fill(room):
        for j in range(args.room_messages):
            status, data, _ = await ctx.send(u, room, f"{ctx.run_id}.d.{room}.{j}")
            if status != 200:
                raise BenchError(f"d: send failed {status} {data}")

    await gather_limited(min(args.setup_concurrency, 10), [fill(r) for r in rooms])
    log(f"d: sent {len(rooms) * args.room_messages} messages in {now() - t0:.1f}s")
    await asyncio.sleep(2.0)
    r0 = ctx.c.stats.snapshot()
    times, sizes, checks = [], [], []
    runs = args.initial_sync_runs + 1  # first run reported separately as "cold"
    cold = None
    for k in range(runs):
        # A unique, inert filter every run: a server may cache identical initial syncs
        # (Synapse does, ~2 min). not_types on a type nobody sends changes no output.
        flt = json.dumps(
            {
                "room": {"timeline": {"limit": args.timeline_limit}},
                "presence": {"not_types": [f"bench.nonce.{uuid.uuid4().hex}"]},
            },
            separators=(",", ":"),
        )
        t_start = now()
        status, d, t_end = await ctx.c.call(
            "GET", "/sync", token=u.token, params={"filter": flt, "timeout": "0"}, timeout=300
        )
        if status != 200:
            raise BenchError(f"d: initial sync -> {status} {json.dumps(d)[:200]}")
        joined = d.get("rooms", {}).get("join", {})
        n_rooms = sum(1 for r in rooms if r in joined)
        n_msgs = sum(
            1
            for r in rooms
            for ev in joined.get(r, {}).get("timeline", {}).get("events", [])
            if ev.get("type") == "m.room.message"
        )
        checks.append((n_rooms, n_msgs))
        if k == 0:
            cold = t_end - t_start
        else:
            times.append(t_end - t_start)
            sizes.append(len(json.dumps(d)))
        await asyncio.sleep(0.5)
    r1 = ctx.c.stats.snapshot()
    exp_msgs = len(rooms) * min(args.room_messages, args.timeline_limit)
    return {
        "rooms": len(rooms),
        "messages_per_room": args.room_messages,
        "timeline_limit": args.timeline_limit,
        "initial_sync": summary_ms(times),
        "cold_first_ms": ms(cold),
        "response_bytes_median": int(statistics.median(sizes)) if sizes else None,
        "rooms_seen": min(c[0] for c in checks),
        "messages_seen": min(c[1] for c in checks),
        "messages_expected": exp_msgs,
        "rate_limited_429": r1[0] - r0[0],
        "errors": r1[1] - r0[1],
    }

# --------------------------------------------------------------------------- scenarios e, f


class RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time, parsed by hand.

    aiohttp's client costs ~0.25-0.35 ms of CPU per request here, a quarter of a 1.2 ms PUT
    target and ~40% of a core at 1,500 sends/s on a 2-core machine shared with the server;
    this costs a fraction of that, so e and f measure the server rather than the client. Only
    what a Matrix server answers a PUT with is handled: Content-Length or chunked bodies."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(BenchError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            parsed = self._parse()
        except (ValueError, IndexError) as e:
            self.waiter.set_exception(BenchError(f"bad HTTP response: {e}"))
            return
        if parsed is not None:
            self.waiter.set_result((*parsed, now()))

    def _parse(self):
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, chunked, close = None, False, False
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
            elif k == "connection" and "close" in v.lower():
                close = True
        pos = end + 4
        if chunked:
            body = bytearray()
            while True:
                eol = self.buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(bytes(self.buf[pos:eol]).split(b";")[0], 16)
                if len(self.buf) < eol + 2 + size + 2:
                    return None
                body += self.buf[eol + 2 : eol + 2 + size]
                pos = eol + 2 + size + 2
                if size == 0:
                    break
            body = bytes(body)
        else:
            length = length or 0
            if len(self.buf) < pos + length:
                return None
            body = bytes(self.buf[pos : pos + length])
            pos += length
        del self.buf[:pos]
        if close:
            self.closed = True
        return status, body

    async def request(self, head: bytes, body: bytes, timeout: float):
        """Returns (status, body bytes, perf_counter time the whole response was in)."""
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(head + body)
        try:
            return await asyncio.wait_for(self.waiter, timeout)
        finally:
            self.waiter = None


class LeanSender:
    """PUT /send with as little client work per request as possible: headers built once, the
    body pre-encoded, and (client "raw", the default for e and f) a hand-parsed keep-alive
    HTTP/1.1 connection per in-flight request instead of aiohttp's client. e and f report the
    client's CPU so its share stays visible."""

    def __init__(self, ctx: Ctx, user: User, room_id: str, client: str):
        self.ctx = ctx
        self.client = client
        self.path = f"{API}/rooms/{q(room_id)}/send/m.room.message/"
        self.url = ctx.c.base + self.path
        self.headers = {
            "Authorization": f"Bearer {user.token}",
            "Content-Type": "application/json",
        }
        u = urllib.parse.urlparse(ctx.c.base)
        if u.scheme != "http" and client == "raw":
            raise BenchError("--send-client raw speaks plain http only")
        self.host, self.port = u.hostname, u.port or 80
        self.head = (
            f"Host: {u.netloc}\r\nAuthorization: Bearer {user.token}\r\n"
            "Content-Type: application/json\r\n"
        )
        self.idle: list[RawConnection] = []
        self.all: list[RawConnection] = []
        self.timeout = aiohttp.ClientTimeout(total=60)
        self.event_ids: set[str] = set()

    async def _conn(self) -> RawConnection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(RawConnection, self.host, self.port)
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.all.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.all:
            if conn.transport is not None:
                conn.transport.close()

    async def _once(self, txn: str, body: bytes):
        if self.client == "aiohttp":
            async with self.ctx.c.s.put(
                self.url + txn, data=body, headers=self.headers, timeout=self.timeout
            ) as r:
                raw = await r.read()
                return r.status, raw, now()
        conn = await self._conn()
        head = (
            f"PUT {self.path}{txn} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            res = await conn.request(head, body, 60.0)
        except BaseException:
            if conn.transport is not None:
                conn.transport.close()
            raise
        self.idle.append(conn)
        return res

    async def send(self, bench_id: str) -> tuple[int, float]:
        """Returns (status, perf_counter time the response was read); 429 retried, counted."""
        body = json.dumps(
            {"msgtype": "m.text", "body": f"bench {bench_id}", "bench_id": bench_id},
            separators=(",", ":"),
        ).encode()
        txn = q(self.ctx.txn())  # one txn id per request, unique per device
        c = self.ctx.c
        for _ in range(30):
            c.check_deadline()
            try:
                status, raw, t = await self._once(txn, body)
            except (TimeoutError, OSError, aiohttp.ClientError) as e:
                raise BenchError(f"PUT /send: {type(e).__name__}: {e}") from e
            if status == 429:
                c.stats.rate_limited += 1
                try:
                    wait_ms = float(json.loads(raw).get("retry_after_ms", 1000))
                except (ValueError, AttributeError, TypeError):
                    wait_ms = 1000.0
                await asyncio.sleep(min(max(wait_ms, 10.0), 10000.0) / 1000.0)
                continue
            if status == 200:
                try:
                    self.event_ids.add(json.loads(raw)["event_id"])
                except (ValueError, KeyError, TypeError):
                    status = -1  # a 200 without an event_id is not an acknowledgement
            return status, t
        raise BenchError("PUT /send: still rate limited after 30 retries")


async def scenario_e(ctx: Ctx):
    """Sequential sends by one client into one room, nobody syncing: the bare cost of one
    acknowledged (durably committed) message, as seen by the client."""
    args = ctx.args
    (u,) = await ctx.users(1, "e")
    room = await ctx.create_room(u, "bench e")
    await asyncio.sleep(1.0)
    sender = LeanSender(ctx, u, room, args.send_client)
    r0 = ctx.c.stats.snapshot()
    deadline = min(ctx.c.deadline, now() + args.put_max_time)
    total = args.put_warmup + args.put_messages
    log(f"e: {args.put_warmup} warm-up + {args.put_messages} sequential sends")
    lat, errors = [], 0
    cpu0 = wall0 = None
    for i in range(total):
        if now() > deadline:
            log("e: --put-max-time reached")
            break
        if i == args.put_warmup:
            cpu0, wall0 = time.process_time(), now()
        t0 = now()
        status, t1 = await sender.send(f"{ctx.run_id}.e.{i}")
        if status != 200:
            errors += 1
            continue
        if i >= args.put_warmup:
            lat.append(t1 - t0)
    cpu = time.process_time() - cpu0 if cpu0 is not None else None
    wall = now() - wall0 if wall0 is not None else None
    sender.close()
    r1 = ctx.c.stats.snapshot()
    ctx.c.stats.errors += errors
    return {
        "send_client": args.send_client,
        "put_latency": summary_ms(lat),
        "client_cpu_ms_per_send": round(cpu * 1000 / len(lat), 3) if cpu and lat else None,
        "client_cpu_share": round(cpu / wall, 3) if cpu and wall else None,
        "elapsed_s": round(wall, 2) if wall else None,
        "distinct_event_ids": len(sender.event_ids),
        "rate_limited_429": r1[0] - r0[0],
        "errors": errors,
    }


async def scenario_f(ctx: Ctx):
    """--shared-senders loops share ONE user's access token (one device) and one room, each
    with one PUT in flight: the per-device and per-room serialisation a server may have is on
    the path (txn ids are per device). sends/s = 200s read inside the measured window."""
    args = ctx.args
    (u,) = await ctx.users(1, "f")
    room = await ctx.create_room(u, "bench f")
    await asyncio.sleep(1.0)
    sender = LeanSender(ctx, u, room, args.send_client)
    t_measure = now() + args.f_warmup
    t_end = t_measure + args.f_duration
    in_window, lat, errors, total = [0], [], [0], [0]

    async def loop(k):
        n = 0
        while now() < t_end and n < args.max_sends_per_sender:
            n += 1
            t0 = now()
            try:
                status, t1 = await sender.send(f"{ctx.run_id}.f.{k}.{n}")
            except BenchError:
                errors[0] += 1
                await asyncio.sleep(0.1)
                continue
            if status != 200:
                errors[0] += 1
                await asyncio.sleep(0.1)
                continue
            total[0] += 1
            if t_measure <= t1 <= t_end:
                in_window[0] += 1
                lat.append(t1 - t0)

    async def cpu_probe():
        await asyncio.sleep(max(0.0, t_measure - now()))
        c0, w0 = time.process_time(), now()
        await asyncio.sleep(max(0.0, t_end - now()))
        return time.process_time() - c0, now() - w0

    log(
        f"f: {args.shared_senders} senders on one access token, one room, "
        f"{args.f_warmup}s warm-up + {args.f_duration}s"
    )
    r0 = ctx.c.stats.snapshot()
    probe = asyncio.ensure_future(cpu_probe())
    await asyncio.gather(*(loop(k) for k in range(args.shared_senders)))
    cpu, wall = await probe
    sender.close()
    r1 = ctx.c.stats.snapshot()
    ctx.c.stats.errors += errors[0]
    return {
        "send_client": args.send_client,
        "senders": args.shared_senders,
        "sends_per_s": round(in_window[0] / args.f_duration, 1),
        "sends_in_window": in_window[0],
        "sends_total": total[0],
        "distinct_event_ids": len(sender.event_ids),
        "put_latency": summary_ms(lat),
        "client_cpu_share": round(cpu / wall, 3) if wall else None,
        "client_cpu_ms_per_send": round(cpu * 1000 / in_window[0], 3) if in_window[0] else None,
        "rate_limited_429": r1[0] - r0[0],
        "errors": errors[0],
    }



# --------------------------------------------------------------------------- main


def check_loopback(url: str, allow_remote: bool):
    p = urllib.parse.urlparse(url)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise SystemExit(f"bad --url {url!r}")
    if allow_remote:
        return
    try:
        infos = socket.getaddrinfo(p.hostname, p.port or (443 if p.scheme == "https" else 80))
    except OSError as e:
        raise SystemExit(f"cannot resolve {p.hostname}: {e}") from None
    addrs = {i[4][0] for i in infos}
    bad = [a for a in addrs if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if bad or not addrs:
        raise SystemExit(
            f"refusing non-loopback target {p.hostname} ({', '.join(sorted(addrs))}); "
            "use --allow-remote to override"
        )


def fmt(v):
    return "-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def table(results):
    rows = []

    def ok(k):
        r = results.get(k)
        return r if isinstance(r, dict) and "error" not in r else None

    a = ok("a")
    if a:
        d = a["delivery"]
        rows += [
            ("a 1:1 delivery p50 (ms)", d.get("p50_ms")),
            ("a 1:1 delivery p99 (ms)", d.get("p99_ms")),
            ("a 1:1 delivery mean (ms)", d.get("mean_ms")),
            ("a send PUT p50 (ms)", a["send_put"].get("p50_ms")),
            ("a messages measured / missing", f"{d.get('n', 0)} / {a['missing']}"),
        ]
    b = ok("b")
    if b:
        rows += [
            (f"b fan-out {b['members']}: last delivery p50 (ms)", b["last_delivery"].get("p50_ms")),
            (f"b fan-out {b['members']}: last delivery p99 (ms)", b["last_delivery"].get("p99_ms")),
            (
                f"b fan-out {b['members']}: per-member delivery median (ms)",
                b["per_member_delivery"].get("p50_ms"),
            ),
            (
                f"b fan-out {b['members']}: first delivery p50 (ms)",
                b["first_delivery"].get("p50_ms"),
            ),
            ("b send PUT p50 (ms)", b["send_put"].get("p50_ms")),
            (
                "b messages measured / incomplete",
                f"{b['last_delivery'].get('n', 0)} / {b['incomplete_messages']}",
            ),
        ]
    c = ok("c")
    if c:
        for key, lab in (("separate_rooms", "own rooms"), ("shared_room", "1 shared room")):
            r = c[key]
            rows += [
                (f"c {r['senders']} senders, {lab}: sends/s", r["sends_per_s"]),
                (
                    f"c {r['senders']} senders, {lab}: PUT p50 / p99 (ms)",
                    f"{fmt(r['put_latency'].get('p50_ms'))} / "
                    f"{fmt(r['put_latency'].get('p99_ms'))}",
                ),
            ]
    d = ok("d")
    if d:
        rows += [
            (
                f"d initial sync {d['rooms']} rooms x {d['messages_per_room']} msgs: median (ms)",
                d["initial_sync"].get("p50_ms"),
            ),
            (
                "d initial sync min / max (ms)",
                f"{fmt(d['initial_sync'].get('min_ms'))} / {fmt(d['initial_sync'].get('max_ms'))}",
            ),
            ("d initial sync cold first run (ms)", d["cold_first_ms"]),
            (
                "d rooms / messages seen",
                f"{d['rooms_seen']} / {d['messages_seen']} (expected {d['messages_expected']})",
            ),
        ]
    e = ok("e")
    if e:
        pl = e["put_latency"]
        rows += [
            (
                "e sequential PUT p50 / p90 / p99 (ms)",
                f"{fmt(pl.get('p50_ms'))} / {fmt(pl.get('p90_ms'))} / {fmt(pl.get('p99_ms'))}",
            ),
            ("e sends measured / errors", f"{pl.get('n', 0)} / {e['errors']}"),
            ("e client CPU per send (ms)", e["client_cpu_ms_per_send"]),
        ]
    f = ok("f")
    if f:
        rows += [
            (f"f {f['senders']} senders, one token, one room: sends/s", f["sends_per_s"]),
            (
                f"f {f['senders']} senders: PUT p50 / p99 (ms)",
                f"{fmt(f['put_latency'].get('p50_ms'))} / {fmt(f['put_latency'].get('p99_ms'))}",
            ),
            ("f client CPU share of one core", f["client_cpu_share"]),
        ]
    n429 = 0
    for k in "abcdef":
        r = results.get(k) or {}
        n429 += r.get("rate_limited_429", 0)
        for sub in ("separate_rooms", "shared_room"):
            n429 += (r.get(sub) or {}).get("rate_limited_429", 0)
    rows.append(("429 responses (all scenarios)", n429))
    rows.append(("idle GET /versions round trip p50 (ms)", results.get("idle_versions_rtt_p50_ms")))
    out = ["| metric | value |", "| --- | --- |"]
    out += [f"| {k} | {fmt(v)} |" for k, v in rows]
    return "\n".join(out)


def server_cpu_s(pid):
    """CPU seconds (user + system) the server process has used so far (its threads included),
    or None. Its PostgreSQL's CPU is not in it."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


# --------------------------------------------------------------------------- shared run scaffolding
# bench.py and bench_keys.py (and any later harness) run the same way: check the server answers,
# record what was run where, time an idle round trip to judge the machine's noise, run the chosen
# scenarios with the server's CPU per scenario, print a table and write the JSON.


async def start_results(c, ctx, args):
    st, versions, _ = await c.call("GET", "/_matrix/client/versions", prefix="")
    if st != 200:
        raise BenchError(f"GET /_matrix/client/versions -> {st}")
    results = {
        "label": args.label,
        "url": args.url,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "loadavg_start": loadavg(),
        "spec_versions": versions.get("versions"),
        "user_prefix": ctx.prefix,
        "args": {
            k: v
            for k, v in vars(args).items()
            if k not in ("password", "registration_token", "json_out")
        },
    }
    rtt = []
    for _ in range(30):  # idle round trip, to judge machine noise
        t0 = now()
        await c.call("GET", "/_matrix/client/versions", prefix="")
        rtt.append(now() - t0)
    results["idle_versions_rtt_p50_ms"] = ms(pct(rtt, 50))
    return results


async def run_scenarios(fns, ctx, args, results):
    """Runs args.scenarios in order; a failed scenario records its error and the run goes on,
    except past the whole run's time bound."""
    for sc in args.scenarios:
        log(f"=== scenario {sc} === (load {loadavg()})")
        t0 = now()
        cpu0 = server_cpu_s(args.server_pid)
        try:
            results[sc] = await fns[sc](ctx)
            if cpu0 is not None:
                results[sc]["server_cpu_s"] = round(server_cpu_s(args.server_pid) - cpu0, 3)
        except BenchError as e:
            log(f"scenario {sc} failed: {e}")
            results[sc] = {"error": str(e)}
            if "max-time" in str(e):
                break
        log(f"scenario {sc} took {now() - t0:.1f}s")
        await asyncio.sleep(args.pause)
    return results


def add_run_args(p):
    """The options every harness has: where, what to call the run, registration, bounds, output."""
    p.add_argument("--url", default="http://127.0.0.1:18008", help="homeserver base URL")
    p.add_argument("--label", default=None, help="name for this run (e.g. synapse, parley)")
    p.add_argument("--server-pid", type=int, default=0,
                   help="server process (same machine): its CPU seconds per scenario")
    p.add_argument("--registration-token", default=None, help="for m.login.registration_token")
    p.add_argument("--password", default="bench-password-1")
    p.add_argument("--setup-concurrency", type=int, default=8)
    p.add_argument("--max-time", type=float, default=3600.0, help="hard bound on the whole run")
    p.add_argument("--json", dest="json_out", default=None, help="write results JSON here")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --url")
    p.add_argument(
        "--uvloop",
        action="store_true",
        help="run the client on uvloop (less client CPU per request; a-d were measured without)",
    )


def run_main(args, amain, table_of, scenario_keys):
    """Checks the URL, runs amain(args) on the chosen event loop, prints the table and errors,
    writes the JSON."""
    check_loopback(args.url, args.allow_remote)
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            sys.exit("--uvloop needs uvloop: pip install uvloop")
        uvloop.install()
    results = asyncio.run(amain(args))
    results["client_event_loop"] = "uvloop" if args.uvloop else "asyncio"
    print(f"\n### {args.label or args.url}  ({results['date']}, {os.cpu_count()} cpus)\n")
    print(table_of(results))
    for k in scenario_keys:
        if isinstance(results.get(k), dict) and "error" in results[k]:
            print(f"\nscenario {k} error: {results[k]['error']}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=2)
        log(f"wrote {args.json_out}")


async def amain(args):
    deadline = now() + args.max_time
    conn = aiohttp.TCPConnector(
        limit=max(250, args.members + args.senders + 50), limit_per_host=0, ttl_dns_cache=300
    )
    async with aiohttp.ClientSession(connector=conn) as session:
        c = Client(session, args.url, deadline)
        ctx = Ctx(args, c)
        results = await start_results(c, ctx, args)
        fns = {
            "a": scenario_a,
            "b": scenario_b,
            "c": scenario_c,
            "d": scenario_d,
            "e": scenario_e,
            "f": scenario_f,
            "p": scenario_p,
        }
        return await run_scenarios(fns, ctx, args, results)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_args(p)
    p.add_argument("--scenarios", default="a,b,c,d", help="comma list of a,b,c,d,e,f,p")
    p.add_argument("--messages", type=int, default=300, help="a: measured messages")
    p.add_argument("--warmup-messages", type=int, default=10, help="a: unmeasured first messages")
    p.add_argument("--gap-ms", type=float, default=50, help="a: pause after the poll is re-armed")
    p.add_argument("--members", type=int, default=100, help="b: syncing members in the room")
    p.add_argument("--fanout-messages", type=int, default=20, help="b: measured messages")
    p.add_argument("--warmup-fanout", type=int, default=2, help="b: unmeasured first messages")
    p.add_argument(
        "--fanout-gap-ms", type=float, default=500, help="b: pause after all polls re-armed"
    )
    p.add_argument("--senders", type=int, default=20, help="c: concurrent senders")
    p.add_argument("--duration", type=float, default=10.0, help="c: measured seconds")
    p.add_argument("--warmup", type=float, default=3.0, help="c: warm-up seconds before measuring")
    p.add_argument("--max-sends-per-sender", type=int, default=100000, help="c: hard bound")
    p.add_argument("--rooms", type=int, default=50, help="d: rooms the user is in")
    p.add_argument("--room-messages", type=int, default=20, help="d: messages per room")
    p.add_argument("--timeline-limit", type=int, default=20, help="d: timeline limit in the filter")
    p.add_argument(
        "--initial-sync-runs", type=int, default=7, help="d: timed runs (after 1 cold run)"
    )
    p.add_argument("--put-messages", type=int, default=500, help="e: measured sequential sends")
    p.add_argument("--put-warmup", type=int, default=50, help="e: unmeasured first sends")
    p.add_argument("--put-max-time", type=float, default=90.0, help="e: stop after this long")
    p.add_argument(
        "--send-client",
        choices=("raw", "aiohttp"),
        default="raw",
        help="e, f: HTTP client for the PUTs (raw: hand-parsed keep-alive HTTP/1.1)",
    )
    p.add_argument("--shared-senders", type=int, default=10, help="f: loops sharing one token")
    p.add_argument("--f-duration", type=float, default=10.0, help="f: measured seconds")
    p.add_argument("--f-warmup", type=float, default=3.0, help="f: warm-up seconds")
    p.add_argument("--poll-ms", type=int, default=30000, help="long-poll /sync timeout")
    p.add_argument(
        "--delivery-timeout", type=float, default=30.0, help="give up on one message after"
    )
    p.add_argument("--pause", type=float, default=3.0, help="seconds between scenarios")
    p.add_argument("--scenario-max-time", type=float, default=900.0)
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args(argv)
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    for s in a.scenarios:
        if s not in "abcdefp" or len(s) != 1:
            p.error(f"unknown scenario {s!r}")
    return a


def main(argv=None):
    args = parse_args(argv)
    if args.seed is not None:
        random.seed(args.seed)
    run_main(args, amain, table, "abcdefp")


if __name__ == "__main__":
    main()
