"""A digest of the tables a client request can write, to show a rejected request changed nothing.

Tables that background tasks write on their own (devices' last-seen values, presence, access
token use) are left out; everything a room, account-data, profile, filter, receipt or to-device
request writes is in.
"""

from __future__ import annotations

from typing import Any

TABLES = (
    "users", "profiles", "rooms", "events", "event_edges", "event_auth", "forward_extremities",
    "current_state", "state_groups", "state_group_entries", "room_memberships",
    "forgotten_rooms", "room_aliases", "event_txn_ids", "account_data", "filters", "receipts",
    "to_device_inbox", "to_device_txns", "push_rule_changes",
    "e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "e2e_cross_signing_keys",
    "e2e_signatures", "device_list_changes", "dehydrated_devices",
    "room_key_backup_versions", "room_key_backup_sessions",
    "local_media", "remote_media", "media_thumbnails", "url_previews",
)


_QUERY = " UNION ALL ".join(
    f"SELECT '{t}' AS name, count(*) AS n, "
    f"md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS h FROM {t} t"
    for t in TABLES)


async def digest(db: Any) -> dict[str, tuple[int, str]]:
    """(row count, md5 of all rows) per table, in one query."""
    async with db.connection() as conn:
        rows = await conn.fetch(_QUERY)
    return {r["name"]: (int(r["n"]), str(r["h"])) for r in rows}


def changed(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> list[str]:
    return [t for t in before if before[t] != after[t]]
