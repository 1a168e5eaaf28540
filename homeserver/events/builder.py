"""Building a new local event: prev_events, auth_events, depth, then hashes and signature.

One builder serves every local write and the federation join/leave/knock templates: the
template (`template`) is what make_join returns for the joining server to fill in and sign;
`finalize` hashes and signs it. The room's forward extremities and the state the event is
authorised against are passed in, so the builder holds no state of its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from homeserver.errors import Codes, MatrixError
from homeserver.events.auth import auth_event_types
from homeserver.events.format import event_ids_of
from homeserver.events.hashing import EventTooLarge, check_event_size, finalize_event
from homeserver.events.model import EventEntry
from homeserver.events.room_versions import RoomVersion
from homeserver.events.validation import check_local_event
from homeserver.signing import ServerSigningKey
from homeserver.types import JsonDict

MAX_PREV_EVENTS = 10


class EventBuilder:
    def __init__(self, key: ServerSigningKey) -> None:
        self._key = key

    def template(
        self, rv: RoomVersion, room_id: str | None, sender: str, etype: str, content: JsonDict,
        *, state: Mapping[tuple[str, str], EventEntry] | None, extremities: Sequence[str],
        depth: int, state_key: str | None = None, redacts: str | None = None,
        origin_server_ts: int | None = None,
    ) -> JsonDict:
        """The unsigned PDU. `state` is the state it is authorised against (None for the
        create event); prev_events are the newest forward extremities."""
        pdu: JsonDict = {
            "type": etype,
            "sender": sender,
            "content": content,
            "origin_server_ts": (origin_server_ts if origin_server_ts is not None
                                 else int(time.time() * 1000)),
        }
        if room_id is not None:
            pdu["room_id"] = room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        if redacts is not None and not rv.redacts_in_content:
            pdu["redacts"] = redacts
        if state is None:
            pdu.update(prev_events=[], auth_events=[], depth=1)
            return pdu
        auth_ids = []
        for key in auth_event_types(rv, etype, sender, state_key, content):
            ev = state.get(key)
            if ev is not None:
                auth_ids.append(ev.event_id)
        pdu["auth_events"] = auth_ids
        pdu["prev_events"] = list(extremities[-MAX_PREV_EVENTS:])
        pdu["depth"] = min(depth + 1, rv.max_depth)
        return pdu

    def finalize(self, rv: RoomVersion, pdu: JsonDict,
                 event_hashes: Mapping[str, str] | None = None) -> tuple[str, JsonDict]:
        """Hash and sign; (event_id, PDU). v1/v2 cite prev and auth events with their
        content hashes (`event_hashes`). Raises MatrixError M_TOO_LARGE past the size limits."""
        try:
            event_id, signed = finalize_event(pdu, rv, self._key, event_hashes=event_hashes)
            check_event_size(signed)
        except EventTooLarge as e:
            raise MatrixError(413, Codes.TOO_LARGE, f"Event too large: {e}") from e
        return event_id, signed

    def build(
        self, rv: RoomVersion, room_id: str | None, sender: str, etype: str, content: JsonDict,
        *, state: Mapping[tuple[str, str], EventEntry] | None, extremities: Sequence[str],
        depth: int, state_key: str | None = None, redacts: str | None = None,
        known: Mapping[str, EventEntry] | None = None, origin_server_ts: int | None = None,
    ) -> tuple[str, JsonDict]:
        """`known`: events by id, for the hashes v1/v2 rooms cite prev and auth events with.

        The content is checked first, once (canonical JSON numbers from v6, storable text):
        every other field of the PDU is the builder's own."""
        check_local_event(etype, state_key, content, rv.strict_canonical_json)
        pdu = self.template(rv, room_id, sender, etype, content, state=state,
                            extremities=extremities, depth=depth, state_key=state_key,
                            redacts=redacts, origin_server_ts=origin_server_ts)
        hashes = None
        if not rv.reference_hash_event_ids and known is not None:
            cited = event_ids_of(pdu["prev_events"]) + event_ids_of(pdu["auth_events"])
            hashes = {e: known[e].pdu["hashes"]["sha256"] for e in cited if e in known}
        return self.finalize(rv, pdu, hashes)
