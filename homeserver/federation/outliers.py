"""Storing a batch of fetched events (an auth chain, a room's state) as outliers, each after
the auth events it cites, so that every one is checked against its own auth events."""

from __future__ import annotations

import logging

from homeserver.events.checks import InvalidPdu, KeyFetcher
from homeserver.events.format import event_ids_of
from homeserver.rooms.state import RoomData
from homeserver.rooms.writer import MissingEvents, RoomWriter
from homeserver.types import JsonDict

log = logging.getLogger(__name__)


async def store_outliers(writer: RoomWriter, room: RoomData, events: dict[str, JsonDict],
                         keys: KeyFetcher) -> set[str]:
    """Store `events` (by id) as outliers; returns the ids known and not rejected afterwards.
    Events whose auth events are neither known nor in the batch are left out. The caller
    holds the room's lock."""
    pending = dict(sorted(events.items(), key=lambda kv: (
        kv[1].get("depth", 0) if isinstance(kv[1].get("depth"), int) else 0, kv[0])))
    ok: set[str] = set()
    while pending:
        done: list[str] = []
        for eid, p in pending.items():
            if any(a in pending and a not in done for a in event_ids_of(p.get("auth_events"))):
                continue
            try:
                entry = await writer.store_outlier(room, eid, p, keys)
            except MissingEvents:
                continue
            except InvalidPdu as e:
                log.info("dropping fetched event %s: %s", eid, e)
                done.append(eid)
                continue
            done.append(eid)
            if entry.rejected is None:
                ok.add(eid)
        if not done:
            break
        for eid in done:
            pending.pop(eid, None)
    return ok
