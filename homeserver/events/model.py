"""A persisted event as the rest of the server sees it.

The PDU dict is parsed once and the client-format dict is built once, at persist time; every sync
response and socket shares them (each reader adds only its own `unsigned`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeserver.events.room_versions import RoomVersion
from homeserver.types import JsonDict

# Fields of a PDU that clients see (the "ClientEvent" format).
_CLIENT_KEYS = ("type", "content", "sender", "origin_server_ts", "room_id", "state_key")


@dataclass(slots=True)
class EventEntry:
    event_id: str
    room_id: str
    type: str
    state_key: str | None
    sender: str
    depth: int
    origin_server_ts: int
    stream_ordering: int
    state_group: int
    state_group_before: int
    pdu: JsonDict
    client: JsonDict
    redacted_by: str | None = None
    txn: tuple[str, str, str] | None = None  # (user_id, device_id, txn_id) of the local sender
    extra_unsigned: JsonDict = field(default_factory=dict)
    redacted_because: JsonDict | None = None
    pruned_content: JsonDict | None = None
    # Why the event failed its receipt checks, if it did; rejected, soft-failed and outlier
    # events are stored (so they are not fetched again) but never served to clients.
    rejected: str | None = None
    outlier: bool = False
    soft_failed: bool = False

    @property
    def served(self) -> bool:
        return self.stream_ordering > 0

    @property
    def is_state(self) -> bool:
        return self.state_key is not None

    @property
    def membership(self) -> str | None:
        if self.type != "m.room.member":
            return None
        m = self.pdu.get("content", {}).get("membership")
        return m if isinstance(m, str) else None

    def to_client(self, user_id: str | None = None, device_id: str | None = None,
                  with_room_id: bool = True) -> JsonDict:
        """Client format for one reader: adds transaction_id only for the sending device."""
        d = dict(self.client)
        if self.redacted_by is not None:
            d["content"] = self.pruned_content if self.pruned_content is not None else {}
        if not with_room_id:
            d.pop("room_id", None)
        unsigned: JsonDict = dict(self.extra_unsigned) if self.extra_unsigned else {}
        if self.txn is not None and user_id == self.txn[0] and device_id == self.txn[1]:
            unsigned["transaction_id"] = self.txn[2]
        if self.redacted_by is not None:
            unsigned["redacted_because"] = self.redacted_because or {"event_id": self.redacted_by}
            # Not in the spec, but the reference server adds it and clients and SyTest read it.
            unsigned["redacted_by"] = self.redacted_by
        if unsigned:
            d["unsigned"] = unsigned
        return d


def client_format(event_id: str, pdu: JsonDict, room_id: str) -> JsonDict:
    d: JsonDict = {k: pdu[k] for k in _CLIENT_KEYS if k in pdu}
    d["event_id"] = event_id
    d["room_id"] = room_id
    return d


def stripped_state(pdu: JsonDict) -> JsonDict:
    """The stripped form used in invite_state / knock_state."""
    return {
        "type": pdu["type"],
        "state_key": pdu.get("state_key", ""),
        "content": pdu.get("content", {}),
        "sender": pdu["sender"],
    }


def remote_stripped_state(value: Any, limit: int = 50) -> list[JsonDict]:
    """invite_room_state / knock_room_state from another server (full PDUs since spec v1.16,
    stripped events before) in stripped form; entries that are not state events are
    dropped, so a bad entry cannot break the invitee's sync."""
    if not isinstance(value, list):
        return []
    out = []
    for e in value[:limit]:
        if isinstance(e, dict) and isinstance(e.get("type"), str) and isinstance(
                e.get("state_key"), str) and isinstance(e.get("content"), dict) and isinstance(
                e.get("sender"), str):
            out.append(stripped_state(e))
    return out


def relation_of(content: Any) -> tuple[str | None, str | None]:
    rel = content.get("m.relates_to") if isinstance(content, dict) else None
    if isinstance(rel, dict):
        ev, rt = rel.get("event_id"), rel.get("rel_type")
        if isinstance(ev, str) and isinstance(rt, str):
            return ev, rt
    return None, None


def mark_redacted(target: EventEntry, redaction: EventEntry, rv: RoomVersion) -> None:
    """Serve `target` redacted from now on (the stored JSON is kept for federation/auth)."""
    from homeserver.events.hashing import prune_event

    target.redacted_by = redaction.event_id
    target.redacted_because = redaction.to_client()
    target.pruned_content = prune_event(target.pdu, rv).get("content", {})


def mark_expired(target: EventEntry, pruned_pdu: JsonDict) -> None:
    """Serve `target` with the PDU an MSC2228 expiry left (the redaction algorithm's, also
    what is now stored), with no redaction event: content {} for a message from now on."""
    target.pdu = pruned_pdu
    content = pruned_pdu.get("content", {})
    target.client = {**target.client, "content": content}
    if target.redacted_by is not None:
        target.pruned_content = content
