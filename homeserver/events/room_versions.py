"""The room versions Parley supports and the behaviour each one switches on.

Code asks a flag (``rv.updated_redaction_rules``) rather than comparing version strings, so a
future version only needs a new table entry (the approach of Synapse's ``RoomVersions``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    # Restricted join rules (v8+) and knock_restricted (v10+) are always on for 10-12; the
    # flags exist so auth code says which rule it relies on.
    restricted_join_rule: bool
    knock_join_rule: bool
    knock_restricted_join_rule: bool
    # v10: power level values must be JSON integers, never strings.
    integer_power_levels: bool
    # v11 (MSC2176): redaction keeps all of m.room.create content, m.room.redaction's
    # content.redacts, power level ``invite`` and third_party_invite.signed; drops the
    # top-level origin/membership/prev_state.
    updated_redaction_rules: bool
    # v11 (MSC2175): m.room.create has no ``creator``; the creator is the create ``sender``.
    implicit_room_creator: bool
    # v11 (MSC2174): m.room.redaction carries ``redacts`` in content, not at top level.
    redacts_in_content: bool
    # v12 (MSC4291): the room ID is "!" + the create event's reference hash; the create
    # event has no room_id and is never listed in auth_events.
    room_id_is_create_event_hash: bool
    # v12 (MSC4289): creators (create sender + content.additional_creators) have infinite
    # power and may not appear in m.room.power_levels ``users``.
    creators_have_infinite_power: bool
    # v12 (MSC4297): state resolution starts from an empty map and adds the conflicted
    # state subgraph to the full conflicted set.
    state_res_v2_1: bool

    @property
    def create_event_in_auth_events(self) -> bool:
        return not self.room_id_is_create_event_hash


ROOM_V10 = RoomVersion(
    identifier="10",
    restricted_join_rule=True,
    knock_join_rule=True,
    knock_restricted_join_rule=True,
    integer_power_levels=True,
    updated_redaction_rules=False,
    implicit_room_creator=False,
    redacts_in_content=False,
    room_id_is_create_event_hash=False,
    creators_have_infinite_power=False,
    state_res_v2_1=False,
)

ROOM_V11 = RoomVersion(
    identifier="11",
    restricted_join_rule=True,
    knock_join_rule=True,
    knock_restricted_join_rule=True,
    integer_power_levels=True,
    updated_redaction_rules=True,
    implicit_room_creator=True,
    redacts_in_content=True,
    room_id_is_create_event_hash=False,
    creators_have_infinite_power=False,
    state_res_v2_1=False,
)

ROOM_V12 = RoomVersion(
    identifier="12",
    restricted_join_rule=True,
    knock_join_rule=True,
    knock_restricted_join_rule=True,
    integer_power_levels=True,
    updated_redaction_rules=True,
    implicit_room_creator=True,
    redacts_in_content=True,
    room_id_is_create_event_hash=True,
    creators_have_infinite_power=True,
    state_res_v2_1=True,
)

ROOM_VERSIONS: dict[str, RoomVersion] = {rv.identifier: rv for rv in (ROOM_V10, ROOM_V11, ROOM_V12)}

DEFAULT_ROOM_VERSION = "12"
