"""Third-party invites (spec "Third-party invites"): inviting by e-mail address.

POST /rooms/{id}/invite with an id_server asks that identity server who holds the address. A
bound address is invited as the Matrix user it names. An unbound one gets an invite stored at the
identity server and an m.room.third_party_invite event (state_key: the server's token, content:
its public keys); when the address is later bound, the identity server calls
/_matrix/federation/v1/3pid/onbind on the invitee's homeserver with the invite signed, and that
homeserver redeems it: an m.room.member invite from the original inviter carrying the signed
block, which the auth rules check against the public keys in the m.room.third_party_invite.
Before that, the key is checked at its key_validity_url: a revoked or unverifiable key redeems
nothing.

The invite member event is sent as the inviter, but by the server that redeems it: in a room
this server is in, that is this server (signed with its key, which the spec accepts for these
events in place of the inviter's server's: homeserver/events/checks.py), even for an inviter of
another server; otherwise a server of the room (the inviter's first) is asked to
(exchange_third_party_invite, when federation is on), and it has the invitee's server
counter-sign the invite as for any invite of a remote user.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.errors import Codes, MatrixError, forbidden
from homeserver.identity.client import IdentityClient, identity_server_base
from homeserver.identity.threepids import canonical_address
from homeserver.rooms.service import RoomService
from homeserver.signing import SignatureError, verify_signed_json
from homeserver.types import JsonDict, Requester, is_valid_user_id
from homeserver.users.profiles import ProfileService

log = logging.getLogger(__name__)

THIRD_PARTY_INVITE = "m.room.third_party_invite"


def invite_keys(content: JsonDict) -> list[tuple[str, str | None]]:
    """The (public key, key validity URL) pairs an m.room.third_party_invite offers."""
    keys: list[tuple[str, str | None]] = []
    listed = content.get("public_keys")
    for entry in listed if isinstance(listed, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
            url = entry.get("key_validity_url")
            keys.append((entry["public_key"], url if isinstance(url, str) else None))
    if isinstance(content.get("public_key"), str):
        url = content.get("key_validity_url")
        pair = (content["public_key"], url if isinstance(url, str) else None)
        if pair not in keys:
            keys.append(pair)
    return keys


def signing_key(content: JsonDict, signed: JsonDict) -> tuple[str, str | None] | None:
    """The invite's key that made one of the signatures on `signed`, if any."""
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        return None
    for public_key, url in invite_keys(content):
        for server_name, sigs in signatures.items():
            for key_id in sigs if isinstance(sigs, dict) else {}:
                try:
                    verify_signed_json(dict(signed), server_name, key_id, public_key)
                except SignatureError:
                    continue
                return public_key, url
    return None


def check_invite_params(body: object) -> tuple[str, str, str, str]:
    """(id_server, id_access_token, medium, address) of a third-party invite request.

    Raises:
        MatrixError: 400 M_MISSING_PARAM / M_INVALID_PARAM for a missing or bad one.
    """
    if not isinstance(body, dict):
        raise MatrixError(400, Codes.BAD_JSON, "A third-party invite must be an object")
    id_server, token = body.get("id_server"), body.get("id_access_token")
    if not isinstance(id_server, str) or not id_server:
        raise MatrixError(400, Codes.MISSING_PARAM, "id_server is required")
    if not isinstance(token, str) or not token:
        raise MatrixError(400, Codes.MISSING_PARAM, "id_access_token is required")
    identity_server_base(id_server)
    medium, address = canonical_address(body.get("medium"), body.get("address"))
    return id_server, token, medium, address


