"""User-interactive authentication (spec "User-Interactive Authentication API").

The flow logic lives here; the sessions are rows in the database (homeserver/uia/service.py), so
a flow survives a restart and can be finished on another process sharing the database. Each
session is bound to the API call that started it (`operation_of(request)`: the method and route,
not the concrete path) and to the requesting user; a session offered to another call or by
another user is refused like an unknown one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from homeserver.errors import Codes, MatrixError, UIARequired
from homeserver.types import JsonDict
from homeserver.uia.service import UIASession, UIASessionService


def operation_of(request: web.Request) -> str:
    """The API call a request makes, e.g. "POST /_matrix/client/{v}/account/password"."""
    resource = request.match_info.route.resource
    return f"{request.method} {resource.canonical if resource is not None else request.path}"


def _unknown_session() -> MatrixError:
    return MatrixError(400, Codes.UNKNOWN, "Unknown UIA session")


class UIA:
    def __init__(self, sessions: UIASessionService) -> None:
        self._sessions = sessions

    async def check(
        self, body: JsonDict, flows: list[list[str]],
        stage_check: Callable[[str, JsonDict], Awaitable[bool]],
        params: JsonDict | None = None, *, operation: str, user_id: str | None,
    ) -> None:
        """Complete the stage in body["auth"]; returns when a flow is done (the session is then
        used up), else raises UIARequired (401) with the flows and completed stages."""
        auth: Any = body.get("auth")
        sid = auth.get("session") if isinstance(auth, dict) else None
        session: UIASession | None = None
        if sid is not None:
            session = await self._sessions.get(sid) if isinstance(sid, str) else None
            if session is None:
                raise _unknown_session()
            if session.operation != operation or session.user_id != user_id:
                raise MatrixError(400, Codes.UNKNOWN,
                                  "This UIA session was started for another request")
        done = session.completed if session is not None else frozenset()
        error: JsonDict = {}
        if isinstance(auth, dict) and isinstance(auth.get("type"), str):
            stage = auth["type"]
            if not any(stage in f for f in flows):
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
                if session is not None and not await self._sessions.finish(session.session_id):
                    raise _unknown_session()  # a concurrent request completed it first
                return
        # Only a flow that goes on needs a session (a one-request flow writes nothing).
        if session is None:
            session = await self._sessions.start(operation, user_id, done)
        body_out: JsonDict = {
            "flows": [{"stages": f} for f in flows],
            "params": params or {},
            "session": session.session_id,
            "completed": sorted(done),
        }
        body_out.update(error)
        raise UIARequired(body_out)
