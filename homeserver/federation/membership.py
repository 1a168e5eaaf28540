"""The joining side of federation: our users joining, leaving and inviting across servers.

- join: resolve a remote alias (query/directory), then make_join / send_join (v2) through the
  first server that answers. The returned auth chain and state are stored as outliers (each
  checked: signatures, hashes, auth against its own auth events), then the join is accepted
  with that state as the state before it. A room known only through an invite has its
  out-of-band state dropped first.
- knock: make_knock / send_knock, the knock kept as an out-of-band membership (with the
  knock_room_state the resident sent) until an invite or a join follows.
- leave of a room known only through an invite or a knock (rejecting, withdrawing):
  make_leave / send_leave through the inviting (or knocked-on) server; if that server is
  down, a leave signed by us is kept locally, so the user can always reject.
- invite of a user of another server: their server counter-signs the event (v2 invite) before
  we persist it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.events.builder import EventBuilder
from homeserver.events.checks import InvalidPdu, KeyFetcher
from homeserver.events.hashing import compute_event_id, prune_event
from homeserver.events.model import remote_stripped_state
from homeserver.events.room_versions import ROOM_VERSIONS, RoomVersion
from homeserver.federation.outliers import store_outliers
from homeserver.federation.serving import domain, room_state_pdus
from homeserver.federation.transport import RemoteError, Transport, Unreachable, fed_path
from homeserver.rooms.service import RoomService
from homeserver.rooms.state import RoomData
from homeserver.rooms.store import RoomStore
from homeserver.rooms.writer import MissingEvents, RoomWriter
from homeserver.signing import SignatureError, verify_signed_json
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester, is_valid_room_id

log = logging.getLogger(__name__)

MAX_JOIN_EVENTS = 100_000
KNOCK_VERSIONS = [v for v, rv in ROOM_VERSIONS.items() if rv.knock_join_rule]


def _events_list(value: Any, what: str) -> list[JsonDict]:
    if not isinstance(value, list) or len(value) > MAX_JOIN_EVENTS:
        raise RemoteError(502, {"error": f"send_join answer has no {what} list"})
    return [p for p in value if isinstance(p, dict)]


class RemoteMembership:
    def __init__(self, server_name: str, db: Database, rooms: RoomService, store: RoomStore,
                 writer: RoomWriter, builder: EventBuilder, keys: KeyFetcher,
                 transport: Transport) -> None:
        self.server_name = server_name
        self._db = db
        self._rooms = rooms
        self._store = store
        self._writer = writer
        self._builder = builder
        self._keys = keys
        self._t = transport

    # ------------------------------------------------------------------ join

    async def resolve_alias(self, alias: str) -> tuple[str, list[str]]:
        """A remote alias's room id and servers (GET /query/directory at its server)."""
        try:
            resp = await self._t.request(domain(alias), "GET",
                                         "/_matrix/federation/v1/query/directory",
                                         query={"room_alias": alias})
        except RemoteError as e:
            raise not_found("Room alias not found") from e
        except Unreachable as e:
            raise not_found("The alias's server cannot be reached") from e
        room_id, servers = resp.get("room_id"), resp.get("servers", [])
        if not isinstance(room_id, str) or not is_valid_room_id(room_id):
            raise not_found("Room alias not found")
        return room_id, [s for s in servers if isinstance(s, str)] if isinstance(
            servers, list) else []

    async def join(self, requester: Requester, room_id: str, servers: Sequence[str],
                   content: JsonDict) -> str:
        """Join a room this server is not in; returns the room id."""
        candidates = list(servers)
        room = await self._rooms.rooms.get(room_id)
        if room is not None:  # invited: the inviting server is in the room
            invite = room.state.get(("m.room.member", requester.user_id))
            if invite is not None:
                candidates.insert(0, domain(invite.sender))
        tried = self._candidates(candidates, room_id)
        last: Exception | None = None
        for server in tried:
            try:
                return await self._join_via(server, room_id, requester.user_id, content)
            except (RemoteError, Unreachable) as e:
                log.info("joining %s via %s failed: %s", room_id, server, e)
                last = e
        if isinstance(last, RemoteError) and last.status == 403:
            why = last.body.get("error") if isinstance(last.body, dict) else last.body
            raise forbidden(f"Join refused: {why}")
        raise not_found("Could not join the room through any of its servers")

    async def _make(self, server: str, room_id: str, user_id: str, membership: str,
                    content: JsonDict, versions: list[str]) -> tuple[RoomVersion, str, JsonDict]:
        """make_join / make_knock at `server`: the room version and our signed event."""
        resp = await self._t.request(
            server, "GET", fed_path(f"/_matrix/federation/v1/make_{membership}/%s/%s",
                                    room_id, user_id), query={"ver": versions})
        version = resp.get("room_version", "1")
        rv = ROOM_VERSIONS.get(version) if isinstance(version, str) else None
        if rv is None or version not in versions:
            raise RemoteError(400, {"error": f"unsupported room version {version!r}"})
        event_id, pdu = self._fill(rv, resp.get("event"), room_id, user_id, membership,
                                   content)
        return rv, event_id, pdu

    def _candidates(self, servers: Sequence[str], room_id: str) -> list[str]:
        tried = [s for s in dict.fromkeys([*servers, domain(room_id)])
                 if s and s != self.server_name]
        if not tried:
            raise not_found("No server to reach this room through")
        return tried

    async def _join_via(self, server: str, room_id: str, user_id: str,
                        content: JsonDict) -> str:
        rv, event_id, pdu = await self._make(server, room_id, user_id, "join", content,
                                             list(ROOM_VERSIONS))
        answer = await self._t.request(
            server, "PUT", fed_path("/_matrix/federation/v2/send_join/%s/%s", room_id,
                                    event_id), body=pdu, timeout=300.0)
        if not isinstance(answer, dict):
            raise RemoteError(502, {"error": "send_join answer is not an object"})
        signed = answer.get("event")
        if isinstance(signed, dict) and compute_event_id(signed, rv) == event_id:
            pdu = signed  # restricted joins come back with the authoriser's signature
        await self._persist_join(rv, room_id, event_id, pdu, answer)
        return room_id

    def _fill(self, rv: RoomVersion, template: Any, room_id: str, user_id: str,
              membership: str, content: JsonDict) -> tuple[str, JsonDict]:
        """Check a make_join/make_leave template and sign it as ours."""
        if not isinstance(template, dict) or template.get("type") != "m.room.member" or \
                template.get("state_key") != user_id or template.get("sender") != user_id \
                or template.get("room_id") != room_id or not isinstance(
                    template.get("prev_events"), list) or not isinstance(
                    template.get("auth_events"), list) or not isinstance(
                    template.get("depth"), int):
            raise RemoteError(502, {"error": "bad make_join/make_leave template"})
        pdu = {k: template[k] for k in ("type", "state_key", "sender", "room_id",
                                        "prev_events", "auth_events", "depth")}
        pdu["content"] = {**content, "membership": membership}
        pdu["origin_server_ts"] = int(time.time() * 1000)
        if isinstance(template.get("origin"), str):
            pdu["origin"] = self.server_name
        return self._builder.finalize(rv, pdu)

    async def _persist_join(self, rv: RoomVersion, room_id: str, event_id: str,
                            pdu: JsonDict, answer: JsonDict) -> None:
        state = _events_list(answer.get("state"), "state")
        chain = _events_list(answer.get("auth_chain"), "auth_chain")
        create = next((p for p in state if p.get("type") == "m.room.create"), None)
        if create is None or not isinstance(create.get("sender"), str):
            raise RemoteError(502, {"error": "send_join state has no create event"})
        async with self._db.connection() as conn:
            await self._store.ensure_room(conn, room_id, rv.identifier, create["sender"],
                                          int(time.time() * 1000))
        async with self._rooms.locked(room_id) as room:
            if room.version.identifier != rv.identifier:
                raise RemoteError(502, {"error": "room version differs from the known one"})
            if ("m.room.create", "") in room.state and not room.left_behind(self.server_name):
                # joined meanwhile (another user)
                try:
                    await self._writer.accept(room, event_id, pdu, self._keys)
                except (InvalidPdu, MissingEvents) as e:
                    raise RemoteError(502, {"error": f"join could not be stored: {e}"}) from e
                return
            if room.state:
                await self._writer.forget_out_of_band(room, self.server_name)
            events: dict[str, JsonDict] = {}
            state_ids: list[str] = []
            for i, p in enumerate(chain + state):
                try:
                    eid = compute_event_id(p, rv)
                except ValueError:
                    continue
                events[eid] = p
                if i >= len(chain):
                    state_ids.append(eid)
            ok = await store_outliers(self._writer, room, events, self._keys)
            before: dict[tuple[str, str], str] = {}
            for eid in state_ids:
                p = events[eid]
                if eid in ok and isinstance(p.get("type"), str) and isinstance(
                        p.get("state_key"), str):
                    before[(p["type"], p["state_key"])] = eid
            try:
                entry = await self._writer.accept(room, event_id, pdu, self._keys,
                                                  state_before=before)
            except (InvalidPdu, MissingEvents) as e:
                raise RemoteError(502, {"error": f"our join could not be stored: {e}"}) from e
            if entry.rejected is not None:
                raise RemoteError(403, {"error": f"join rejected: {entry.rejected}"})

    # ------------------------------------------------------------------ knock

    async def knock(self, requester: Requester, room_id: str, servers: Sequence[str],
                    content: JsonDict) -> str:
        """Knock on a room this server is not in (make_knock / send_knock at the first server
        that answers); the knock is kept as an out-of-band membership with the room's
        knock_room_state in its `unsigned`, for the user's sync."""
        user_id = requester.user_id
        last: Exception | None = None
        for server in self._candidates(servers, room_id):
            try:
                rv, event_id, pdu = await self._make(server, room_id, user_id, "knock", content,
                                                     KNOCK_VERSIONS)
                answer = await self._t.request(server, "PUT", fed_path(
                    "/_matrix/federation/v1/send_knock/%s/%s", room_id, event_id), body=pdu)
            except (RemoteError, Unreachable) as e:
                log.info("knocking on %s via %s failed: %s", room_id, server, e)
                last = e
                continue
            state = remote_stripped_state(answer.get("knock_room_state")) if isinstance(
                answer, dict) else []
            await self._keep_out_of_band(rv, room_id, event_id,
                                         {**pdu, "unsigned": {"knock_room_state": state}})
            return room_id
        if isinstance(last, RemoteError) and last.status in (400, 403):
            why = last.body.get("error") if isinstance(last.body, dict) else last.body
            raise forbidden(f"Knock refused: {why}")
        raise not_found("Could not knock on the room through any of its servers")

    async def _keep_out_of_band(self, rv: RoomVersion, room_id: str, event_id: str,
                                pdu: JsonDict) -> None:
        async with self._db.connection() as conn:
            await self._store.ensure_room(conn, room_id, rv.identifier, pdu["sender"],
                                          int(time.time() * 1000))
        async with self._rooms.locked(room_id) as room:
            if room.version.identifier != rv.identifier:
                raise forbidden("The room's version differs from the one known here")
            if ("m.room.create", "") in room.state:
                raise forbidden("This server joined the room meanwhile")
            await self._writer.store_out_of_band(room, event_id, pdu)

    # ------------------------------------------------------------------ leave (reject)

    async def leave(self, requester: Requester, room_id: str, content: JsonDict) -> str:
        """Leave a room known only through an out-of-band invite (reject it)."""
        user_id = requester.user_id
        room = await self._rooms.get_room(room_id)
        invite = room.state.get(("m.room.member", user_id))
        if invite is None or invite.membership not in ("invite", "knock"):
            raise forbidden("You are not invited to this room")
        rv = room.version
        server = domain(invite.sender)
        if invite.membership == "knock":  # withdrawn through a server of the room
            senders = [e["sender"] for e in remote_stripped_state(
                invite.pdu.get("unsigned", {}).get("knock_room_state"))]
            server = next((domain(u) for u in senders if domain(u) != self.server_name),
                          domain(room_id) or self.server_name)
        pdu: JsonDict | None = None
        event_id = ""
        if server != self.server_name:
            try:
                resp = await self._t.request(server, "GET", fed_path(
                    "/_matrix/federation/v1/make_leave/%s/%s", room_id, user_id))
                event_id, pdu = self._fill(rv, resp.get("event"), room_id, user_id, "leave",
                                           content)
                await self._t.request(server, "PUT", fed_path(
                    "/_matrix/federation/v2/send_leave/%s/%s", room_id, event_id), body=pdu)
            except (RemoteError, Unreachable) as e:
                log.info("rejecting the invite to %s via %s failed (%s): kept locally",
                         room_id, server, e)
                pdu = None
        if pdu is None:  # the inviting server is down: a leave of our own, kept here
            template = {"type": "m.room.member", "state_key": user_id, "sender": user_id,
                        "room_id": room_id, "content": {**content, "membership": "leave"},
                        "prev_events": [invite.event_id], "auth_events": [invite.event_id],
                        "depth": invite.depth + 1, "origin_server_ts": int(time.time() * 1000)}
            event_id, pdu = self._builder.finalize(
                rv, template, {invite.event_id: invite.pdu["hashes"]["sha256"]})
        async with self._rooms.locked(room_id) as room:
            if ("m.room.create", "") in room.state:
                raise forbidden("This server joined the room meanwhile: leave it normally")
            await self._writer.store_out_of_band(room, event_id, pdu)
        return event_id

    # ------------------------------------------------------------------ invite

    async def sign_invite(self, room: RoomData, event_id: str, pdu: JsonDict) -> JsonDict:
        """Have the invited user's server counter-sign our invite (PUT /v2/invite)."""
        target = str(pdu["state_key"])
        server = domain(target)
        body = {"event": pdu, "room_version": room.version.identifier,
                "invite_room_state": room_state_pdus(room, pdu["sender"])}
        try:
            try:
                resp = await self._t.request(server, "PUT", fed_path(
                    "/_matrix/federation/v2/invite/%s/%s", room.room_id, event_id), body=body)
            except RemoteError as e:
                # A server without the v2 API: the v1 form carries rooms of versions 1 and 2.
                unknown = e.status == 404 or (e.status == 400 and e.errcode == "M_UNRECOGNIZED")
                if not unknown or room.version.identifier not in ("1", "2"):
                    raise
                resp = await self._invite_v1(server, room, event_id, pdu)
        except RemoteError as e:
            if e.errcode == "M_INVITE_BLOCKED":  # spec v1.18: passed on to the inviter
                raise MatrixError(403, "M_INVITE_BLOCKED",
                                  f"{target} does not accept invites") from e
            raise forbidden(f"{server} refused the invite: {e.errcode or e.status}") from e
        except Unreachable as e:
            raise forbidden(f"{server} cannot be reached to invite {target}") from e
        theirs = resp.get("event", {}).get("signatures", {}).get(server) if isinstance(
            resp.get("event"), dict) else None
        if not isinstance(theirs, dict) or not theirs:
            raise forbidden(f"{server} did not sign the invite")
        await self._check_signature(room.version, pdu, server, theirs)
        signed = dict(pdu)
        signed["signatures"] = {**pdu["signatures"], server: theirs}
        return signed

    async def _invite_v1(self, server: str, room: RoomData, event_id: str,
                         pdu: JsonDict) -> JsonDict:
        unsigned = {**pdu.get("unsigned", {}),
                    "invite_room_state": room_state_pdus(room, pdu["sender"])}
        answer = await self._t.request(server, "PUT", fed_path(
            "/_matrix/federation/v1/invite/%s/%s", room.room_id, event_id),
            body={**pdu, "unsigned": unsigned})
        # [200, {"event": ...}]; anything else is treated as an answer without a signature.
        if isinstance(answer, list) and len(answer) == 2 and isinstance(answer[1], dict):
            return answer[1]
        return {}

    async def _check_signature(self, rv: RoomVersion, pdu: JsonDict, server: str,
                               sigs: dict[str, Any]) -> None:
        pruned = prune_event(pdu, rv)
        pruned.pop("unsigned", None)
        ts = int(time.time() * 1000)
        known = await self._keys.server_keys(server, list(sigs), ts)
        for key_id, vk in known.items():
            try:
                verify_signed_json({**pruned, "signatures": {server: {key_id: sigs[key_id]}}},
                                   server, key_id, vk)
                return
            except (SignatureError, KeyError):
                continue
        raise forbidden(f"{server}'s signature on the invite does not verify")
