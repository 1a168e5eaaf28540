"""Reporting content (spec "Reporting content"): users report an event, a room or a user to
the server's admins, who read and clear event reports through the admin API."""

from __future__ import annotations

import time

import orjson

from homeserver.errors import not_found
from homeserver.reports.store import ReportStore
from homeserver.rooms.reader import RoomReader
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester


def _now() -> int:
    return int(time.time() * 1000)


class ReportService:
    def __init__(self, db: Database, store: ReportStore, rooms: RoomService,
                 reader: RoomReader) -> None:
        self._db = db
        self._store = store
        self._rooms = rooms
        self._reader = reader

    async def report_event(self, requester: Requester, room_id: str, event_id: str,
                           reason: str | None, score: int | None) -> None:
        """404 M_NOT_FOUND when the event is unknown or the reporter may not see it."""
        room = await self._rooms.get_room(room_id)
        await self._reader.visible_event(requester, room, event_id)
        async with self._db.connection() as conn:
            await self._store.insert_event_report(conn, _now(), room_id, event_id,
                                                  requester.user_id, reason, score)

    async def report_room(self, requester: Requester, room_id: str, reason: str) -> None:
        await self._rooms.get_room(room_id)
        async with self._db.connection() as conn:
            await self._store.insert_room_report(conn, _now(), room_id, requester.user_id,
                                                 reason)

    async def report_user(self, requester: Requester, user_id: str, reason: str) -> None:
        async with self._db.connection() as conn:
            if not await self._store.user_exists(conn, user_id):
                raise not_found("Unknown user")
            await self._store.insert_user_report(conn, _now(), user_id, requester.user_id,
                                                 reason)

    # ------------------------------------------------------------------ admin

    async def event_reports(self, user_id: str | None, room_id: str | None,
                            sender: str | None, backwards: bool, limit: int,
                            offset: int) -> tuple[list[JsonDict], int]:
        async with self._db.connection() as conn:
            rows, total = await self._store.event_reports(conn, user_id, room_id, sender,
                                                          backwards, limit, offset)
        return [_report_json(r) for r in rows], total

    async def event_report(self, report_id: int) -> JsonDict:
        async with self._db.connection() as conn:
            row = await self._store.event_report(conn, report_id)
        if row is None:
            raise not_found("Event report not found")
        d = _report_json(row)
        d["event_json"] = orjson.loads(row["event_json"]) if row["event_json"] else None
        return d

    async def delete_event_report(self, report_id: int) -> None:
        async with self._db.connection() as conn:
            if not await self._store.delete_event_report(conn, report_id):
                raise not_found("Event report not found")


def _report_json(r: object) -> JsonDict:
    return {k: r[k] for k in ("id", "received_ts", "room_id", "name", "event_id",  # type: ignore[index]
                              "user_id", "reason", "score", "sender", "canonical_alias")}
