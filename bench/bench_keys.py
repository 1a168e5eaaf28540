#!/usr/bin/env python3
"""End-to-end encryption key endpoints, measured through the client-server API only.

  k  100 users x 3 devices upload real signed device keys and 50 signed one-time keys each;
     one querier POSTs /keys/query for all 100 users (300 devices): latency, devices returned
  l  100 concurrent /keys/claim (100 claimers, each one key from each of the 3 devices of a
     distinct target user), several rounds: per-request latency, wall time per round, and a
     check that no one-time key is ever handed out twice (plus one round where all 100 claim
     from the SAME user's devices at once)
  m  sequential message PUT latency (as bench.py e) alone, then while 4 loops hammer
     /keys/query (100 users) and 1 loop uploads one-time keys (each claimed back): both p50s
     and their ratio

Keys are real: each device has an ed25519 key (signedjson + pynacl) that signs its device keys
and its signed_curve25519 one-time keys, as clients do; the harness checks the signatures of
what /keys/query and /keys/claim hand back. l and m need k's users (run k first: `--scenarios
k,l,m` is the default). See bench/README.md. `--table A.json B.json` prints two runs side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import json
import secrets
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402

from bench import (  # noqa: E402
    API,
    BenchError,
    Client,
    Ctx,
    LeanSender,
    User,
    add_run_args,
    gather_limited,
    loadavg,
    log,
    ms,
    now,
    pct,
    run_main,
    run_scenarios,
    server_cpu_s,
    start_results,
    summary_ms,
)

try:
    from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
    from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
except ImportError:  # pragma: no cover
    sys.exit("bench_keys.py needs signedjson (and pynacl): pip install signedjson")

OTK_ALG = "signed_curve25519"


def b64(n: int = 32) -> str:
    return base64.b64encode(secrets.token_bytes(n)).decode().rstrip("=")


class Device:
    """One logged-in device with its own ed25519 signing key."""

    def __init__(self, user: User):
        self.user = user
        self.key = generate_signing_key(user.device_id)
        self.vk = get_verify_key(self.key)  # named ed25519:<device id>, as it signs
        self.ed25519 = encode_verify_key_base64(self.vk)
        self.uploaded_otks: dict[str, Any] = {}  # "alg:id" -> signed key object
        self.n_otk = 0

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @property
    def device_id(self) -> str:
        return self.user.device_id

    def device_keys(self) -> dict[str, Any]:
        d = self.device_id
        obj = {
            "user_id": self.user_id,
            "device_id": d,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{d}": b64(), f"ed25519:{d}": self.ed25519},
        }
        self.signed_device_keys = sign_json(obj, self.user_id, self.key)
        return self.signed_device_keys

    def one_time_keys(self, n: int) -> dict[str, Any]:
        out = {}
        for _ in range(n):
            self.n_otk += 1
            kid = f"{OTK_ALG}:AAAA{self.n_otk:05d}"
            out[kid] = sign_json({"key": b64()}, self.user_id, self.key)
        self.uploaded_otks.update(out)
        return out

    def verify(self, obj: dict[str, Any]) -> bool:
        try:
            verify_signed_json(copy.deepcopy(obj), self.user_id, self.vk)
        except SignatureVerifyException:
            return False
        return True


async def login(c: Client, user_id: str, password: str) -> User:
    d = await c.ok(
        "POST",
        "/login",
        body={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
            "initial_device_display_name": "bench keys",
        },
    )
    return User(d["user_id"], d["access_token"], d["device_id"])


class KCtx(Ctx):
    """bench.py's context plus the key users k sets up for l and m."""

    def __init__(self, args, client: Client):
        super().__init__(args, client)
        self.key_users: list[list[Device]] = []  # per user, its devices (with keys uploaded)
        self.querier: User | None = None

    def query_body(self) -> bytes:
        return json.dumps(
            {"device_keys": {devs[0].user_id: [] for devs in self.key_users}}
        ).encode()


# --------------------------------------------------------------------------- k


