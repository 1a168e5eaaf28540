"""Adversarial sync consistency: lost or duplicated deliveries under concurrency.

Ten users in three rooms sync while five senders write ~300 messages, the room creator changes
names and topics, one user changes its displayname and two users leave and rejoin. Clients are:

- long-polls (some with a timeline limit of 3, so timelines are `limited` and the client backfills
  with /messages from `prev_batch`), which now and then "lose" a response and repeat their since;
- WebSocket syncs that disconnect at random, sometimes dropping the batch they just received, and
  resume with their last next_batch;
- a second device of one user, syncing concurrently with the first.

At the end, for every device and room, the events seen (sync timelines plus backfill) must be
exactly the events /messages shows the user, once each and in the same order; the state the client
rebuilt from the `state` sections and timeline state events must equal GET /rooms/{id}/state; every
event must have reached every syncing member's device promptly (a missed wake-up shows as a delay
up to the long-poll timeout); and the to-device messages sent concurrently to `*` must arrive
exactly once per device, in each sender's order. Everything random is seeded; loops are bounded.

One tolerance: the first `join` entry after the client saw the room in `leave` is rendered like a
new join (last N events, `limited`, full state, as Synapse does), so it may repeat events from
before the leave; only there are repeats skipped rather than reported.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.conftest import Server
from tests.helpers import Client, User

SEED = 20240611
N_USERS = 10
# user index -> rooms joined (users 3, 4, 5, 8, 9 are in one room only: they are woken by that
# room's events alone, which is where a wake-up lost to out-of-order commits would show).
ROOMS_OF = {0: [0, 1, 2], 1: [0, 1, 2], 2: [0, 1], 3: [0], 4: [1], 5: [2], 6: [0, 2],
            7: [1, 2], 8: [0], 9: [1]}
SENDERS = [0, 1, 2, 6, 7]
TOTAL_MESSAGES = 300
ROOM_WEIGHTS = [0.7, 0.2, 0.1]  # room 0 gets > 200 events: past the in-memory window
LIMITED = {2, 5, 7, 9}  # long-poll users with a timeline limit of 3
WEBSOCKET = {3, 4}
LEAVERS = [(8, 0), (5, 2)]  # (user, room): leaves and rejoins twice (not senders)
TO_DEVICE = [(2, 1), (7, 1), (2, 3)]  # (sender, recipient): 25 messages each to "*"
TO_DEVICE_N = 25
MAX_LATENCY_S = 3.0  # long polls wait 6-9 s: a lost wake-up takes longer than this
SETTLE_S = 4.0
BURSTS = 6
BURST_DEADLINE_S = 2.5


@dataclass
class RoomView:
    ids: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    state: dict[tuple[str, str], str] = field(default_factory=dict)
    left: bool = False


@dataclass
class Device:
    name: str
    user: User
    index: int
    limit: int | None
    views: dict[str, RoomView] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seen_at: dict[str, float] = field(default_factory=dict)
    to_device: list[dict[str, Any]] = field(default_factory=list)
    syncs: int = 0

    def filter_param(self) -> dict[str, str]:
        if self.limit is None:
            return {}
        return {"filter": json.dumps({"room": {"timeline": {"limit": self.limit}}})}


class Harness:
    def __init__(self, server: Server, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.c = Client(server.url, session)
        self.session = session
        self.sent_at: dict[str, float] = {}

    async def page_back(self, user: User, room_id: str, start: str | None,
                        stop_at: set[str]) -> tuple[list[dict[str, Any]], str | None]:
        """Events before `start` (newest first) down to, not including, the first one in
        `stop_at` (which is returned too, None if pagination reached the room's start)."""
        out: list[dict[str, Any]] = []
        frm = start
        for _ in range(200):
            params = {"dir": "b", "limit": "37"}
            if frm is not None:
                params["from"] = frm
            status, body = await self.c.request("GET", f"/rooms/{room_id}/messages",
                                                token=user.access_token, params=params)
            assert status == 200, body
            for ev in body["chunk"]:
                if ev["event_id"] in stop_at:
                    return out, ev["event_id"]
                out.append(ev)
            if "end" not in body:
                return out, None
            frm = body["end"]
        raise AssertionError("pagination did not end")

    async def apply_sync(self, dev: Device, body: dict[str, Any]) -> None:
        now = time.monotonic()
        dev.syncs += 1
        rooms = body.get("rooms", {})
        for section in ("join", "leave"):
            for room_id, rb in rooms.get(section, {}).items():
                view = dev.views.setdefault(room_id, RoomView())
                tl = rb.get("timeline", {})
                events = tl.get("events", [])
                # A room joined again after the client saw it in `leave` is rendered like a new
                # join (as Synapse does): its timeline may repeat events from before the leave.
                rejoined, view.left = view.left and section == "join", section == "leave"
                if tl.get("limited"):
                    last = view.ids[-1] if view.ids else None
                    older, hit = await self.page_back(dev.user, room_id, tl["prev_batch"],
                                                      view.seen)
                    if hit != last and not rejoined:
                        dev.errors.append(f"{dev.name}: timeline in {room_id} overlaps what "
                                          f"was delivered (backfill met {hit}, not {last})")
                    events = list(reversed(older)) + events
                for ev in events:
                    eid = ev["event_id"]
                    if eid in view.seen and rejoined:
                        continue
                    if eid in view.seen:
                        dev.errors.append(f"{dev.name}: duplicate {eid} ({ev['type']}) in "
                                          f"{room_id} ({section}, sync #{dev.syncs})")
                        continue
                    view.seen.add(eid)
                    view.ids.append(eid)
                    dev.seen_at.setdefault(eid, now)
                for ev in rb.get("state", {}).get("events", []):
                    view.state[(ev["type"], ev["state_key"])] = ev["event_id"]
                for ev in tl.get("events", []):
                    if "state_key" in ev:
                        view.state[(ev["type"], ev["state_key"])] = ev["event_id"]
        dev.to_device.extend(body.get("to_device", {}).get("events", []))

    # -- clients ------------------------------------------------------------------------------

    async def long_poll(self, dev: Device, rng: random.Random, stop: asyncio.Event) -> None:
        since: str | None = None
        timeout = rng.randint(6000, 9000)
        while not stop.is_set():
            body = await self.c.sync(dev.user, since, 0 if since is None else timeout,
                                     **dev.filter_param())
            if since is not None and rng.random() < 0.15:
                # The response was lost in transit: the client asks again with the same since.
                body = await self.c.sync(dev.user, since, 0, **dev.filter_param())
            await self.apply_sync(dev, body)
            since = body["next_batch"]

    async def websocket(self, dev: Device, rng: random.Random, stop: asyncio.Event) -> None:
        since: str | None = None
        url = self.server.url + "/_matrix/client/v3/sync"
        headers = {"Authorization": f"Bearer {dev.user.access_token}"}
        while not stop.is_set():
            params = dev.filter_param()
            if since is not None:
                params["since"] = since
            async with self.session.ws_connect(url, params=params, headers=headers) as ws:
                deadline = time.monotonic() + rng.uniform(0.2, 1.5)
                while True:
                    try:
                        msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
                    except TimeoutError:
                        break  # random disconnect
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        dev.errors.append(f"{dev.name}: socket closed {msg.type} {msg.data}")
                        break
                    frame = json.loads(msg.data)
                    assert frame["type"] == "sync", frame
                    if rng.random() < 0.1:
                        break  # the batch is lost with the connection: resume from old since
                    await self.apply_sync(dev, frame["body"])
                    since = frame["body"]["next_batch"]
                    if rng.random() < 0.1:
                        break

    # -- writers ------------------------------------------------------------------------------

    async def send(self, user: User, room_id: str, body: str) -> None:
        eid = await self.c.send(user, room_id, body)
        self.sent_at[eid] = time.monotonic()

    async def put_state(self, user: User, room_id: str, etype: str, content: Any) -> None:
        status, data = await self.c.request("PUT", f"/rooms/{room_id}/state/{etype}/", content,
                                            user.access_token)
        assert status == 200, data
        self.sent_at[data["event_id"]] = time.monotonic()


async def test_sync_consistency_under_concurrency(server: Server) -> None:
    t_start = time.monotonic()
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0)) as session:
        h = Harness(server, session)
        c = h.c
        tag = secrets.token_hex(3)
        users = [await c.register(f"sc{tag}u{i}") for i in range(N_USERS)]
        rooms = []
        for r in range(3):
            initial = []
            if r == 2:
                initial = [{"type": "m.room.history_visibility", "state_key": "",
                            "content": {"history_visibility": "joined"}}]
            rooms.append(await c.create_room(users[0], preset="public_chat", name=f"room {r}",
                                             initial_state=initial))
        for i, rs in ROOMS_OF.items():
            for r in rs:
                if i != 0:
                    await c.join(users[i], rooms[r])
        # A second device for user 1.
        status, login = await c.request("POST", "/login", {
            "type": "m.login.password", "password": "pw-secret-1",
            "identifier": {"type": "m.id.user", "user": users[1].user_id}})
        assert status == 200, login
        u1b = User(login["user_id"], login["access_token"], login["device_id"])

        devices = [Device(f"u{i}", users[i], i, 3 if i in LIMITED else None)
                   for i in range(N_USERS)]
        devices.append(Device("u1b", u1b, 1, None))
        stop = asyncio.Event()
        clients = []
        for k, dev in enumerate(devices):
            crng = random.Random(SEED * 100 + k)
            run = h.websocket if dev.index in WEBSOCKET and dev.name != "u1b" else h.long_poll
            clients.append(asyncio.create_task(run(dev, crng, stop), name=dev.name))
        # Let every client finish its initial sync before the traffic starts.
        for _ in range(200):
            if all(d.syncs for d in devices):
                break
            await asyncio.sleep(0.02)

        async def sender(i: int, count: int, srng: random.Random) -> None:
            mine = ROOMS_OF[i]
            weights = [ROOM_WEIGHTS[r] for r in mine]
            for n in range(count):
                r = srng.choices(mine, weights)[0]
                await h.send(users[i], rooms[r], f"m{i}-{n}")
                if srng.random() < 0.03:
                    await asyncio.sleep(0.4)  # a quiet moment: a missed wake-up is not covered
                else:
                    await asyncio.sleep(srng.uniform(0, 0.02))

        async def stater(srng: random.Random) -> None:
            for n in range(24):
                r = srng.randrange(3)
                if n % 2:
                    await h.put_state(users[0], rooms[r], "m.room.name", {"name": f"n{n}"})
                else:
                    await h.put_state(users[0], rooms[r], "m.room.topic", {"topic": f"t{n}"})
                await asyncio.sleep(srng.uniform(0.02, 0.15))
            status, data = await c.request(
                "PUT", f"/profile/{users[2].user_id}/displayname", {"displayname": "Two"},
                users[2].access_token)
            assert status == 200, data

        async def leaver(i: int, r: int, srng: random.Random) -> None:
            for _ in range(2):
                await asyncio.sleep(srng.uniform(0.3, 1.0))
                status, data = await c.request("POST", f"/rooms/{rooms[r]}/leave", {},
                                               users[i].access_token)
                assert status == 200, data
                await asyncio.sleep(srng.uniform(0.2, 0.8))
                await c.join(users[i], rooms[r])

        async def to_device(i: int, j: int) -> None:
            for n in range(TO_DEVICE_N):
                status, data = await c.request(
                    "PUT", f"/sendToDevice/org.parley.test/{secrets.token_hex(6)}",
                    {"messages": {users[j].user_id: {"*": {"seq": n, "from": i}}}},
                    users[i].access_token)
                assert status == 200, data
                await asyncio.sleep(0.01)

        per_sender = TOTAL_MESSAGES // len(SENDERS)
        writers = [sender(i, per_sender, random.Random(SEED + i)) for i in SENDERS]
        writers.append(stater(random.Random(SEED + 100)))
        writers += [leaver(i, r, random.Random(SEED + 200 + i)) for i, r in LEAVERS]
        writers += [to_device(i, j) for i, j in TO_DEVICE]
        try:
            await asyncio.gather(*writers)
        except BaseException:
            for t in clients:
                t.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
            raise
        # Bursts: many messages to room 0 (one big group commit) racing one message to each of
        # rooms 1 and 2, whose positions may commit first. Every member's device must see each
        # burst promptly, though nothing else happens afterwards to wake a missed one.
        burst_problems: list[str] = []
        brng = random.Random(SEED + 300)
        for n in range(BURSTS):
            ids: list[tuple[int, str]] = []

            async def one(i: int, r: int, text: str, ids: list[tuple[int, str]] = ids) -> None:
                ids.append((r, await c.send(users[i], rooms[r], text)))

            jobs = [one(brng.choice([0, 1, 2, 6]), 0, f"b{n}-{k}") for k in range(15)]
            jobs += [one(brng.choice([1, 7]), 1, f"b{n}-r1"), one(brng.choice([0, 7]), 2,
                                                                  f"b{n}-r2")]
            brng.shuffle(jobs)
            await asyncio.gather(*jobs)
            t_burst = time.monotonic()

            def lagging(ids: list[tuple[int, str]] = ids) -> list[str]:
                return [f"{d.name} lacks {eid} (room {r})" for d in devices for r, eid in ids
                        if r in ROOMS_OF[d.index]
                        and eid not in d.views.get(rooms[r], RoomView()).seen]

            while lagging() and time.monotonic() - t_burst < BURST_DEADLINE_S:
                await asyncio.sleep(0.02)
            burst_problems += [f"burst {n}: {p} after {BURST_DEADLINE_S}s" for p in lagging()]
        t_sent = time.monotonic()

        # What each user's /messages shows, oldest first: the expected timeline.
        truth: dict[tuple[int, str], list[str]] = {}
        for i, rs in ROOMS_OF.items():
            for r in rs:
                evs, _ = await h.page_back(users[i], rooms[r], None, set())
                truth[(i, rooms[r])] = [e["event_id"] for e in reversed(evs)]
        state_truth: dict[str, dict[tuple[str, str], str]] = {}
        for room_id in rooms:
            status, st = await c.request("GET", f"/rooms/{room_id}/state",
                                         token=users[0].access_token)
            assert status == 200, st
            state_truth[room_id] = {(e["type"], e["state_key"]): e["event_id"] for e in st}

        def caught_up(dev: Device) -> bool:
            for r in ROOMS_OF[dev.index]:
                view = dev.views.get(rooms[r])
                if view is None or view.ids != truth[(dev.index, rooms[r])]:
                    return False
            want = sum(TO_DEVICE_N for _, j in TO_DEVICE if j == dev.index)
            return len(dev.to_device) >= want

        while time.monotonic() - t_sent < SETTLE_S and not all(map(caught_up, devices)):
            if any(t.done() for t in clients):
                break
            await asyncio.sleep(0.05)
        settled = time.monotonic() - t_sent
        stop.set()
        for t in clients:
            t.cancel()
        outcomes = await asyncio.gather(*clients, return_exceptions=True)
        for t, o in zip(clients, outcomes, strict=True):
            if not isinstance(o, asyncio.CancelledError):
                raise AssertionError(f"client {t.get_name()} ended early: {o!r}")

    problems: list[str] = list(burst_problems)
    for dev in devices:
        problems += dev.errors
        for r in ROOMS_OF[dev.index]:
            room_id = rooms[r]
            view = dev.views.get(room_id, RoomView())
            want = truth[(dev.index, room_id)]
            if view.ids != want:
                missing = [e for e in want if e not in view.seen]
                extra = [e for e in view.ids if e not in set(want)]
                problems.append(
                    f"{dev.name} room {r}: {len(view.ids)} events seen, {len(want)} expected; "
                    f"missing {len(missing)} {missing[:3]}, unexpected {len(extra)} {extra[:3]}, "
                    f"same set but order differs: {not missing and not extra}")
            if view.state != state_truth[room_id]:
                diff = {k for k in set(view.state) | set(state_truth[room_id])
                        if view.state.get(k) != state_truth[room_id].get(k)}
                problems.append(f"{dev.name} room {r}: state differs (client, server): " + str(
                    [(k, view.state.get(k), state_truth[room_id].get(k)) for k in sorted(diff)]))
            late = [(dev.seen_at[e] - h.sent_at[e], e) for e in want
                    if e in h.sent_at and e in dev.seen_at
                    and dev.seen_at[e] - h.sent_at[e] > MAX_LATENCY_S]
            if late:
                problems.append(f"{dev.name} room {r}: {len(late)} events delivered late, "
                                f"worst {max(late)[0]:.2f}s")
        got: dict[int, list[int]] = {}
        for m in dev.to_device:
            assert m["type"] == "org.parley.test" and m["sender"] == users[m["content"]["from"]
                                                                           ].user_id
            got.setdefault(m["content"]["from"], []).append(m["content"]["seq"])
        for i, j in TO_DEVICE:
            if j == dev.index and got.get(i) != list(range(TO_DEVICE_N)):
                problems.append(f"{dev.name}: to-device from u{i} arrived as {got.get(i)}")
    assert not problems, "\n".join(
        [f"settled after {settled:.2f}s of {SETTLE_S}s"] + problems[:40])
    assert time.monotonic() - t_start < 25
