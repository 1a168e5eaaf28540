"""The room versions Parley supports and the behaviour each one switches on.

Code asks a flag (``rv.updated_redaction_rules``) rather than comparing version strings, so a
future version only needs a new table entry (the approach of Synapse's ``RoomVersions``).
Each version is written as the spec writes it: "builds on version N" plus what it changes,
so the table below is ``replace(previous, <the changes>)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    # v3: event IDs are "$" + the event's reference hash, the PDU carries no ``event_id`` and
    # prev_events/auth_events are plain ID lists. Before (v1/v2) an ID is "$opaque:server",
    # sent in the PDU, and those lists hold ``[event_id, {"sha256": hash}]`` pairs.
    reference_hash_event_ids: bool
    # v4: the reference hash is written in URL-safe base64 (v3 used the standard alphabet).
    url_safe_event_ids: bool
    # v5: a signing key only verifies events sent before its ``valid_until_ts``.
    enforce_key_validity: bool
    # v1-v5: auth rule 4 lets only the server named in an m.room.aliases state_key send it...
    special_case_aliases_auth: bool
    # ... and redaction keeps m.room.aliases ``content.aliases``. Both go in v6.
    redaction_keeps_aliases: bool
    # v1/v2: auth rule 11 checks m.room.redaction (redact level, or the redacted event's ID
    # has the redaction's domain). From v3 auth lets redactions through and "Handling
    # redactions" decides whether one is applied.
    redaction_auth_rule: bool
    # v6: power level changes to ``notifications`` are checked like ``events`` (rule 10.4/5).
    notifications_power_levels: bool
    # v6: received events must be Canonical JSON: integers in [-(2**53)+1, 2**53-1], no
    # floats (400 M_BAD_JSON on the client API). Before, power levels may be floats.
    strict_canonical_json: bool
    # v7: "knock" join rule and membership.
    knock_join_rule: bool
    # v8: "restricted" join rule and content.join_authorised_via_users_server (rules 4.2 and
    # 4.3.5); redaction keeps m.room.join_rules ``allow``.
    restricted_join_rule: bool
    # v9: redaction keeps m.room.member ``join_authorised_via_users_server``.
    redaction_keeps_join_authorised: bool
    # v10: "knock_restricted" join rule.
    knock_restricted_join_rule: bool
    # v10: power level values must be JSON integers. Before, strings such as " +50 " count.
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
    # v1 only: the original state resolution algorithm (v2 introduced state res v2).
    state_res_v1: bool
    # v12 (MSC4297): state resolution starts from an empty map and adds the conflicted
    # state subgraph to the full conflicted set.
    state_res_v2_1: bool

    @property
    def create_event_in_auth_events(self) -> bool:
        return not self.room_id_is_create_event_hash

    @property
    def float_power_levels(self) -> bool:
        """v1-v5 ("floaty power levels"): a float level counts, truncated toward zero."""
        return not self.strict_canonical_json

    @property
    def max_depth(self) -> int:
        """The largest ``depth``: v6 lowered it to the Canonical JSON integer limit."""
        return 2**53 - 1 if self.strict_canonical_json else 2**63 - 1


ROOM_V1 = RoomVersion(
    identifier="1",
    reference_hash_event_ids=False,
    url_safe_event_ids=False,
    enforce_key_validity=False,
    special_case_aliases_auth=True,
    redaction_keeps_aliases=True,
    redaction_auth_rule=True,
    notifications_power_levels=False,
    strict_canonical_json=False,
    knock_join_rule=False,
    restricted_join_rule=False,
    redaction_keeps_join_authorised=False,
    knock_restricted_join_rule=False,
    integer_power_levels=False,
    updated_redaction_rules=False,
    implicit_room_creator=False,
    redacts_in_content=False,
    room_id_is_create_event_hash=False,
    creators_have_infinite_power=False,
    state_res_v1=True,
    state_res_v2_1=False,
)
ROOM_V2 = replace(ROOM_V1, identifier="2", state_res_v1=False)
ROOM_V3 = replace(ROOM_V2, identifier="3", reference_hash_event_ids=True,
                  redaction_auth_rule=False)
ROOM_V4 = replace(ROOM_V3, identifier="4", url_safe_event_ids=True)
ROOM_V5 = replace(ROOM_V4, identifier="5", enforce_key_validity=True)
ROOM_V6 = replace(ROOM_V5, identifier="6", special_case_aliases_auth=False,
                  redaction_keeps_aliases=False, notifications_power_levels=True,
                  strict_canonical_json=True)
ROOM_V7 = replace(ROOM_V6, identifier="7", knock_join_rule=True)
ROOM_V8 = replace(ROOM_V7, identifier="8", restricted_join_rule=True)
ROOM_V9 = replace(ROOM_V8, identifier="9", redaction_keeps_join_authorised=True)
ROOM_V10 = replace(ROOM_V9, identifier="10", knock_restricted_join_rule=True,
                   integer_power_levels=True)
ROOM_V11 = replace(ROOM_V10, identifier="11", updated_redaction_rules=True,
                   implicit_room_creator=True, redacts_in_content=True)
ROOM_V12 = replace(ROOM_V11, identifier="12", room_id_is_create_event_hash=True,
                   creators_have_infinite_power=True, state_res_v2_1=True)

ROOM_VERSIONS: dict[str, RoomVersion] = {
    rv.identifier: rv
    for rv in (ROOM_V1, ROOM_V2, ROOM_V3, ROOM_V4, ROOM_V5, ROOM_V6, ROOM_V7, ROOM_V8,
               ROOM_V9, ROOM_V10, ROOM_V11, ROOM_V12)
}

# Every version in the spec's list is "Stable" (rooms/_index.md), advertised in /capabilities.
STABLE_ROOM_VERSIONS: frozenset[str] = frozenset(ROOM_VERSIONS)

DEFAULT_ROOM_VERSION = "12"