async def scenario_k(ctx: KCtx):
    """Upload real signed keys for users x devices, then time /keys/query for all of them."""
    a = ctx.args
    c = ctx.c
    users = await ctx.users(a.key_users, "k")
    (querier,) = await ctx.users(1, "kq")
    ctx.querier = querier
    t0 = now()
    logins = await gather_limited(
        a.setup_concurrency,
        [login(c, u.user_id, a.password) for u in users for _ in range(a.devices)],
    )
    # The registration's own device would have no keys; log it out so each user has exactly
    # --devices devices, all with keys.
    await gather_limited(
        a.setup_concurrency, [c.ok("POST", "/logout", token=u.token, body={}) for u in users]
    )
    log(f"k: {len(logins)} logins in {now() - t0:.1f}s")
    devices = [Device(u) for u in logins]
    by_user: dict[str, list[Device]] = {}
    for d in devices:
        by_user.setdefault(d.user_id, []).append(d)
    ctx.key_users = list(by_user.values())

    upload_lat: list[float] = []
    bad_counts = [0]

    async def upload(d: Device):
        body = {"device_keys": d.device_keys(), "one_time_keys": d.one_time_keys(a.otks)}
        t = now()
        status, data, t1 = await c.call("POST", "/keys/upload", token=d.user.token, body=body)
        if status != 200:
            raise BenchError(f"/keys/upload -> {status} {json.dumps(data)[:300]}")
        upload_lat.append(t1 - t)
        if (data.get("one_time_key_counts") or {}).get(OTK_ALG) != a.otks:
            bad_counts[0] += 1

    log(f"k: {len(devices)} devices upload device keys + {a.otks} signed one-time keys")
    t0 = now()
    await gather_limited(a.upload_concurrency, [upload(d) for d in devices])
    upload_wall = now() - t0

    body = ctx.query_body()
    expected = len(devices)
    lat: list[float] = []
    sizes: list[int] = []
    wrong = 0
    verified = bad_sig = mismatch = 0
    r0 = c.stats.snapshot()
    cpu0 = wall0 = None
    log(f"k: {a.query_warmup} warm-up + {a.queries} timed /keys/query of {len(by_user)} users")
    hdrs = {"Authorization": f"Bearer {querier.token}", "Content-Type": "application/json"}
    for i in range(a.query_warmup + a.queries):
        c.check_deadline()
        if i == a.query_warmup:
            cpu0, wall0 = server_cpu_s(a.server_pid), now()
        t = now()
        async with c.s.post(c.base + API + "/keys/query", data=body, headers=hdrs) as r:
            raw = await r.read()
            t1 = now()
            status = r.status
        if status != 200:
            raise BenchError(f"/keys/query -> {status} {raw[:300]!r}")
        data = json.loads(raw)
        got = data.get("device_keys") or {}
        n = sum(len(v) for v in got.values())
        if n != expected:
            wrong += 1
        if i == 0:  # check every device's keys once: intact and validly signed
            for d in devices:
                obj = (got.get(d.user_id) or {}).get(d.device_id)
                if obj is None:
                    continue
                verified += 1
                if not d.verify(obj):
                    bad_sig += 1
                strip = {k: v for k, v in obj.items() if k != "unsigned"}
                if strip != d.signed_device_keys:
                    mismatch += 1
        if i >= a.query_warmup:
            lat.append(t1 - t)
            sizes.append(len(raw))
    cpu1, wall1 = server_cpu_s(a.server_pid), now()
    r1 = c.stats.snapshot()
    server_cpu = (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None
    return {
        "users": len(by_user),
        "devices_per_user": a.devices,
        "devices": expected,
        "otks_per_device": a.otks,
        "upload_latency": summary_ms(upload_lat),
        "upload_wall_s": round(upload_wall, 2),
        "upload_wrong_counts": bad_counts[0],
        "query_latency": summary_ms(lat),
        "query_response_bytes_median": int(pct(sizes, 50)) if sizes else None,
        "queries_wrong_device_count": wrong,
        "devices_checked": verified,
        "devices_bad_signature": bad_sig,
        "devices_changed": mismatch,
        "server_cpu_ms_per_query": round(server_cpu * 1000 / len(lat), 2)
        if server_cpu is not None and lat else None,
        "queries_per_s_sequential": round(len(lat) / (wall1 - wall0), 1) if wall0 else None,
        "loadavg": loadavg(),
        "rate_limited_429": r1[0] - r0[0],
        "errors": r1[1] - r0[1],
    }


# --------------------------------------------------------------------------- l


async def scenario_l(ctx: KCtx):
    """Rounds of concurrent claims on distinct targets, then one round all on one target."""
    a = ctx.args
    c = ctx.c
    targets = ctx.key_users
    if not targets:
        raise BenchError("l needs k's users (run k first)")
    if a.claim_warmup + a.claim_rounds + 1 > a.otks:
        raise BenchError("l: --claim-rounds + --claim-warmup + 1 must be below --otks")
    ntgt = len(targets)
    claimers = await ctx.users(a.claimers, "l")
    devindex = {(d.user_id, d.device_id): d for devs in targets for d in devs}
    handed: dict[tuple[str, str, str], int] = {}  # (user, device, key id) -> times handed out
    problems = {"bad_signature": 0, "changed": 0, "unknown_key": 0, "missing": 0}

    def record(data, expect_devices):
        got = data.get("one_time_keys") or {}
        n = 0
        for uid, devs in got.items():
            for did, keys in devs.items():
                for kid, obj in keys.items():
                    n += 1
                    k = (uid, did, kid)
                    handed[k] = handed.get(k, 0) + 1
                    dev = devindex.get((uid, did))
                    if dev is None or kid not in dev.uploaded_otks:
                        problems["unknown_key"] += 1
                        continue
                    if obj != dev.uploaded_otks[kid]:
                        problems["changed"] += 1
                    if not dev.verify(obj):
                        problems["bad_signature"] += 1
        if expect_devices is not None and n < expect_devices:
            problems["missing"] += expect_devices - n
        return n

    async def one(claimer: User, target: list[Device]):
        body = {"one_time_keys": {target[0].user_id: {d.device_id: OTK_ALG for d in target}}}
        t = now()
        status, data, t1 = await c.call("POST", "/keys/claim", token=claimer.token, body=body)
        if status != 200:
            raise BenchError(f"/keys/claim -> {status} {json.dumps(data)[:300]}")
        return t1 - t, data

    lat: list[float] = []
    rounds: list[float] = []
    r0 = c.stats.snapshot()
    log(f"l: {a.claim_warmup} warm-up + {a.claim_rounds} rounds of {len(claimers)} concurrent "
        f"claims")
    for rnd in range(a.claim_warmup + a.claim_rounds):
        c.check_deadline()
        t0 = now()
        res = await asyncio.gather(
            *(one(cl, targets[(i + rnd) % ntgt]) for i, cl in enumerate(claimers))
        )
        wall = now() - t0
        for i, (dt, data) in enumerate(res):
            record(data, len(targets[(i + rnd) % ntgt]))
            if rnd >= a.claim_warmup:
                lat.append(dt)
        if rnd >= a.claim_warmup:
            rounds.append(wall)
        await asyncio.sleep(a.claim_gap)

    # Everyone at once on one user's devices: more claims than keys; each key once, then none.
    hot = targets[0]
    available = sum(1 for d in hot for kid in d.uploaded_otks
                    if (d.user_id, d.device_id, kid) not in handed)
    t0 = now()
    hot_res = await asyncio.gather(*(one(cl, hot) for cl in claimers))
    hot_wall = now() - t0
    hot_n = sum(record(data, None) for _, data in hot_res)
    hot_lat = [dt for dt, _ in hot_res]

    # What each device has left, by the server's count (an upload with no keys reports it).
    counts = await gather_limited(
        a.setup_concurrency,
        [c.ok("POST", "/keys/upload", token=d.user.token, body={})
         for devs in targets for d in devs],
    )
    left = sum((x.get("one_time_key_counts") or {}).get(OTK_ALG, 0) for x in counts)
    r1 = c.stats.snapshot()
    uploaded = sum(len(d.uploaded_otks) for devs in targets for d in devs)
    dup = sum(1 for v in handed.values() if v > 1)
    return {
        "claimers": len(claimers),
        "devices_per_claim": a.devices,
        "rounds": a.claim_rounds,
        "warmup_rounds": a.claim_warmup,
        "claim_latency": summary_ms(lat),
        "round_wall": summary_ms(rounds),
        "round_wall_ms": [ms(x) for x in rounds],
        "hot_target": {
            "claims": len(claimers),
            "keys_available": available,
            "keys_handed_out": hot_n,
            "all_available_handed_out": hot_n == available,
            "wall_ms": ms(hot_wall),
            "claim_latency": summary_ms(hot_lat),
        },
        "keys_handed_out": sum(handed.values()),
        "distinct_keys_handed_out": len(handed),
        "keys_handed_out_twice": dup,
        "keys_uploaded": uploaded,
        "keys_left_by_server_count": left,
        "keys_accounted": left + len(handed) == uploaded,
        **{f"claims_{k}": v for k, v in problems.items()},
        "loadavg": loadavg(),
        "rate_limited_429": r1[0] - r0[0],
        "errors": r1[1] - r0[1],
    }


# --------------------------------------------------------------------------- m


async def scenario_m(ctx: KCtx):
    """Sequential sends alone, then with key traffic alongside: the ratio of the p50s."""
    a = ctx.args
    c = ctx.c
    if not ctx.key_users or ctx.querier is None:
        raise BenchError("m needs k's users (run k first)")
    (u,) = await ctx.users(1, "m")
    (up,) = await ctx.users(1, "mu")  # the one-time-key uploader (its own device)
    room = await ctx.create_room(u, "bench m")
    await asyncio.sleep(1.0)
    uploader = Device(up)
    st, d, _ = await c.call(
        "POST", "/keys/upload", token=up.token, body={"device_keys": uploader.device_keys()}
    )
    if st != 200:
        raise BenchError(f"/keys/upload -> {st} {json.dumps(d)[:300]}")
    sender = LeanSender(ctx, u, room, a.send_client)

    async def sends(tag):
        lat, errors = [], 0
        deadline = min(c.deadline, now() + a.put_max_time)
        for i in range(a.put_warmup + a.put_messages):
            if now() > deadline:
                log(f"m: --put-max-time reached ({tag})")
                break
            t0 = now()
            status, t1 = await sender.send(f"{ctx.run_id}.m.{tag}.{i}")
            if status != 200:
                errors += 1
                continue
            if i >= a.put_warmup:
                lat.append(t1 - t0)
        return lat, errors

    log(f"m: {a.put_warmup} + {a.put_messages} sequential sends alone")
    r0 = c.stats.snapshot()
    alone, err_alone = await sends("alone")
    await asyncio.sleep(1.0)

    qbody = ctx.query_body()
    qhdrs = {"Authorization": f"Bearer {ctx.querier.token}", "Content-Type": "application/json"}
    uhdrs = {"Authorization": f"Bearer {up.token}", "Content-Type": "application/json"}
    cbody = json.dumps({"one_time_keys": {up.user_id: {up.device_id: OTK_ALG}}}).encode()
    bg_err: dict[str, int] = {}  # "path status: body start" -> count

    async def post(path: str, body: bytes, headers: dict, lat: list[float]) -> None:
        t = now()
        try:
            async with c.s.post(c.base + API + path, data=body, headers=headers) as r:
                raw = await r.read()  # not parsed: keep the client's CPU for the sender
                status = r.status
        except aiohttp.ClientError as e:
            status, raw = -1, repr(e).encode()
        if status == 200:
            lat.append(now() - t)
            return
        key = f"{path} {status}: {raw[:120].decode('utf-8', 'replace')}"
        bg_err[key] = bg_err.get(key, 0) + 1
        await asyncio.sleep(0.1)

    async def loaded_phase(tag: str, query_rate: float, upload_rate: float):
        """The sends again, with the key loops running; a rate of 0 = as fast as they go,
        else that many per second in all (each loop paced to its share)."""
        stop = asyncio.Event()
        qlat: list[float] = []
        ulat: list[float] = []
        clat: list[float] = []

        async def paced(step, rate: float, offset: float = 0.0):
            nxt = now() + offset  # staggered, so that paced loops do not fire in bursts
            await asyncio.sleep(offset)
            while not stop.is_set():
                await step()
                if rate > 0:
                    nxt += 1.0 / rate
                    await asyncio.sleep(max(0.0, nxt - now()))

        async def query_step():
            await post("/keys/query", qbody, qhdrs, qlat)

        # Uploads, each followed by as many claims of the uploader's keys (by the querier):
        # the device's count stays level, as a client's does that tops up what others take
        # (Synapse refuses an upload that would leave a device with more than 500 keys).
        async def upload_step():
            body = json.dumps({"one_time_keys": uploader.one_time_keys(a.upload_batch)}).encode()
            await post("/keys/upload", body, uhdrs, ulat)
            for _ in range(a.upload_batch):
                await post("/keys/claim", cbody, qhdrs, clat)

        pace = f" at {query_rate:g} queries/s and {upload_rate:g} uploads/s" if query_rate else ""
        log(f"m: the same sends with {a.query_loops} /keys/query loops and 1 upload loop "
            f"running{pace} ({tag})")
        bg = [asyncio.ensure_future(paced(query_step, query_rate / a.query_loops,
                                          i / query_rate if query_rate else 0.0))
              for i in range(a.query_loops)]
        bg.append(asyncio.ensure_future(paced(upload_step, upload_rate)))
        await asyncio.sleep(a.load_warmup)
        la = loadavg()
        t0 = now()
        cpu0 = server_cpu_s(a.server_pid)
        q0, u0, c0 = len(qlat), len(ulat), len(clat)
        lat, err = await sends(tag)
        window = now() - t0
        cpu1 = server_cpu_s(a.server_pid)
        q1, u1, c1 = len(qlat), len(ulat), len(clat)
        stop.set()
        await asyncio.gather(*bg)
        p_alone, p_loaded = pct(alone, 50), pct(lat, 50)
        return {
            "put": summary_ms(lat),
            "p50_ratio_vs_alone": round(p_loaded / p_alone, 2) if p_alone and p_loaded
            else None,
            "offered_query_rate": query_rate or None,
            "offered_upload_rate": upload_rate or None,
            "queries": q1 - q0,
            "queries_per_s": round((q1 - q0) / window, 1) if window else None,
            "query_latency": summary_ms(qlat[q0:q1]),
            "uploads": u1 - u0,
            "uploads_per_s": round((u1 - u0) / window, 1) if window else None,
            "upload_latency": summary_ms(ulat[u0:u1]),
            "claims_of_uploaded_keys": c1 - c0,
            "claim_latency": summary_ms(clat[c0:c1]),
            "server_cpu_share": round((cpu1 - cpu0) / window, 2)
            if cpu0 is not None and cpu1 is not None and window else None,
            "window_s": round(window, 2),
            "loadavg": la,
            "errors": err,
        }

    hammer = await loaded_phase("loaded", 0.0, 0.0)
    paced_res = None
    if a.paced_query_rate > 0:
        await asyncio.sleep(1.0)
        paced_res = await loaded_phase("paced", a.paced_query_rate, a.paced_upload_rate)
    sender.close()
    r1 = c.stats.snapshot()
    phases = [hammer] + ([paced_res] if paced_res else [])
    return {
        "send_client": a.send_client,
        "query_loops": a.query_loops,
        "query_users": len(ctx.key_users),
        "upload_batch": a.upload_batch,
        "put_alone": summary_ms(alone),
        "hammer": hammer,
        "paced": paced_res,
        "loadavg": loadavg(),
        "errors": err_alone + sum(ph["errors"] for ph in phases) + sum(bg_err.values()),
        "background_errors": bg_err,
        "rate_limited_429": r1[0] - r0[0],
    }


# --------------------------------------------------------------------------- output


def dig(d: Any, path: str) -> Any:
    for k in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


# (row label, path in the JSON, ratio meaning: "lat" lower is better, "rate" higher, "" none)
ROWS: list[tuple[str, str, str]] = [
    ("k /keys/upload, device keys + {otks} OTKs, sequential, p50 (ms)", "k.upload_latency.p50_ms",
     "lat"),
    ("k /keys/query {key_users} users / {ndev} devices, p50 (ms)", "k.query_latency.p50_ms", "lat"),
    ("k /keys/query p90 (ms)", "k.query_latency.p90_ms", "lat"),
    ("k /keys/query server CPU per query (ms)", "k.server_cpu_ms_per_query", "lat"),
    ("k /keys/query response size (bytes)", "k.query_response_bytes_median", ""),
    ("k queries with != {ndev} devices / bad signatures", "k.check", ""),
    ("l /keys/claim, {claimers} concurrent, per request p50 (ms)", "l.claim_latency.p50_ms", "lat"),
    ("l /keys/claim per request p90 (ms)", "l.claim_latency.p90_ms", "lat"),
    ("l round of {claimers} claims, wall p50 (ms)", "l.round_wall.p50_ms", "lat"),
    ("l round wall max (ms)", "l.round_wall.max_ms", "lat"),
    ("l {claimers} claims on ONE user's {devices} devices: wall (ms)", "l.hot_target.wall_ms",
     "lat"),
    ("l hot round: keys handed out / keys left on those devices", "l.hot", ""),
    ("l keys handed out twice / missing / bad (correctness)", "l.check", ""),
    ("m sequential PUT p50 alone (ms)", "m.put_alone.p50_ms", "lat"),
    ("m hammer: PUT p50 with key load (ms) [{query_loops} query loops + 1 upload loop, flat out]",
     "m.hammer.put.p50_ms", "lat"),
    ("m hammer: PUT p90 (ms)", "m.hammer.put.p90_ms", "lat"),
    ("m hammer: ratio PUT p50 loaded / alone", "m.hammer.p50_ratio_vs_alone", "lat"),
    ("m hammer: /keys/query served per s", "m.hammer.queries_per_s", "rate"),
    ("m hammer: /keys/query p50 (ms)", "m.hammer.query_latency.p50_ms", "lat"),
    ("m hammer: OTK uploads (+ as many claims) per s", "m.hammer.uploads_per_s", "rate"),
    ("m hammer: server CPU (cores) / sends measured", "m.hammer.cpu_n", ""),
    ("m paced: PUT p50 (ms) [{paced_query_rate:g} queries/s + {paced_upload_rate:g} uploads/s]",
     "m.paced.put.p50_ms", "lat"),
    ("m paced: ratio PUT p50 loaded / alone", "m.paced.p50_ratio_vs_alone", "lat"),
    ("m paced: /keys/query served per s / p50 (ms)", "m.paced.q", ""),
    ("m paced: server CPU (cores)", "m.paced.server_cpu_share", ""),
    ("idle GET /versions p50 (ms)", "idle_versions_rtt_p50_ms", ""),
    ("load average at k / l / m", "loadavgs", ""),
    ("429s / errors (all)", "errs", ""),
]


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def value(res: dict, path: str) -> Any:
    if path == "k.check":
        k = res.get("k") or {}
        if "query_latency" not in k:
            return None
        return f"{k['queries_wrong_device_count']} / {k['devices_bad_signature']}"
    if path == "l.check":
        v = res.get("l") or {}
        if "keys_handed_out_twice" not in v:
            return None
        bad = v["claims_bad_signature"] + v["claims_changed"] + v["claims_unknown_key"]
        acc = "" if v["keys_accounted"] else " (count mismatch)"
        return f"{v['keys_handed_out_twice']} / {v['claims_missing']} / {bad}{acc}"
    if path == "l.hot":
        h = (res.get("l") or {}).get("hot_target")
        return f"{h['keys_handed_out']} / {h['keys_available']}" if h else None
    if path in ("m.hammer.cpu_n", "m.paced.q"):
        ph = dig(res, path.rsplit(".", 1)[0])
        if not isinstance(ph, dict):
            return None
        if path.endswith("cpu_n"):
            return f"{fmt(ph.get('server_cpu_share'))} / {ph['put'].get('n', 0)}"
        return f"{fmt(ph.get('queries_per_s'))} / {fmt(ph['query_latency'].get('p50_ms'))}"
    if path == "loadavgs":
        return " / ".join(str((res.get(s) or {}).get("loadavg") or "–").split()[0] for s in "klm")
    if path == "errs":
        n429 = sum((res.get(s) or {}).get("rate_limited_429", 0) for s in "klm")
        ne = sum((res.get(s) or {}).get("errors", 0) for s in "klm")
        ne += sum(1 for s in "klm" if "error" in (res.get(s) or {}))
        return f"{n429} / {ne}"
    return dig(res, path)


def table(runs: list[dict]) -> str:
    labels = [r.get("label") or r.get("url") for r in runs]
    head = "| metric | " + " | ".join(labels) + " |"
    sep = "| --- |" + " ---: |" * len(runs)
    if len(runs) == 2:
        head += f" {labels[1]} / {labels[0]} |"
        sep += " ---: |"
    out = [head, sep]
    names = dict((runs[0].get("args") or {}) if runs else {})
    names.setdefault("key_users", 100)
    names["ndev"] = names.get("key_users", 100) * names.get("devices", 3)
    for label, path, kind in ROWS:
        try:
            label = label.format(**names)
        except (KeyError, IndexError, ValueError):
            pass
        vals = [value(r, path) for r in runs]
        row = f"| {label} | " + " | ".join(fmt(v) for v in vals) + " |"
        if len(runs) == 2:
            x, y = vals
            ratio = ""
            if kind and isinstance(x, (int, float)) and isinstance(y, (int, float)) and x:
                ratio = f"{y / x:.2f}" if y / x < 10 else f"{y / x:.1f}"
            row += f" {ratio} |"
        out.append(row)
    return "\n".join(out)


# --------------------------------------------------------------------------- main


async def amain(args):
    deadline = now() + args.max_time
    conn = aiohttp.TCPConnector(limit=max(250, args.claimers + 50), limit_per_host=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        c = Client(session, args.url, deadline)
        ctx = KCtx(args, c)
        results = await start_results(c, ctx, args)
        fns = {"k": scenario_k, "l": scenario_l, "m": scenario_m}
        return await run_scenarios(fns, ctx, args, results)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_args(p)
    p.add_argument("--scenarios", default="k,l,m", help="comma list of k,l,m (l, m need k)")
    p.add_argument("--key-users", type=int, default=100, help="k: users with keys")
    p.add_argument("--devices", type=int, default=3, help="k: devices (logins) per user")
    p.add_argument("--otks", type=int, default=50, help="k: signed one-time keys per device")
    p.add_argument("--upload-concurrency", type=int, default=1,
                   help="k: uploads in flight (1: sequential, a clean per-request latency)")
    p.add_argument("--queries", type=int, default=30, help="k: timed /keys/query")
    p.add_argument("--query-warmup", type=int, default=3, help="k: untimed first queries")
    p.add_argument("--claimers", type=int, default=100, help="l: concurrent claimers")
    p.add_argument("--claim-rounds", type=int, default=10, help="l: timed rounds")
    p.add_argument("--claim-warmup", type=int, default=1, help="l: untimed first rounds")
    p.add_argument("--claim-gap", type=float, default=0.2, help="l: seconds between rounds")
    p.add_argument("--put-messages", type=int, default=300, help="m: measured sends per phase")
    p.add_argument("--put-warmup", type=int, default=30, help="m: unmeasured first sends")
    p.add_argument("--put-max-time", type=float, default=240.0, help="m: bound per phase")
    p.add_argument("--query-loops", type=int, default=4, help="m: concurrent /keys/query loops")
    p.add_argument("--upload-batch", type=int, default=1,
                   help="m: one-time keys per upload (each upload is followed by as many claims)")
    p.add_argument("--paced-query-rate", type=float, default=30.0,
                   help="m: a third phase with the query loops paced to this many queries/s "
                        "in all, the same offered load for every server (0: skip it)")
    p.add_argument("--paced-upload-rate", type=float, default=2.0,
                   help="m: uploads (+ claims) per s in the paced phase")
    p.add_argument("--load-warmup", type=float, default=1.0,
                   help="m: seconds the key loops run before the loaded sends start")
    p.add_argument("--send-client", choices=("raw", "aiohttp"), default="raw",
                   help="m: HTTP client for the PUTs (as bench.py e)")
    p.add_argument("--pause", type=float, default=2.0, help="seconds between scenarios")
    p.add_argument("--table", nargs="+", metavar="JSON",
                   help="only print the table of these result files (two: with a ratio)")
    a = p.parse_args(argv)
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    for s in a.scenarios:
        if s not in ("k", "l", "m"):
            p.error(f"unknown scenario {s!r}")
    if ("l" in a.scenarios or "m" in a.scenarios) and "k" not in a.scenarios:
        p.error("l and m use k's users: include k")
    return a


def main(argv=None):
    args = parse_args(argv)
    if args.table:
        runs = [json.loads(Path(f).read_text()) for f in args.table]
        print(table(runs))
        return
    run_main(args, amain, lambda results: table([results]), "klm")


if __name__ == "__main__":
    main()
