"""PresenceService: heartbeats in, m.presence events out, one sweep task for every timer.

State lives in memory (one `UserPresence` per user who has ever had a presence), with the rules in
`homeserver/presence/timers.py`. Design points, and where they come from:

- **Heartbeats are cheap.** Each /sync request and each WebSocket ping calls `heartbeat`: it
  records the device's `Beat`, re-evaluates the pure state function over that user's few devices
  and moves the user's single deadline in a `TimerWheel`. It touches the database only when the
  state changes, and then only by marking the user dirty.
- **No task per user.** One background task (`start`/`stop`) wakes every `sweep_interval_ms`,
  pops the expired wheel buckets, re-evaluates only those users, and writes every dirty user in
  one statement (`PresenceStore.upsert_many`). The wheel makes the sweep cost O(expired users),
  not O(all users): 100k idle users cost nothing per tick.
- **A stream with coalescing.** Each visible change (state or status_msg) takes the next position
  of the in-memory presence stream; `_changes` keeps one entry per user ordered by position, so
  many changes of one user between two syncs yield one event (its current state). The position is
  persisted with the row; after a restart the stream resumes from the highest stored position
  (sync tokens from the future are capped by `SyncToken.capped`).
- **Exactly the users who share a room.** A change wakes the user and the joined members of the
  user's joined rooms (`Notifier.notify_users`), and `for_user` shows a change only to the user
  and to users sharing a joined room with them. `last_active_ago` alone never makes an event
  (Synapse's `currently_active` rule: while online, clients treat the user as active).
- **PUT /presence.** Sets the user's state and status_msg; `unavailable`/`offline` outrank the
  devices until the next online activity (a sync with `set_presence=online` or PUT online), as the
  spec's "Idle timeout" says. `set_presence=offline` on /sync does not count as activity at all.
- **Switched off** (`presence.enabled: false`): as Synapse does, heartbeats and PUT are accepted
  and ignored, sync carries no presence, and GET /presence answers `{"presence": "offline"}` for
  anyone (Synapse `PresenceStatusRestServlet`), without the shared-room check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from homeserver.errors import Codes, MatrixError
from homeserver.presence.store import PresenceRow, PresenceStore
from homeserver.presence.timers import (
    STATES,
    Beat,
    PresenceState,
    TimerWheel,
    Timing,
    evaluate,
    live_beats,
)
from homeserver.rooms.members import MembershipIndex
from homeserver.rooms.state import RoomRegistry
from homeserver.storage.database import Database
from homeserver.storage.streams import Stream
from homeserver.streams.notifier import Notifier
from homeserver.types import JsonDict

log = logging.getLogger(__name__)

API_DEVICE = ""  # the pseudo device of PUT /presence (real device ids are never empty)
INITIAL_SYNC_LIMIT = 500  # co-members' presence on an initial sync, newest changes first
TOUCH_FLUSH_MS = 60_000  # how often last_active_ts alone (no state change) is written

# (user_id, content of the m.presence event): a local user's visible change, for federation.
PresenceHook = Callable[[str, JsonDict], None]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class UserPresence:
    presence: str = PresenceState.OFFLINE.value
    explicit: str | None = None
    status_msg: str | None = None
    last_active_ts: int | None = None
    stream_id: int = 0
    beats: dict[str, Beat] = field(default_factory=dict)


class PresenceService:
    """The presence sync source (`current`, `for_user`) and a `Background` service."""

    def __init__(self, db: Database, store: PresenceStore, members: MembershipIndex,
                 rooms: RoomRegistry, notifier: Notifier, enabled: bool,
                 idle_after_ms: int = 30_000, offline_after_ms: int = 300_000,
                 sweep_interval_ms: int = 1_000, stream: Stream | None = None) -> None:
        self.enabled = enabled
        # Positions from a sequence, so tokens from any process sharing the database compare.
        self._stream = stream or Stream("presence", "presence_seq", None, 0,
                                        notifier.notify_users)
        self._db = db
        self._store = store
        self._members = members
        self._rooms = rooms
        self._notifier = notifier
        self._timing = Timing(idle_after_ms, max(offline_after_ms, idle_after_ms))
        self._interval = max(1, sweep_interval_ms)
        self._users: dict[str, UserPresence] = {}
        self._changes: OrderedDict[str, int] = OrderedDict()  # user -> stream_id, ascending
        self._wheel = TimerWheel(self._interval)
        self._dirty: set[str] = set()  # state changed: written at the next sweep
        self._touched: set[str] = set()  # only last_active_ts moved: written now and then
        self._last_touch_flush = 0
        self._task: asyncio.Task[None] | None = None
        self._loaded = False
        self.on_local: list[PresenceHook] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if not self.enabled:
            return
        await self._load()
        self._task = asyncio.create_task(self._run(), name="presence-sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.enabled and self._loaded:
            try:
                await self._flush(include_touched=True)
            except Exception:
                log.exception("presence: final write failed")

    async def _load(self) -> None:
        async with self._db.connection() as conn:
            rows = await self._store.load_all(conn)
        now = now_ms()
        for r in rows:
            if r.user_id in self._users:
                continue  # a heartbeat before start() wins
            u = UserPresence(r.presence, r.explicit, r.status_msg, r.last_active_ts, r.stream_id)
            if r.presence != PresenceState.OFFLINE:
                # The devices' sockets did not survive the restart: let the user age out unless
                # a device comes back (a heartbeat replaces this beat's effect).
                u.beats[API_DEVICE] = Beat(now, 0, r.presence)
                self._wheel.schedule(r.user_id, evaluate(u.beats, now, u.explicit,
                                                         self._timing)[1])
            self._users[r.user_id] = u
            self._changes[r.user_id] = r.stream_id
        self._loaded = True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval / 1000)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not self._db.outage(e):
                    log.exception("presence sweep failed")

    async def sweep(self, now: int | None = None) -> None:
        """Re-evaluate the users whose deadline passed, then write the dirty rows (one batch)."""
        now = now_ms() if now is None else now
        for user_id in self._wheel.due(now):
            u = self._users.get(user_id)
            if u is not None:
                await self._reevaluate(user_id, u, now)
        touched = now - self._last_touch_flush >= TOUCH_FLUSH_MS
        await self._flush(include_touched=touched)
        if touched:
            self._last_touch_flush = now

    async def _flush(self, include_touched: bool) -> None:
        users = self._dirty | self._touched if include_touched else set(self._dirty)
        if not users:
            return
        self._dirty -= users
        self._touched -= users
        rows = []
        for user_id in users:
            u = self._users.get(user_id)
            if u is not None:
                rows.append(PresenceRow(user_id, u.presence, u.explicit, u.status_msg,
                                        u.last_active_ts, u.stream_id))
        try:
            async with self._db.transaction() as conn:
                await self._store.upsert_many(conn, rows)
        except Exception:
            self._dirty |= users  # try again at the next sweep
            raise

    # ------------------------------------------------------------------ writes

    async def heartbeat(self, user_id: str, device_id: str, set_presence: str = "online",
                        grace_ms: int = 0) -> None:
        """A sign of life from a device: a /sync request (`grace_ms` = its timeout, so a parked
        long-poll is not idleness) or a WebSocket ping. `set_presence=unavailable` marks the
        device idle; `offline` (spec: "not marked as being online") leaves presence untouched."""
        if not self.enabled or set_presence not in (PresenceState.ONLINE,
                                                    PresenceState.UNAVAILABLE):
            return
        now = now_ms()
        u = self._users.get(user_id)
        if u is None:
            u = self._users[user_id] = UserPresence()
        u.beats[device_id] = Beat(now, grace_ms, set_presence)
        if set_presence == PresenceState.ONLINE:
            u.last_active_ts = now
            u.explicit = None
            self._touched.add(user_id)
        await self._reevaluate(user_id, u, now)

    async def note_activity(self, user_id: str, device_id: str) -> None:
        """The user did something (sent an event): spec "last active" resets, and a user who
        went unavailable (idle, or by PUT) is online again (Synapse's bump_presence_active_time).
        An explicit offline ("invisible") stays. O(devices of the user); the database is only
        touched later, by the sweep, and the audience is looked up only if the state changes."""
        if not self.enabled:
            return
        now = now_ms()
        u = self._users.get(user_id)
        if u is None:
            u = self._users[user_id] = UserPresence()
        u.last_active_ts = now
        self._touched.add(user_id)
        old = u.beats.get(device_id)  # keep the grace of a parked long-poll
        u.beats[device_id] = Beat(now, max(0, old.seen_until - now) if old else 0,
                                  PresenceState.ONLINE.value)
        if u.explicit == PresenceState.UNAVAILABLE:
            u.explicit = None
        await self._reevaluate(user_id, u, now)

    async def set_status(self, user_id: str, presence: str, status_msg: str | None) -> None:
        """PUT /presence/{userId}/status for the user themselves (the caller checks that)."""
        if presence not in STATES:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid presence state {presence!r}")
        if not self.enabled:
            return
        now = now_ms()
        u = self._users.get(user_id)
        if u is None:
            u = self._users[user_id] = UserPresence()
        u.last_active_ts = now  # spec: setting the status updates the activity time
        self._touched.add(user_id)
        if presence == PresenceState.OFFLINE:
            u.explicit = PresenceState.OFFLINE.value
        else:
            u.beats[API_DEVICE] = Beat(now, 0, presence)
            u.explicit = None if presence == PresenceState.ONLINE else presence
        status_changed = status_msg != u.status_msg
        u.status_msg = status_msg
        await self._reevaluate(user_id, u, now, force=status_changed)

    async def _reevaluate(self, user_id: str, u: UserPresence, now: int,
                          force: bool = False) -> None:
        u.beats = live_beats(u.beats, now, self._timing)
        state, deadline = evaluate(u.beats, now, u.explicit, self._timing)
        if deadline is None:
            u.explicit = None  # every device has lapsed: the next session starts afresh
        self._wheel.schedule(user_id, deadline)
        if state == u.presence and not force:
            return
        u.presence = state
        pos = await self._stream.allocate()
        u.stream_id = pos
        self._changes[user_id] = pos
        self._changes.move_to_end(user_id)
        self._dirty.add(user_id)
        # Visible at once (the change is in memory, nothing to commit); the audience, worked
        # out next, is woken through the stream so it never runs ahead of `current`.
        self._stream.finish(pos)
        self._stream.wake_at(pos, await self._audience(user_id))
        for hook in self.on_local:
            hook(user_id, self._content(u, now))

    async def apply_remote(self, user_id: str, presence: str, status_msg: str | None,
                           last_active_ago: int | None) -> None:
        """An m.presence update from the user's server (the caller checked the origin). Kept
        in memory only (the presence table holds local users); no timers run for it, its
        server says when it changes."""
        if not self.enabled or presence not in STATES:
            return
        now = now_ms()
        u = self._users.get(user_id)
        if u is None:
            u = self._users[user_id] = UserPresence()
        u.last_active_ts = None if last_active_ago is None else now - max(0, last_active_ago)
        if (u.presence, u.status_msg) == (presence, status_msg) and u.stream_id:
            return
        u.presence, u.status_msg = presence, status_msg
        pos = await self._stream.allocate()
        u.stream_id = pos
        self._changes[user_id] = pos
        self._changes.move_to_end(user_id)
        self._stream.finish(pos)
        self._stream.wake_at(pos, await self._audience(user_id))

    # ------------------------------------------------------------------ reads

    def current(self) -> int:
        return self._stream.current

    async def get(self, observer: str, user_id: str) -> JsonDict:
        """The GET /presence/{userId}/status body. 403 M_FORBIDDEN unless the observer is the
        user or shares a joined room with them (Synapse's rule; the spec allows 403 or 404)."""
        if not self.enabled:
            return {"presence": PresenceState.OFFLINE.value}
        if observer != user_id and not await self._share_room(observer, user_id):
            raise MatrixError(403, Codes.FORBIDDEN, "You are not allowed to see their presence")
        u = self._users.get(user_id)
        if u is None:
            return {"presence": PresenceState.OFFLINE.value}
        return self._content(u, now_ms())

    async def for_user(self, user_id: str, since: int | None, upto: int,
                       newly_shared: Collection[str] = ()) -> list[JsonDict]:
        """m.presence of the user and of users sharing a joined room with them: those changed in
        (since, upto], or on an initial sync (`since` None) the current non-offline ones (at
        most INITIAL_SYNC_LIMIT, newest first). On an incremental sync, also the current
        presence of `newly_shared`, users who came to share a room with the user in that
        window (SyTest "Newly joined room includes presence in incremental sync")."""
        if since is not None and newly_shared and self.enabled:
            out = await self._changed_for_user(user_id, since, upto)
            seen = {e["sender"] for e in out}
            now = now_ms()
            for uid in sorted(set(newly_shared) - seen):
                u = self._users.get(uid) or UserPresence()  # never seen: offline, as Synapse
                if u.stream_id <= upto:
                    out.append(self._event(uid, u, now))
            return out
        return await self._changed_for_user(user_id, since, upto)

    def for_users(self, user_ids: Collection[str], since: int, upto: int) -> list[JsonDict]:
        """m.presence of these users changed in (since, upto], oldest change first: what a
        room peeker sees of the room's members (homeserver/sync/peek.py)."""
        if not self.enabled or since >= upto or not user_ids:
            return []
        wanted = set(user_ids)
        changed: list[str] = []
        for uid, sid in reversed(self._changes.items()):  # newest first
            if sid <= since:
                break
            if sid <= upto and uid in wanted:
                changed.append(uid)
        now = now_ms()
        return [self._event(uid, self._users[uid], now) for uid in reversed(changed)
                if uid in self._users]

    async def _changed_for_user(self, user_id: str, since: int | None,
                                upto: int) -> list[JsonDict]:
        if not self.enabled:
            return []
        now = now_ms()
        if since is None:
            audience = await self._co_members(user_id)
            picked = sorted(
                ((u.stream_id, uid) for uid in audience
                 if (u := self._users.get(uid)) is not None and 0 < u.stream_id <= upto
                 and (u.presence != PresenceState.OFFLINE or u.status_msg is not None)),
                reverse=True)[:INITIAL_SYNC_LIMIT]
            return [self._event(uid, self._users[uid], now) for _, uid in reversed(picked)]
        if since >= upto:
            return []
        changed: list[str] = []
        for uid, sid in reversed(self._changes.items()):  # newest first; no await in here
            if sid <= since:
                break
            if sid <= upto:
                changed.append(uid)
        if not changed:
            return []
        mine = set(await self._members.joined_rooms(user_id))
        out: list[JsonDict] = []
        for uid in reversed(changed):
            if uid != user_id and mine.isdisjoint(await self._members.joined_rooms(uid)):
                continue
            u = self._users.get(uid)
            if u is not None:
                out.append(self._event(uid, u, now))
        return out

    def _event(self, user_id: str, u: UserPresence, now: int) -> JsonDict:
        return {"type": "m.presence", "sender": user_id, "content": self._content(u, now)}

    @staticmethod
    def _content(u: UserPresence, now: int) -> JsonDict:
        content: JsonDict = {"presence": u.presence,
                             "currently_active": u.presence == PresenceState.ONLINE}
        if u.last_active_ts is not None:
            content["last_active_ago"] = max(0, now - u.last_active_ts)
        if u.status_msg is not None:
            content["status_msg"] = u.status_msg
        return content

    async def _share_room(self, a: str, b: str) -> bool:
        mine = set(await self._members.joined_rooms(a))
        return not mine.isdisjoint(await self._members.joined_rooms(b))

    async def _co_members(self, user_id: str) -> set[str]:
        out = {user_id}
        for room_id in await self._members.joined_rooms(user_id):
            room = await self._rooms.get(room_id)
            if room is not None:
                out.update(room.joined_members())
        return out

    async def _audience(self, user_id: str) -> set[str]:
        """Whom a change of `user_id` concerns: the user and everyone sharing a joined room."""
        return await self._co_members(user_id)
