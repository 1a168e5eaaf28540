"""SQL for reports of events, rooms and users (homeserver/reports/service.py)."""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Conn


def _state(etype: str, key: str) -> str:
    return (f"(SELECT x.json::jsonb #>> '{{content,{key}}}' FROM current_state cs JOIN events x"
            f" ON x.event_id = cs.event_id WHERE cs.room_id = r.room_id"
            f" AND cs.type = '{etype}' AND cs.state_key = '')")


_REPORT_COLUMNS = (
    "r.id, r.received_ts, r.room_id, r.event_id, r.user_id, r.reason, r.score,"
    " e.sender, e.json AS event_json, " + _state("m.room.name", "name") + " AS name, "
    + _state("m.room.canonical_alias", "alias") + " AS canonical_alias"
)
_REPORT_FROM = " FROM event_reports r LEFT JOIN events e ON e.event_id = r.event_id"
_REPORT_WHERE = (" WHERE ($1::text IS NULL OR strpos(r.user_id, $1) > 0)"
                 " AND ($2::text IS NULL OR strpos(r.room_id, $2) > 0)"
                 " AND ($3::text IS NULL OR e.sender = $3)")


class ReportStore:
    async def insert_event_report(self, conn: Conn, ts: int, room_id: str, event_id: str,
                                  user_id: str, reason: str | None, score: int | None) -> int:
        return int(await conn.fetchval(
            "INSERT INTO event_reports (received_ts, room_id, event_id, user_id, reason, score)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            ts, room_id, event_id, user_id, reason, score))

    async def insert_room_report(self, conn: Conn, ts: int, room_id: str, user_id: str,
                                 reason: str) -> None:
        await conn.execute(
            "INSERT INTO room_reports (received_ts, room_id, user_id, reason)"
            " VALUES ($1, $2, $3, $4)", ts, room_id, user_id, reason)

    async def insert_user_report(self, conn: Conn, ts: int, target: str, user_id: str,
                                 reason: str) -> None:
        await conn.execute(
            "INSERT INTO user_reports (received_ts, target_user_id, user_id, reason)"
            " VALUES ($1, $2, $3, $4)", ts, target, user_id, reason)

    async def event_reports(self, conn: Conn, user_id: str | None, room_id: str | None,
                            sender: str | None, backwards: bool, limit: int,
                            offset: int) -> tuple[list[asyncpg.Record], int]:
        direction = "DESC" if backwards else "ASC"
        args = (user_id, room_id, sender)
        rows = await conn.fetch(
            f"SELECT {_REPORT_COLUMNS}{_REPORT_FROM}{_REPORT_WHERE}"
            f" ORDER BY r.received_ts {direction}, r.id {direction} LIMIT $4 OFFSET $5",
            *args, limit, offset)
        total = await conn.fetchval(f"SELECT count(*){_REPORT_FROM}{_REPORT_WHERE}", *args)
        return list(rows), int(total)

    async def event_report(self, conn: Conn, report_id: int) -> asyncpg.Record | None:
        return await conn.fetchrow(f"SELECT {_REPORT_COLUMNS}{_REPORT_FROM} WHERE r.id = $1",
                                   report_id)

    async def delete_event_report(self, conn: Conn, report_id: int) -> bool:
        res = await conn.execute("DELETE FROM event_reports WHERE id = $1", report_id)
        return bool(res.endswith(" 1"))

    async def user_exists(self, conn: Conn, user_id: str) -> bool:
        return bool(await conn.fetchval("SELECT 1 FROM users WHERE user_id = $1", user_id))
