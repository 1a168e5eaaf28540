"""What a server admin does to rooms (Synapse's rooms admin API and purge history API): list
and inspect rooms, block one, make a user its admin, delete it, purge its old history.

Deleting a room and purging history are background jobs (their status is in `admin_jobs`, so
any process can answer the status endpoints). Both take the room's writer lock for the
database change, so no event is persisted into the room meanwhile, and then drop what the
in-memory caches hold of it, beside the write as docs/engine.md asks: the room's `RoomData`
(current state, recent events, which sync reads), the purged events in the `EventCache`, and
for a deleted room the members' entries in the `MembershipIndex`. The next read reloads from
the database, so sync, /messages and state agree with what is left. Another process sharing
the database keeps its own caches until it next reloads the room (see docs/admin.md).

A history purge deletes non-state events only: state events are what the room's state at
every remaining event (and its current state) is made of, so the room's state stays correct.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from homeserver.admin.store import AdminStore
from homeserver.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from homeserver.events.auth import user_power_level
from homeserver.rooms.members import MembershipIndex
from homeserver.rooms.reader import RoomReader
from homeserver.rooms.service import RoomService
from homeserver.rooms.state import EventCache, RoomRegistry
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester, is_valid_room_id

log = logging.getLogger(__name__)

DEFAULT_ROOM_NAME = "Content Violation Notification"
DEFAULT_MESSAGE = ("Sharing illegal content on this server is not permitted and rooms in "
                   "violation will be blocked.")


def _now() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class RoomCaches:
    """The in-memory copies of room data a purge must drop."""

    registry: RoomRegistry
    events: EventCache
    members: MembershipIndex
    # Drops the unread counts kept in memory for a room (NotificationService.forget_room).
    counts: Callable[[str], None] | None = None


def room_json(r: Any, full: bool = False) -> JsonDict:
    d: JsonDict = {
        "room_id": r["room_id"], "name": r["name"], "canonical_alias": r["canonical_alias"],
        "joined_members": int(r["joined_members"]),
        "joined_local_members": int(r["joined_local_members"]), "version": r["room_version"],
        "creator": r["creator"], "encryption": r["encryption"],
        "federatable": r["federatable"] != "false", "public": r["is_public"],
        "join_rules": r["join_rules"], "guest_access": r["guest_access"],
        "history_visibility": r["history_visibility"], "state_events": int(r["state_events"]),
        "room_type": r["room_type"],
    }
    if full:
        d.update({"topic": r["topic"], "avatar": r["avatar"]})
    return d


class RoomAdminService:
    def __init__(self, db: Database, store: AdminStore, rooms: RoomService, reader: RoomReader,
                 caches: RoomCaches, instance: str = "main") -> None:
        self._instance = instance
        self._db = db
        self._store = store
        self._rooms = rooms
        self._reader = reader
        self._caches = caches
        self._server_name = rooms.server_name
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        async with self._db.connection() as conn:
            await self._store.fail_unfinished_jobs(conn, self._instance)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------------ reads

    def _local_pattern(self) -> str:
        return "%:" + self._server_name.replace("\\", "\\\\").replace("%", "\\%").replace(
            "_", "\\_")

    async def list_rooms(self, search: str | None, order_by: str, backwards: bool,
                         limit: int, offset: int) -> tuple[list[JsonDict], int]:
        async with self._db.connection() as conn:
            rows, total = await self._store.list_rooms(conn, self._local_pattern(), search,
                                                       order_by, backwards, limit, offset)
        return [room_json(r) for r in rows], total

    async def room(self, room_id: str) -> JsonDict:
        if not is_valid_room_id(room_id):
            raise invalid_param("Invalid room id")
        async with self._db.connection() as conn:
            row = await self._store.room(conn, self._local_pattern(), room_id)
        if row is None:
            raise not_found("Room not found")
        d = room_json(row, full=True)
        d["joined_local_devices"] = int(row["joined_local_devices"])
        d["forgotten"] = bool(row["forgotten"])
        return d

    async def members(self, room_id: str) -> list[str]:
        await self.room(room_id)
        async with self._db.connection() as conn:
            return await self._store.room_members(conn, room_id)

    async def state(self, room_id: str) -> list[JsonDict]:
        room = await self._rooms.get_room(room_id)
        return [e.to_client() for e in room.state.values()]

    async def messages(self, requester: Requester, room_id: str, from_token: str | None,
                       to_token: str | None, backwards: bool, limit: int,
                       flt: Any) -> JsonDict:
        room = await self._rooms.get_room(room_id)
        return await self._reader.messages(requester, room, from_token, to_token, backwards,
                                           limit, flt, as_admin=True)

    async def room_sizes(self) -> list[JsonDict]:
        async with self._db.connection() as conn:
            rows = await self._store.room_sizes(conn)
        return [{"room_id": r["room_id"], "estimated_size": int(r["estimated_size"])}
                for r in rows]

    # ------------------------------------------------------------------ block

    async def blocked(self, room_id: str) -> JsonDict:
        if not is_valid_room_id(room_id):
            raise invalid_param("Invalid room id")
        async with self._db.connection() as conn:
            row = await self._store.blocked(conn, room_id)
        return {"block": False} if row is None else {"block": True, "user_id": row["user_id"]}

    async def is_blocked(self, room_id: str) -> bool:
        async with self._db.connection() as conn:
            return await self._store.blocked(conn, room_id) is not None

    async def set_blocked(self, requester: Requester, room_id: str, block: bool) -> None:
        if not is_valid_room_id(room_id):
            raise invalid_param("Invalid room id")
        async with self._db.connection() as conn:
            if block:
                await self._store.block(conn, room_id, requester.user_id, _now())
            else:
                await self._store.unblock(conn, room_id)

    # ------------------------------------------------------------------ make_room_admin

    async def make_room_admin(self, room_id_or_alias: str, user_id: str) -> None:
        """Give `user_id` the highest power level a local member of the room has, through
        that member, and join them (inviting them first unless the room is public)."""
        room_id = await self._rooms.resolve_room(room_id_or_alias)
        room = await self._rooms.get_room(room_id)
        if user_id.partition(":")[2] != self._server_name:
            raise invalid_param("This endpoint can only be used with local users")
        state = room.state_pdus()
        local = [m for m in room.joined_members()
                 if m.partition(":")[2] == self._server_name]
        if not local:
            raise MatrixError(400, Codes.UNKNOWN, "No local admin user in room")
        admin = max(local, key=lambda m: user_power_level(room.version, m, state))
        level = user_power_level(room.version, admin, state)
        pl_event = room.state.get(("m.room.power_levels", ""))
        content: JsonDict = dict(pl_event.pdu["content"]) if pl_event is not None else {}
        users = dict(content.get("users") or {})
        if not isinstance(level, int):  # a v12 creator: the highest level a user can hold
            level = max([100, *[v for v in users.values() if isinstance(v, int)]])
        creators = _creators(room)
        if user_id not in creators and users.get(user_id) != level:
            users[user_id] = level
            content["users"] = users
            await self._rooms.set_state(Requester(admin, ""), room_id, "m.room.power_levels",
                                        "", content)
        if room.membership(user_id) == "join":
            return
        join_rule = room.state.get(("m.room.join_rules", ""))
        public = join_rule is not None and join_rule.pdu["content"].get("join_rule") == "public"
        if not public and room.membership(user_id) != "invite":
            await self._rooms.invite(Requester(admin, ""), room_id, user_id)
        await self._rooms.join(Requester(user_id, ""), room_id)

    async def join_user(self, requester: Requester, room_id_or_alias: str,
                        user_id: str) -> str:
        """Synapse's room membership API: join a local user to a room; a room that is not
        public needs the admin in it, who invites the user first."""
        if user_id.partition(":")[2] != self._server_name:
            raise invalid_param("This endpoint can only be used with local users")
        room_id = await self._rooms.resolve_room(room_id_or_alias)
        room = await self._rooms.get_room(room_id)
        join_rule = room.state.get(("m.room.join_rules", ""))
        public = join_rule is not None and join_rule.pdu["content"].get("join_rule") == "public"
        if not public and room.membership(user_id) not in ("join", "invite"):
            if room.membership(requester.user_id) != "join":
                raise forbidden("You are not in this room and it is not public")
            await self._rooms.invite(requester, room_id, user_id)
        await self._rooms.join(Requester(user_id, ""), room_id)
        return room_id

    # ------------------------------------------------------------------ jobs

    async def _new_job(self, kind: str, room_id: str) -> str:
        job_id = secrets.token_urlsafe(12)
        async with self._db.connection() as conn:
            await self._store.insert_job(conn, job_id, self._instance, kind, room_id, _now())
        return job_id

    def _spawn(self, job_id: str, work: Any) -> None:
        async def run() -> None:
            async with self._db.connection() as conn:
                await self._store.update_job(conn, job_id, "active")
            try:
                result = await work
            except asyncio.CancelledError:
                async with self._db.connection() as conn:
                    await self._store.update_job(conn, job_id, "failed", "server shut down")
                raise
            except Exception as e:
                log.exception("admin job %s failed", job_id)
                error = e.error if isinstance(e, MatrixError) else f"{type(e).__name__}: {e}"
                async with self._db.connection() as conn:
                    await self._store.update_job(conn, job_id, "failed", error)
                return
            async with self._db.connection() as conn:
                await self._store.update_job(
                    conn, job_id, "complete",
                    result=None if result is None else orjson.dumps(result).decode())

        task = asyncio.get_running_loop().create_task(run(), name=f"admin-job-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def job(self, job_id: str, kind: str) -> JsonDict:
        async with self._db.connection() as conn:
            row = await self._store.job(conn, job_id, kind)
        if row is None:
            raise not_found("No such job")
        return _job_json(row, kind)

    async def jobs_of_room(self, room_id: str, kind: str) -> list[JsonDict]:
        async with self._db.connection() as conn:
            rows = await self._store.jobs_of_room(conn, room_id, kind)
        if not rows:
            raise not_found("No delete task for room")
        return [_job_json(r, kind) for r in rows]

    # ------------------------------------------------------------------ delete a room

    async def delete_room(self, requester: Requester, room_id: str, body: JsonDict) -> str:
        """Validate, then start the deletion; returns its delete_id."""
        if not is_valid_room_id(room_id):
            raise invalid_param(f"{room_id} is not a legal room ID")
        new_owner = body.get("new_room_user_id")
        if new_owner is not None and new_owner.partition(":")[2] != self._server_name:
            raise invalid_param("User must be our own")
        exists = await self._rooms.rooms.get(room_id) is not None
        if not exists and not body.get("block", False):
            raise not_found("Unknown room")
        for job in (await self._jobs_or_none(room_id)):
            if job["status"] in ("scheduled", "active"):
                raise MatrixError(400, Codes.UNKNOWN,
                                  f"Deletion of {room_id} already in progress")
        job_id = await self._new_job("delete_room", room_id)
        self._spawn(job_id, self._delete(job_id, requester, room_id, body, exists))
        return job_id

    async def delete_room_now(self, requester: Requester, room_id: str,
                              body: JsonDict) -> JsonDict:
        """The older DELETE /v1/rooms/{roomId}: the same deletion, answered when done."""
        job_id = await self.delete_room(requester, room_id, body)
        for task in list(self._tasks):
            if task.get_name() == f"admin-job-{job_id}":
                await asyncio.shield(task)
        job = await self.job(job_id, "delete_room")
        if job["status"] != "complete":
            raise MatrixError(500, Codes.UNKNOWN, job.get("error") or "Room deletion failed")
        return dict(job["shutdown_room"])

    async def _jobs_or_none(self, room_id: str) -> list[JsonDict]:
        try:
            return await self.jobs_of_room(room_id, "delete_room")
        except MatrixError:
            return []

    async def _delete(self, job_id: str, requester: Requester, room_id: str, body: JsonDict,
                      exists: bool) -> JsonDict:
        result: JsonDict = {"kicked_users": [], "failed_to_kick_users": [],
                            "local_aliases": [], "new_room_id": None}
        if body.get("block", False):
            await self.set_blocked(requester, room_id, True)
        if not exists:
            return result
        room = await self._rooms.get_room(room_id)
        new_owner = body.get("new_room_user_id")
        new_room = None
        if new_owner is not None:
            new_room = await self._rooms.create_room(
                Requester(new_owner, ""),
                {"preset": "public_chat", "name": body.get("room_name") or DEFAULT_ROOM_NAME,
                 "power_level_content_override": {"users_default": -10}})
            await self._rooms.send(new_room, new_owner, "m.room.message",
                                   {"msgtype": "m.text",
                                    "body": body.get("message") or DEFAULT_MESSAGE})
            result["new_room_id"] = new_room
        async with self._db.connection() as conn:
            await self._store.unpublish(conn, room_id)
        for user_id in room.joined_members():
            if user_id.partition(":")[2] != self._server_name:
                continue
            try:
                await self._rooms.leave(Requester(user_id, ""), room_id)
                if new_room is not None and user_id != new_owner:
                    await self._rooms.join(Requester(user_id, ""), new_room)
                result["kicked_users"].append(user_id)
            except MatrixError:
                log.warning("could not remove %s from %s", user_id, room_id)
                result["failed_to_kick_users"].append(user_id)
        aliases = await self._reader.aliases(room_id)
        async with self._db.connection() as conn:
            for alias in aliases:
                await self._store.delete_alias(conn, alias)
        result["local_aliases"] = aliases
        async with self._db.connection() as conn:  # shown while the purge runs
            await self._store.update_job(conn, job_id, "active",
                                         result=orjson.dumps(result).decode())
        if body.get("purge", True):
            await self._purge_room(room_id)
        return result

    async def _purge_room(self, room_id: str) -> None:
        async with self._rooms.locked(room_id) as room:
            members = {k[1] for k in room.state if k[0] == "m.room.member"}
            async with self._db.transaction() as conn:
                event_ids = await self._store.room_event_ids(conn, room_id)
                await self._store.purge_room(conn, room_id)
            self._caches.registry.drop(room_id)
            if self._caches.counts is not None:
                self._caches.counts(room_id)
        for event_id in event_ids:
            self._caches.events.drop(event_id)
        for user_id in members:
            self._caches.members.invalidate(user_id)
        log.info("purged room %s (%d events)", room_id, len(event_ids))

    # ------------------------------------------------------------------ purge history

    async def purge_history(self, room_id: str, event_id: str | None, ts: int | None,
                            delete_local: bool) -> str:
        if not is_valid_room_id(room_id):
            raise invalid_param("Invalid room id")
        await self._rooms.get_room(room_id)
        async with self._db.connection() as conn:
            if event_id is not None:
                point = await self._store.event_position(conn, room_id, event_id)
                if point is None:
                    raise not_found("Event not found in this room")
            elif ts is not None:
                point = await self._store.position_at_ts(conn, room_id, ts)
                if point is None:  # nothing at or after ts: everything before the last
                    point = await self._store.room_max_position(conn, room_id)
                if point is None:
                    raise MatrixError(404, Codes.NOT_FOUND,
                                      "There is no event to purge up to")
            else:
                raise MatrixError(400, Codes.MISSING_PARAM,
                                  "must specify purge_up_to_event_id or purge_up_to_ts")
        job_id = await self._new_job("purge_history", room_id)
        self._spawn(job_id, self._purge_history(room_id, int(point["depth"]),
                                                int(point["stream_ordering"]), delete_local))
        return job_id

    async def _purge_history(self, room_id: str, depth: int, stream: int,
                             delete_local: bool) -> None:
        suffix = None if delete_local else ":" + self._server_name
        async with self._rooms.locked(room_id):
            async with self._db.transaction() as conn:
                gone = await self._store.purge_history(conn, room_id, depth, stream, suffix)
            self._caches.registry.drop(room_id)
            if self._caches.counts is not None:
                self._caches.counts(room_id)
        for event_id in gone:
            self._caches.events.drop(event_id)
        log.info("purged %d events of %s", len(gone), room_id)
        return None


def _creators(room: Any) -> set[str]:
    """Users whose power a v12 room puts above any level (its creators)."""
    create = room.state.get(("m.room.create", ""))
    if create is None or not room.version.creators_have_infinite_power:
        return set()
    extra = create.pdu["content"].get("additional_creators") or []
    return {create.pdu["sender"], *[u for u in extra if isinstance(u, str)]}


def _job_json(row: Any, kind: str) -> JsonDict:
    status = row["status"]
    if kind == "purge_history" and status == "scheduled":
        status = "active"  # a purge's statuses are active, complete and failed
    d: JsonDict = {"status": status}
    if row["error"]:
        d["error"] = row["error"]
    if kind == "delete_room":
        d["delete_id"] = row["id"]
        d["room_id"] = row["room_id"]
        d["shutdown_room"] = (orjson.loads(row["result"]) if row["result"] else
                              {"kicked_users": [], "failed_to_kick_users": [],
                               "local_aliases": [], "new_room_id": None})
    return d
