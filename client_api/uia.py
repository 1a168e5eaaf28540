"""User-interactive authentication (spec "User-Interactive Authentication API").

Sessions live in memory for a few minutes: a restart only makes a client start the flow again.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.errors import Codes, MatrixError, UIARequired
from homeserver.types import JsonDict

SESSION_TTL = 600.0


class UIA:
    def __init__(self) -> None:
        self._sessions: dict[str, tuple[float, set[str], JsonDict]] = {}

    def _prune(self) -> None:
        now = time.monotonic()
        for sid, (ts, _, _) in list(self._sessions.items()):
            if now - ts > SESSION_TTL:
                del self._sessions[sid]

    async def check(
        self, body: JsonDict, flows: list[list[str]],
        stage_check: Callable[[str, JsonDict], Awaitable[bool]],
        params: JsonDict | None = None,
    ) -> JsonDict:
        """Complete stages from body["auth"]; returns the session's stored data when a flow is
        done, else raises UIARequired (401) with the flows and completed stages."""
        self._prune()
        auth: Any = body.get("auth")
        sid = auth.get("session") if isinstance(auth, dict) else None
        if sid is not None and sid not in self._sessions:
            raise MatrixError(400, Codes.UNKNOWN, "Unknown UIA session")
        if sid is None:
            sid = secrets.token_urlsafe(16)
            self._sessions[sid] = (time.monotonic(), set(), {})
        ts, done, data = self._sessions[sid]
        error: JsonDict = {}
        if isinstance(auth, dict) and isinstance(auth.get("type"), str):
            stage = auth["type"]
            if not any(stage in f for f in flows):
                error = {"errcode": Codes.UNRECOGNIZED, "error": f"Unknown auth type {stage}"}
            elif await stage_check(stage, auth):
                done.add(stage)
                self._sessions[sid] = (ts, done, data)
            else:
                error = {"errcode": Codes.FORBIDDEN, "error": "Invalid authentication"}
        for flow in flows:
            if all(s in done for s in flow):
                del self._sessions[sid]
                return data
        body_out: JsonDict = {
            "flows": [{"stages": f} for f in flows],
            "params": params or {},
            "session": sid,
            "completed": sorted(done),
        }
        body_out.update(error)
        raise UIARequired(body_out)
