"""The durable EDU outbox against a real PostgreSQL: catch-up after a long absence keeps only
each user's newest device list update (the destination resyncs on the gap) and every
to-device message; received to-device message ids are remembered once."""

from __future__ import annotations

import orjson

from homeserver.federation.store import FederationStore
from homeserver.storage.database import Database
from homeserver.storage.migrate import migrate


async def test_trim_keeps_newest_device_update_per_user_and_all_to_device(
        fresh_database: str) -> None:
    db = await Database.connect(fresh_database, 1, 2)
    try:
        async with db.connection() as conn:
            await migrate(conn)
        store = FederationStore()

        def dlu(user: str, sid: int) -> dict[str, object]:
            return {"user_id": user, "device_id": "D", "stream_id": sid, "prev_id": []}

        async with db.transaction() as conn:
            await store.enqueue_edus(conn, [
                ("x.example", "m.device_list_update", dlu("@u:here", 1)),
                ("x.example", "m.direct_to_device", {"message_id": "m1"}),
                ("x.example", "m.device_list_update", dlu("@u:here", 2)),
                ("x.example", "m.device_list_update", dlu("@v:here", 3)),
                ("y.example", "m.device_list_update", dlu("@u:here", 4)),
                ("x.example", "m.device_list_update", dlu("@u:here", 5)),
            ])
            await store.trim_edu_outbox(conn, "x.example")
            rows = await store.edu_outbox(conn, "x.example", 10)
            other = await store.edu_outbox(conn, "y.example", 10)
        kept = [(r["edu_type"], orjson.loads(r["content"]).get("stream_id")) for r in rows]
        assert kept == [("m.direct_to_device", None), ("m.device_list_update", 3),
                        ("m.device_list_update", 5)]
        assert len(other) == 1
        async with db.transaction() as conn:
            assert await store.first_to_device(conn, "x.example", "m1", 10)
            assert not await store.first_to_device(conn, "x.example", "m1", 11)
            await store.prune_inbound_to_device(conn, 11)
            assert await store.first_to_device(conn, "x.example", "m1", 12)
    finally:
        await db.close()
