"""Federation figures, Parley<->Parley beside Synapse<->Synapse, on loopback over TLS.

For each kind, two servers of that kind run as separate processes, each with its own
PostgreSQL database, TLS from a local CA made at run time, `127.0.0.1:PORT` server names:
- join: B has `--rooms` public rooms of `--members` members (B's users); a user of A joins each
  with `POST /join/{roomId}?via=B` — timed from the request to its 200 (the join is complete
  on A then: it can read the room's state);
- latency: in the first room, a user of one server sends, a user of the other has a
  `GET /sync?since=...&timeout=30000` parked; timed from just before the PUT until that sync
  has returned the event. `--messages` each way, sequential.

Setup (registering, creating rooms, local joins) is not timed. Run from the repository root:

    .venv/bin/python bench/federation_bench.py --json bench/results/federation.json

Needs PostgreSQL (`--pg`, default postgresql://postgres@127.0.0.1:5432/postgres; databases
named `fedbench_*` are created and dropped) and, for Synapse, the venv the interop tests use
(`PARLEY_SYNAPSE_VENV`, made on first use) with psycopg2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from federation.tls import client_context  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.federation.pki import Cert, LocalCA  # noqa: E402
from tests.federation.synapse_peer import start_synapse, wait_until_up  # noqa: E402
from tests.helpers import Client, User  # noqa: E402

FILTER = json.dumps({"presence": {"not_types": ["*"]}, "account_data": {"not_types": ["*"]},
                     "room": {"ephemeral": {"not_types": ["*"]},
                              "timeline": {"limit": 10}}})


class Server:
    def __init__(self, name: str, url: str, proc: subprocess.Popen[bytes], db: str) -> None:
        self.name, self.url, self.proc, self.db = name, url, proc, db

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _wait_http(http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes],
                     timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server at {url} exited")
        try:
            async with http.get(url + "/_matrix/client/versions") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"server at {url} did not start")


def start_parley(folder: Path, cert: Cert, ca: Path, dsn: str, db: str) -> Server:
    fport, cport = free_port(), free_port()
    name = f"127.0.0.1:{fport}"
    env = {**os.environ, "PARLEY_DATA_DIR": str(folder), "PARLEY_SERVER_NAME": name,
           "PARLEY_LISTEN": f"127.0.0.1:{cport}", "PARLEY_FEDERATION_LISTEN": name,
           "PARLEY_TLS_CERT": str(cert.cert), "PARLEY_TLS_KEY": str(cert.key),
           "PARLEY_FEDERATION_CA_FILE": str(ca), "PARLEY_OUTBOUND_ALLOW": "127.0.0.0/8,::1/128",
           "PARLEY_DATABASE_URL": dsn, "PARLEY_REGISTRATION": "open",
           "PARLEY_RATE_LIMITS": "off", "PARLEY_LOG_LEVEL": "INFO"}
    proc = subprocess.Popen([sys.executable, "-m", "homeserver", "run"], env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=open(folder / "stderr.log", "wb"))  # noqa: SIM115
    return Server(name, f"http://127.0.0.1:{cport}", proc, db)


@asynccontextmanager
async def pair(kind: str, pg: str, tmp: Path, cert: Cert, ca: Path,
               http: aiohttp.ClientSession) -> AsyncIterator[tuple[Server, Server]]:
    admin = await asyncpg.connect(pg)
    servers: list[Server] = []
    try:
        for label in ("a", "b"):
            db = f"fedbench_{kind}_{label}_{secrets.token_hex(3)}"
            await admin.execute(f'CREATE DATABASE "{db}" TEMPLATE template0 ENCODING UTF8'
                                " LC_COLLATE 'C' LC_CTYPE 'C'")
            folder = tmp / f"{kind}-{label}"
            folder.mkdir()
            dsn = pg.rsplit("/", 1)[0] + "/" + db
            if kind == "parley":
                s = start_parley(folder, cert, ca, dsn, db)
            else:
                syn = await asyncio.get_running_loop().run_in_executor(
                    None, lambda f=folder, d=dsn: start_synapse(
                        f, cert, ca, {"name": "psycopg2", "args": {"dsn": d}}))
                await asyncio.get_running_loop().run_in_executor(None, wait_until_up, syn, ca)
                s = Server(syn.name, syn.url, syn.proc, db)
            servers.append(s)
            await _wait_http(http, s.url, s.proc)
        yield servers[0], servers[1]
    finally:
        for s in servers:
            s.stop()
        for s in servers:
            await admin.execute(f'DROP DATABASE IF EXISTS "{s.db}" WITH (FORCE)')
        await admin.close()


async def _sync_until(c: Client, user: User, since: str, room_id: str, marker: str) -> str:
    """Long-poll from `since` until the event whose body is `marker` arrives; next token."""
    while True:
        status, body = await c.request("GET", "/sync", token=user.access_token, params={
            "since": since, "timeout": "30000", "filter": FILTER})
        assert status == 200, body
        since = body["next_batch"]
        events = body.get("rooms", {}).get("join", {}).get(room_id, {}).get(
            "timeline", {}).get("events", [])
        if any(e.get("content", {}).get("body") == marker for e in events):
            return since


async def _latency(sender_c: Client, sender: User, recv_c: Client, recv: User, room_id: str,
                   n: int) -> list[float]:
    status, body = await recv_c.request("GET", "/sync", token=recv.access_token,
                                        params={"timeout": "0", "filter": FILTER})
    since = body["next_batch"]
    out = []
    for i in range(n + 3):  # 3 warm-up
        marker = f"bench {secrets.token_hex(6)}"
        waiter = asyncio.create_task(_sync_until(recv_c, recv, since, room_id, marker))
        await asyncio.sleep(0.05)  # the poll is parked
        t0 = time.perf_counter()
        await sender_c.send(sender, room_id, marker)
        since = await asyncio.wait_for(waiter, 60)
        if i >= 3:
            out.append((time.perf_counter() - t0) * 1000)
    return out


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"n": len(xs), "p50": round(statistics.median(xs), 1),
            "p90": round(xs[int(0.9 * (len(xs) - 1))], 1),
            "max": round(xs[-1], 1), "mean": round(statistics.fmean(xs), 1)}


async def run_kind(kind: str, args: argparse.Namespace, tmp: Path, cert: Cert,
                   ca: Path) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(ssl=client_context(ca), limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http, \
            pair(kind, args.pg, tmp, cert, ca, http) as (a, b):
        ca_, cb = Client(a.url, http), Client(b.url, http)
        members = [await cb.register("m" + secrets.token_hex(4)) for _ in range(args.members)]
        rooms = []
        for _ in range(args.rooms):
            room_id = await cb.create_room(members[0], preset="public_chat")
            for m in members[1:]:
                await cb.join(m, room_id)
            rooms.append(room_id)
        joiner = await ca_.register("j" + secrets.token_hex(4))
        joins = []
        for room_id in rooms:
            t0 = time.perf_counter()
            status, body = await ca_.request("POST", f"/join/{room_id}", {},
                                             joiner.access_token, params={"via": b.name})
            joins.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                for label in ("a", "b"):
                    log = tmp / f"{kind}-{label}" / "stderr.log"
                    if log.exists():
                        print(f"--- {kind}-{label}", log.read_text()[-3000:], file=sys.stderr)
                raise RuntimeError(f"join failed: {status} {body}")
        b_to_a = await _latency(cb, members[0], ca_, joiner, rooms[0], args.messages)
        a_to_b = await _latency(ca_, joiner, cb, members[0], rooms[0], args.messages)
        return {"kind": kind, "members": args.members, "join_ms": [round(j, 1) for j in joins],
                "join": _stats(joins), "latency_b_to_a": _stats(b_to_a),
                "latency_a_to_b": _stats(a_to_b)}


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--kinds", default="parley,synapse")
    p.add_argument("--members", type=int, default=100)
    p.add_argument("--rooms", type=int, default=3)
    p.add_argument("--messages", type=int, default=30)
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="fedbench-") as d:
        tmp = Path(d)
        local_ca = LocalCA(tmp)
        cert = local_ca.issue("server")
        for kind in args.kinds.split(","):
            t0 = time.monotonic()
            r = await run_kind(kind, args, tmp, cert, local_ca.ca_file)
            r["wall_s"] = round(time.monotonic() - t0, 1)
            print(json.dumps(r), flush=True)
            results.append(r)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