class ThirdPartyInvites:
    def __init__(self, server_name: str, rooms: RoomService, profiles: ProfileService,
                 identity: IdentityClient) -> None:
        self._server_name = server_name
        self._rooms = rooms
        self._profiles = profiles
        self._identity = identity
        # Set when federation is on: asks the room's server to redeem (room_id, member event).
        self.forward: Callable[[str, JsonDict], Awaitable[None]] | None = None

    async def invite(self, requester: Requester, room_id: str, body: JsonDict) -> None:
        """Invite the owner of (medium, address) as the identity server `id_server` knows it.

        Raises:
            MatrixError: 400 for missing parameters, 403 if the requester may not invite,
                502 if the identity server cannot be asked.
        """
        id_server, token, medium, address = check_invite_params(body)
        room = await self._rooms.get_room(room_id)
        if room.membership(requester.user_id) != "join":
            raise forbidden("You are not in this room")
        mxid = await self._identity.lookup(id_server, token, medium, address)
        if mxid is not None and is_valid_user_id(mxid):
            await self._rooms.invite(requester, room_id, mxid)
            return

        def state(etype: str, key: str = "") -> dict[str, Any]:
            ev = room.state.get((etype, key))
            content = ev.pdu.get("content") if ev is not None else None
            return content if isinstance(content, dict) else {}

        profile: JsonDict = {}
        try:
            profile = await self._profiles.profile(requester.user_id)
        except MatrixError:
            pass
        params: JsonDict = {"medium": medium, "address": address, "room_id": room_id,
                            "sender": requester.user_id}
        optional = {
            "sender_display_name": profile.get("displayname"),
            "sender_avatar_url": profile.get("avatar_url"),
            "room_alias": state("m.room.canonical_alias").get("alias"),
            "room_avatar_url": state("m.room.avatar").get("url"),
            "room_join_rules": state("m.room.join_rules").get("join_rule"),
            "room_name": state("m.room.name").get("name"),
            "room_type": state("m.room.create").get("type"),
        }
        params.update({k: v for k, v in optional.items() if isinstance(v, str)})
        stored = await self._identity.store_invite(id_server, token, params)
        keys = [k for k in stored.get("public_keys") or [] if isinstance(k, dict)
                and isinstance(k.get("public_key"), str)
                and isinstance(k.get("key_validity_url"), str)]
        if not keys:
            raise MatrixError(502, Codes.UNKNOWN, f"{id_server} gave no usable public keys")
        display = stored.get("display_name")
        content: JsonDict = {
            "display_name": display if isinstance(display, str) and display else "an invitee",
            "public_key": keys[0]["public_key"],
            "key_validity_url": keys[0]["key_validity_url"],
            "public_keys": [{"public_key": k["public_key"],
                             "key_validity_url": k["key_validity_url"]} for k in keys],
        }
        await self._rooms.set_state(requester, room_id, THIRD_PARTY_INVITE, stored["token"],
                                    content)

    async def on_bind(self, body: Any) -> None:
        """/3pid/onbind from an identity server: redeem each invite for a local user; the
        first refusal is raised once all were tried."""
        if not isinstance(body, dict):
            raise MatrixError(400, Codes.BAD_JSON, "Body must be an object")
        mxid = body.get("mxid")
        invites = body.get("invites")
        if not isinstance(mxid, str) or not is_valid_user_id(mxid):
            raise MatrixError(400, Codes.INVALID_PARAM, "mxid is required")
        if mxid.partition(":")[2] != self._server_name:
            raise MatrixError(400, Codes.INVALID_PARAM, "mxid is not a user of this server")
        failure: MatrixError | None = None
        for invite in invites if isinstance(invites, list) else []:
            if not isinstance(invite, dict):
                continue
            room_id, sender, signed = (invite.get("room_id"), invite.get("sender"),
                                       invite.get("signed"))
            if not (isinstance(room_id, str) and isinstance(sender, str)
                    and isinstance(signed, dict) and signed.get("mxid") == mxid):
                continue
            try:
                await self.redeem(room_id, sender, mxid, signed)
            except MatrixError as e:
                log.info("third-party invite to %s for %s not redeemed: %s", room_id, mxid,
                         e.error)
                failure = failure or e
        if failure is not None:
            # The others were still redeemed; the identity server learns that one was not
            # (as Synapse answers it).
            raise failure

    async def join_signed(self, target: str, room_id: str, signed: object) -> None:
        """POST /join with third_party_signed: redeem the invite it signs for `target`.

        Raises:
            MatrixError: 400 M_BAD_JSON for a malformed block, 403 if it is not `target`'s or
                does not check out.
        """
        if not isinstance(signed, dict) or not all(
                isinstance(signed.get(k), str) for k in ("sender", "mxid", "token")):
            raise MatrixError(400, Codes.BAD_JSON,
                              "third_party_signed needs sender, mxid, token and signatures")
        if signed["mxid"] != target:
            raise forbidden("The third-party invite is for someone else")
        await self.redeem(room_id, signed["sender"], target, signed)

    def _member_content(self, tpi_content: JsonDict, signed: JsonDict) -> JsonDict:
        return {"membership": "invite",
                "third_party_invite": {"display_name": tpi_content.get("display_name", ""),
                                       "signed": signed}}

    async def redeem(self, room_id: str, sender: str, target: str, signed: JsonDict) -> str:
        """Turn the third-party invite `signed` names into `target`'s invite: here if this
        server is in the room (also for a remote inviter: the spec lets the redeeming server
        sign and send it), else through a server of the room (the inviter's first)."""
        room = await self._rooms.rooms.get(room_id)
        if room is None or ("m.room.create", "") not in room.state:
            if self.forward is None:
                raise forbidden("This server is not in the room")
            content = {"membership": "invite",
                       "third_party_invite": {"display_name": "", "signed": signed}}
            await self.forward(room_id, {"type": "m.room.member", "room_id": room_id,
                                         "sender": sender, "state_key": target,
                                         "content": content})
            return ""
        return await self.accept_exchange(room_id, sender, target, signed)

    async def accept_exchange(self, room_id: str, sender: str, target: str,
                              signed: Any) -> str:
        """Redeem in a room this server is in (also for exchange_third_party_invite from the
        invitee's server): the invite event must exist, be the sender's, and the signature
        must come from one of its keys that its identity server still vouches for."""
        room = await self._rooms.get_room(room_id)
        token = signed.get("token") if isinstance(signed, dict) else None
        if not isinstance(token, str) or signed.get("mxid") != target:
            raise MatrixError(400, Codes.INVALID_PARAM, "signed needs the invitee's mxid and token")
        tpi = room.state.get((THIRD_PARTY_INVITE, token))
        if tpi is None:
            raise forbidden("No third-party invite with this token")
        if tpi.sender != sender:
            raise forbidden("The third-party invite was sent by someone else")
        content = tpi.pdu.get("content")
        content = content if isinstance(content, dict) else {}
        key = signing_key(content, signed)
        if key is None:
            raise forbidden("The invite is not signed by a key of the third-party invite")
        public_key, url = key
        if url is not None and not await self._identity.key_is_valid(url, public_key):
            raise forbidden("The identity server no longer vouches for the invite's key")
        return await self._rooms.redeem_third_party_invite(
            room_id, sender, target, self._member_content(content, signed))
