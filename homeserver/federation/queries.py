"""Asking other servers about their users and rooms (server-server spec "Querying for
information" and "Public Room Directory"): a remote user's profile for GET /profile, and
another server's public room list for /publicRooms?server=... An error from the remote keeps
its status and errcode when it is a client error; an unreachable server is 502.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import Codes, MatrixError, not_found
from homeserver.federation.serving import domain
from homeserver.federation.transport import RemoteError, Transport, Unreachable
from homeserver.types import JsonDict
from homeserver.users.profile_fields import KEY_PATTERN

TIMEOUT_S = 15.0


def _passed_on(e: RemoteError | Unreachable, what: str) -> MatrixError:
    if isinstance(e, RemoteError) and e.status == 404:
        return not_found(f"{what} not found")
    if isinstance(e, RemoteError) and 400 <= e.status < 500 and e.errcode:
        return MatrixError(e.status, e.errcode, f"The server said no: {what}")
    return MatrixError(502, Codes.UNKNOWN, f"The server of the {what} did not answer")


class RemoteQueries:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def profile(self, user_id: str) -> JsonDict:
        try:
            resp = await self._t.request(domain(user_id), "GET",
                                         "/_matrix/federation/v1/query/profile",
                                         query={"user_id": user_id}, timeout=TIMEOUT_S)
        except (RemoteError, Unreachable) as e:
            raise _passed_on(e, "profile") from e
        if not isinstance(resp, dict):
            raise not_found("profile not found")
        out = {k: resp[k] for k in ("displayname", "avatar_url")
               if isinstance(resp.get(k), str)}
        # Other fields (spec v1.16, MSC4133) under the spec's key grammar, as sent.
        out.update({k: v for k, v in resp.items() if k not in ("displayname", "avatar_url")
                    and isinstance(k, str) and len(k) <= 255 and KEY_PATTERN.fullmatch(k)})
        return out

    async def public_rooms(self, server: str, limit: int, since: str | None,
                           term: str | None) -> JsonDict:
        path = "/_matrix/federation/v1/publicRooms"
        try:
            if term:
                body: JsonDict = {"filter": {"generic_search_term": term}}
                if limit:
                    body["limit"] = limit
                if since:
                    body["since"] = since
                resp: Any = await self._t.request(server, "POST", path, body=body,
                                                  timeout=TIMEOUT_S)
            else:
                query: dict[str, Any] = {}
                if limit:
                    query["limit"] = str(limit)
                if since:
                    query["since"] = since
                resp = await self._t.request(server, "GET", path, query=query,
                                             timeout=TIMEOUT_S)
        except (RemoteError, Unreachable) as e:
            raise _passed_on(e, "room directory") from e
        chunk = resp.get("chunk") if isinstance(resp, dict) else None
        if not isinstance(chunk, list):
            raise MatrixError(502, Codes.UNKNOWN, "The server sent no room list")
        out: JsonDict = {"chunk": [e for e in chunk if isinstance(e, dict)
                                   and isinstance(e.get("room_id"), str)]}
        for k in ("next_batch", "prev_batch"):
            if isinstance(resp.get(k), str):
                out[k] = resp[k]
        if isinstance(resp.get("total_room_count_estimate"), int):
            out["total_room_count_estimate"] = resp["total_room_count_estimate"]
        return out
