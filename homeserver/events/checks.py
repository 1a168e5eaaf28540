"""The first receive-side checks on a PDU from elsewhere, in the spec's order (server-server API,
"Checks performed on receipt of a PDU"): format and size, then signatures, then the content
hash. Auth checks come after, in the room writer, because they need the room's state.

A PDU failing the first two is dropped (never stored). A content-hash mismatch is not fatal:
the event is kept in its redacted form, as the spec says. Key lookup goes through the small
`KeyFetcher` protocol that federation implements (fetching and caching remote server keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from homeserver.events.format import BadEventFormat, check_event_format
from homeserver.events.hashing import (
    EventTooLarge,
    check_event_size,
    compute_content_hash,
    prune_event,
)
from homeserver.events.room_versions import RoomVersion
from homeserver.signing import SignatureError, verify_signed_json
from homeserver.types import JsonDict


class InvalidPdu(Exception):
    """The PDU is malformed or badly signed: drop it, store nothing."""


class KeyFetcher(Protocol):
    async def server_keys(self, server_name: str, key_ids: Iterable[str],
                          valid_at_ts: int) -> Mapping[str, str]:
        """Base64 ed25519 verify keys by key id that were valid at `valid_at_ts`; keys that
        cannot be found are left out."""
        ...


def _domain(identifier: str) -> str:
    return identifier.partition(":")[2]


def check_format(rv: RoomVersion, pdu: Any) -> None:
    """Rule 1: a PDU of this room version's format, within the size limits."""
    if not isinstance(pdu, dict):
        raise InvalidPdu("PDU is not an object")
    for key, kind in (("type", str), ("sender", str), ("content", dict),
                      ("origin_server_ts", int), ("depth", int), ("hashes", dict),
                      ("signatures", dict), ("prev_events", list), ("auth_events", list)):
        if not isinstance(pdu.get(key), kind) or isinstance(pdu.get(key), bool):
            raise InvalidPdu(f"PDU field {key!r} is missing or not a {kind.__name__}")
    is_create = pdu["type"] == "m.room.create"
    if not (is_create and rv.room_id_is_create_event_hash) and not isinstance(
            pdu.get("room_id"), str):
        raise InvalidPdu("PDU has no room_id")
    if "state_key" in pdu and not isinstance(pdu["state_key"], str):
        raise InvalidPdu("state_key is not a string")
    if not 0 <= pdu["depth"] <= rv.max_depth:
        raise InvalidPdu("depth out of range")
    if not isinstance(pdu["hashes"].get("sha256"), str):
        raise InvalidPdu("PDU has no sha256 content hash")
    sender = pdu["sender"]
    if not sender.startswith("@") or ":" not in sender or "\x00" in sender:
        raise InvalidPdu("sender is not a user id")
    try:
        check_event_format(rv, pdu)  # reference shapes, v1/v2 event_id, v6+ canonical JSON
    except BadEventFormat as e:
        raise InvalidPdu(str(e)) from e
    if len(pdu["prev_events"]) > 20 or len(pdu["auth_events"]) > 10:
        raise InvalidPdu("too many prev_events or auth_events")
    try:
        check_event_size(pdu)
    except EventTooLarge as e:
        raise InvalidPdu(str(e)) from e


def third_party_redeemer(pdu: JsonDict) -> str | None:
    """For the m.room.member invite that redeems a third-party invite, the server of the
    invitee it names (content.third_party_invite.signed.mxid); None for any other event."""
    content = pdu.get("content")
    if pdu.get("type") != "m.room.member" or not isinstance(content, dict) or content.get(
            "membership") != "invite":
        return None
    tpi = content.get("third_party_invite")
    signed = tpi.get("signed") if isinstance(tpi, dict) else None
    mxid = signed.get("mxid") if isinstance(signed, dict) else None
    return _domain(mxid) or None if isinstance(mxid, str) else None


def signing_servers(rv: RoomVersion, pdu: JsonDict, event_id: str) -> set[str]:
    """Which servers must have signed the PDU.

    The sender's, except for the invite that redeems a third-party invite: the spec lets "the
    server which actually sends the event" differ from the sender's (the invitee's server,
    which learnt of the bind, may make it; the auth rules check the identity server's
    signature and that the sender is who sent the m.room.third_party_invite). Such an event
    needs the sender's server's signature or, when it has none, the invitee's server's."""
    sender_server = _domain(pdu["sender"])
    redeemer = third_party_redeemer(pdu)
    signatures = pdu.get("signatures")
    if redeemer and not (isinstance(signatures, dict) and sender_server in signatures):
        sender_server = redeemer
    servers = {sender_server}
    if not rv.reference_hash_event_ids:
        servers.add(_domain(event_id))  # v1/v2 ids carry their origin
    content = pdu.get("content", {})
    if pdu.get("type") == "m.room.member" and rv.restricted_join_rule \
            and content.get("membership") == "join":
        via = content.get("join_authorised_via_users_server")
        if isinstance(via, str) and ":" in via:
            servers.add(_domain(via))
    return servers


async def check_signatures(rv: RoomVersion, pdu: JsonDict, event_id: str,
                           keys: KeyFetcher) -> None:
    """Rule 2: each required server's signature over the redacted event verifies."""
    pruned = prune_event(pdu, rv)
    pruned.pop("unsigned", None)
    signatures = pdu.get("signatures", {})
    for server in signing_servers(rv, pdu, event_id):
        theirs = signatures.get(server)
        if not isinstance(theirs, dict) or not theirs:
            raise InvalidPdu(f"PDU is not signed by {server}")
        known = await keys.server_keys(server, list(theirs), int(pdu["origin_server_ts"]))
        ok = False
        for key_id, verify_key in known.items():
            try:
                verify_signed_json({**pruned, "signatures": {server: {key_id: theirs[key_id]}}},
                                   server, key_id, verify_key)
            except (SignatureError, KeyError):
                continue
            ok = True
            break
        if not ok:
            raise InvalidPdu(f"no valid signature from {server}")


def check_content_hash(rv: RoomVersion, pdu: JsonDict) -> JsonDict:
    """Rule 3: on a content-hash mismatch the event is kept redacted; returns the PDU to use."""
    if compute_content_hash(pdu) == pdu["hashes"].get("sha256"):
        return pdu
    pruned = prune_event(pdu, rv)
    return pruned


async def check_pdu(rv: RoomVersion, pdu: Any, event_id: str, keys: KeyFetcher) -> JsonDict:
    """Rules 1-3 in order. Raises InvalidPdu (drop); returns the PDU to go on with."""
    check_format(rv, pdu)
    await check_signatures(rv, pdu, event_id, keys)
    return check_content_hash(rv, pdu)
