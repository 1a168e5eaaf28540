"""User-interactive authentication (spec "User-Interactive Authentication API").

The flow logic lives here; the sessions are rows in the database (homeserver/uia/service.py), so
a flow survives a restart and can be finished on another process sharing the database. Each
session is bound to the API call that started it (`operation_of(request)`: the method and the
path, e.g. which device a DELETE /devices/{id} deletes, with r0 and v3 alike) and to the
requesting user. A session offered by another user is refused like an unknown one; offered for
another operation it is 403 (the spec: "the same API call"; SyTest "The operation must be
consistent through an interactive authentication session").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from homeserver.errors import Codes, MatrixError, UIARequired
from homeserver.types import JsonDict
from homeserver.uia.service import UIASession, UIASessionService


def operation_of(request: web.Request) -> str:
    """The API call a request makes, e.g. "DELETE /_matrix/client/{v}/devices/ABCDEF": the route
    with its parameters filled in, except the API version."""
    resource = request.match_info.route.resource
    if resource is None:
        return f"{request.method} {request.path}"
    path = resource.canonical
    for name, value in request.match_info.items():
        if name != "v":
            path = path.replace("{" + name + "}", value)
    return f"{request.method} {path}"


SSO_STAGE = "m.login.sso"


def _unknown_session() -> MatrixError:
    return MatrixError(400, Codes.UNKNOWN, "Unknown UIA session")


class UIA:
    def __init__(self, sessions: UIASessionService) -> None:
        self._sessions = sessions

    async def session_of(self, body: JsonDict) -> UIASession | None:
        """The session body["auth"] names, if it is a known one (finished or not)."""
        auth: Any = body.get("auth")
        sid = auth.get("session") if isinstance(auth, dict) else None
        return await self._sessions.get(sid) if isinstance(sid, str) else None

    async def set_result(self, session: UIASession, result: str) -> None:
        await self._sessions.set_result(session.session_id, result)

    async def complete_sso(self, session_id: str, user_id: str | None) -> bool:
        """An m.login.sso stage done out of band (the SSO fallback): complete it if the
        account that signed in is the session's; otherwise record who did, so that the
        session is refused (403) from then on. False for an unknown session or a mismatch."""
        session = await self._sessions.get(session_id)
        if session is None or session.finished or session.user_id is None:
            return False
        if user_id != session.user_id:
            await self._sessions.set_result(session_id, user_id or "")
            return False
        return await self._sessions.complete_stage(session_id, SSO_STAGE) is not None

    async def check(
        self, body: JsonDict, flows: list[list[str]],
        stage_check: Callable[[str, JsonDict], Awaitable[bool]],
        params: JsonDict | None = None, *, operation: str, user_id: str | None,
        remember: JsonDict | None = None, optional: frozenset[str] = frozenset(),
    ) -> UIASession | None:
        """Complete the stage in body["auth"]; returns when a flow is done (the session is then
        used up), else raises UIARequired (401) with the flows and completed stages.

        With `remember` (the request's parameters), a new session stores them and a completed
        one is kept, marked finished, rather than deleted, so that the caller can record its
        result (set_result) for a repeat of the same request; the session is returned.

        `optional` stages are accepted and recorded though no flow needs them (a captcha the
        server verifies when offered but does not require)."""
        auth: Any = body.get("auth")
        sid = auth.get("session") if isinstance(auth, dict) else None
        session: UIASession | None = None
        if sid is not None:
            session = await self._sessions.get(sid) if isinstance(sid, str) else None
            if session is None or session.finished or session.user_id != user_id:
                raise _unknown_session()
            if session.operation != operation:
                raise MatrixError(403, Codes.FORBIDDEN, "Requested operation has changed during"
                                  " the user-interactive authentication session")
            if user_id is not None and session.result not in (None, user_id):
                # Single sign-on in the session authenticated someone else (complete_sso).
                raise MatrixError(403, Codes.FORBIDDEN, "The account that signed in is not "
                                  "the one making the request")
        done = session.completed if session is not None else frozenset()
        error: JsonDict = {}
        if isinstance(auth, dict) and isinstance(auth.get("type"), str):
            stage = auth["type"]
            if not any(stage in f for f in flows) and stage not in optional:
                error = {"errcode": Codes.UNRECOGNIZED, "error": f"Unknown auth type {stage}"}
            elif await stage_check(stage, auth):
                if session is None:
                    done = done | {stage}
                else:
                    now_done = await self._sessions.complete_stage(session.session_id, stage)
                    if now_done is None:  # expired, or finished by a concurrent request
                        raise _unknown_session()
                    done = now_done
            else:
                error = {"errcode": Codes.FORBIDDEN, "error": "Invalid authentication"}
        for flow in flows:
            if all(s in done for s in flow):
                if session is not None:
                    finish = (self._sessions.finish if remember is None
                              else self._sessions.finish_kept)
                    if not await finish(session.session_id):
                        raise _unknown_session()  # a concurrent request completed it first
                return session
        # Only a flow that goes on needs a session (a one-request flow writes nothing).
        if session is None:
            session = await self._sessions.start(operation, user_id, done, remember)
        body_out: JsonDict = {
            "flows": [{"stages": f} for f in flows],
            "params": params or {},
            "session": session.session_id,
            "completed": sorted(done),
        }
        body_out.update(error)
        raise UIARequired(body_out)
