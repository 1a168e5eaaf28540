"""The extensions of sliding sync (MSC4186 names them; MSC3884/3885/3959/3960/3961 define them):
to_device, e2ee, account_data, receipts, typing, presence, each answered from the same
SyncSources as /sync. Their configs are sticky per connection (see sliding.py)."""

from __future__ import annotations

from typing import Any

from homeserver.errors import Codes, MatrixError
from homeserver.rooms.members import Membership
from homeserver.streams.tokens import SyncToken
from homeserver.sync.streams import SyncSources
from homeserver.types import JsonDict, Requester
from homeserver.users.account_data import AccountDataService


class SlidingExtensions:
    def __init__(self, sources: SyncSources, account_data: AccountDataService) -> None:
        self._sources = sources
        self._account_data = account_data

    async def compute(self, requester: Requester, exts: dict[str, dict[str, Any]],
                      since: SyncToken | None, now: SyncToken,
                      memberships: dict[str, Membership], rooms: list[str],
                      initial_rooms: list[str]) -> tuple[JsonDict, SyncToken, bool]:
        """The extensions' results, the token the next request starts from, and whether
        they hold nothing new."""
        user_id, device_id = requester.user_id, requester.device_id
        src = self._sources
        out: JsonDict = {}
        empty = True
        token = now
        if (cfg := _enabled(exts, "to_device")) is not None and src.to_device is not None:
            ack = _to_device_since(cfg.get("since"))
            msgs, pos = await src.to_device.for_device(user_id, device_id, ack, now.to_device)
            out["to_device"] = {"next_batch": str(pos), "events": msgs}
            empty = empty and not msgs
        if _enabled(exts, "e2ee") is not None:
            e2ee: JsonDict = {}
            if src.device_lists is not None and since is not None and (
                    since.device_lists < now.device_lists or since.events < now.events):
                changed, left = await src.device_lists.for_sync(
                    user_id, memberships, since.device_lists, now.device_lists, since.events,
                    now.events)
                if changed or left:
                    e2ee["device_lists"] = {"changed": sorted(changed), "left": sorted(left)}
                    empty = False
            if src.key_counts is not None:
                counts, fallback = await src.key_counts.counts(user_id, device_id)
                e2ee["device_one_time_keys_count"] = counts
                e2ee["device_unused_fallback_key_types"] = fallback
            out["e2ee"] = e2ee
        if _enabled(exts, "account_data") is not None and (
                since is None or now.account_data > since.account_data):
            rows = await self._account_data.account_data_since(
                user_id, since.account_data if since is not None else 0)
            glob = [{"type": t, "content": c} for r, t, c in rows if not r]
            per_room: JsonDict = {}
            for r, t, c in rows:
                if r and r in memberships:
                    per_room.setdefault(r, []).append({"type": t, "content": c})
            out["account_data"] = {"global": glob, "rooms": per_room}
            empty = empty and not glob and not per_room
        joined = [r for r in rooms if memberships[r].membership == "join"]
        fresh = set(initial_rooms)
        for name, source, field_name in (("receipts", src.receipts, "receipts"),
                                         ("typing", src.typing, "typing")):
            if _enabled(exts, name) is None or source is None:
                continue
            upto = getattr(now, field_name)
            got: dict[str, list[JsonDict]] = {}
            new = [r for r in joined if r in fresh or since is None]
            if new:
                got.update(await source.for_rooms(user_id, new, None, upto))
            old = [r for r in joined if r not in fresh and since is not None]
            start = getattr(since, field_name) if since is not None else 0
            if old and start < upto:
                got.update(await source.for_rooms(user_id, old, start, upto))
            merged = {r: _merge_ephemeral(evs) for r, evs in got.items() if evs}
            out[name] = {"rooms": merged}
            # Freshly sent rooms' typing/receipts are not news on their own.
            empty = empty and not any(r not in fresh for r in merged)
        if _enabled(exts, "presence") is not None and src.presence is not None:
            events = await src.presence.for_user(
                user_id, since.presence if since is not None else None, now.presence)
            out["presence"] = {"events": events}
            empty = empty and not events
        return out, token, empty


def _enabled(exts: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The config of an extension that is enabled, else None."""
    ext = exts.get(name)
    return ext if ext is not None and ext.get("enabled") is True else None


def _to_device_since(raw: Any) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise MatrixError(400, Codes.INVALID_PARAM, "invalid to_device since")
    return int(raw)


def _merge_ephemeral(events: list[JsonDict]) -> JsonDict:
    """One m.typing or m.receipt event per room, as the extensions answer."""
    if len(events) == 1:
        return events[0]
    content: JsonDict = {}
    for ev in events:
        if ev.get("type") == "m.typing":
            content = ev.get("content", {})
            continue
        for event_id, by_type in ev.get("content", {}).items():
            slot = content.setdefault(event_id, {})
            for rtype, users in by_type.items():
                slot.setdefault(rtype, {}).update(users)
    return {"type": events[-1].get("type"), "content": content}
