"""Migration 0037 against a real PostgreSQL: notifications written under the old schema (an
`unread` flag per row and push_counts) keep their counts and read flags once converted to read
positions, and the converted database then behaves like a new one (receipts, pruning)."""

from __future__ import annotations

import shutil
from pathlib import Path

from homeserver.push.notify_store import NotificationStore
from homeserver.storage.database import Database
from homeserver.storage.migrate import migrate, migrations_dir

ROOM, OTHER = "!r:hs", "!o:hs"
B, C, D = "@b:hs", "@c:hs", "@d:hs"


async def test_old_unread_flags_become_read_positions(fresh_database: str,
                                                      tmp_path: Path) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for f in migrations_dir().iterdir():
        if f.name.endswith(".sql") and int(f.name[:4]) < 37:
            shutil.copy(str(f), before / f.name)
    db = await Database.connect(fresh_database, 1, 2)
    try:
        async with db.connection() as conn:
            await migrate(conn, before)
            # (user, room, stream ordering, thread, highlight, unread), as the old code wrote
            # them: b read the room up to 2 and thread $t up to 4 (a threaded receipt); c
            # read everything; d nothing; b's other room is unread.
            old = [
                (B, ROOM, 1, "main", False, False), (B, ROOM, 2, "main", False, False),
                (B, ROOM, 3, "main", True, True), (B, ROOM, 4, "$t", False, False),
                (B, ROOM, 5, "$t", True, True), (B, ROOM, 6, "main", False, True),
                (C, ROOM, 1, "main", False, False), (C, ROOM, 3, "$t", False, False),
                (D, ROOM, 2, "main", False, True), (D, ROOM, 5, "$t", True, True),
                (B, OTHER, 7, "main", False, True),
            ]
            for u, r, so, t, h, unread in old:
                await conn.execute(
                    "INSERT INTO push_notifications (user_id, stream_ordering, room_id,"
                    " event_id, thread_id, actions, highlight, ts, unread)"
                    " VALUES ($1, $2, $3, $4, $5, '[\"notify\"]', $6, 1000, $7)",
                    u, so, r, f"$e{so}", t, h, unread)
            await conn.execute(
                "INSERT INTO push_counts SELECT user_id, room_id, thread_id, count(*),"
                " count(*) FILTER (WHERE highlight) FROM push_notifications WHERE unread"
                " GROUP BY 1, 2, 3")
            await migrate(conn)
            assert await conn.fetchval(
                "SELECT count(*) FROM information_schema.tables"
                " WHERE table_name = 'push_counts'") == 0
            store = NotificationStore()

            async def counts(user: str) -> dict[tuple[str, str], tuple[int, int]]:
                rows = await store.counts(conn, user, [ROOM, OTHER])
                return {(r["room_id"], r["thread_id"]):
                        (r["notification_count"], r["highlight_count"]) for r in rows}

            async def flags(user: str) -> dict[int, bool]:
                return {int(r["stream_ordering"]): not r["unread"]
                        for r in await store.page(conn, user, None, 50, False)}

            assert await counts(B) == {(ROOM, "main"): (2, 1), (ROOM, "$t"): (1, 1),
                                       (OTHER, "main"): (1, 0)}
            assert await counts(C) == {}
            assert await counts(D) == {(ROOM, "main"): (1, 0), (ROOM, "$t"): (1, 1)}
            for u in (B, C, D):
                assert await flags(u) == {so: not unread for uu, _r, so, _t, _h, unread in old
                                          if uu == u}, u
            assert await store.unread_totals(conn, [B, C, D]) == {B: 4, D: 2}

            # After the conversion: an unthreaded receipt at 5 reads b's room up to there
            # (every thread), an older receipt changes nothing, pruning takes the read rows.
            await store.mark_read(conn, B, ROOM, 5, None)
            await store.mark_read(conn, B, ROOM, 1, None)
            assert await counts(B) == {(ROOM, "main"): (1, 0), (OTHER, "main"): (1, 0)}
            assert await store.delete_read_before(conn, 2000, 100) == 5 + 2
            assert sorted(await flags(B)) == [6, 7]
            assert await counts(D) == {(ROOM, "main"): (1, 0), (ROOM, "$t"): (1, 1)}
    finally:
        await db.close()
