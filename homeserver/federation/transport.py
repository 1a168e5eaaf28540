"""What federation's domain logic needs from the network: one signed JSON request to a server.

`federation/client.py` implements it over HTTPS; the exceptions live here so that services can
tell "the remote said no" from "the remote could not be reached" without importing HTTP code.
"""

from __future__ import annotations

from typing import Any, Protocol


class RemoteError(Exception):
    """The remote answered with an error status (or a body that is not JSON)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        self.errcode = body.get("errcode") if isinstance(body, dict) else None
        super().__init__(f"{status} {self.errcode or ''} {str(body)[:200]}")


class Unreachable(Exception):
    """No permitted address of the remote answered."""


class Transport(Protocol):
    async def request(self, destination: str, method: str, uri_path: str, *,
                      query: dict[str, Any] | None = None, body: Any = None,
                      signed: bool = True, timeout: float | None = None) -> Any:
        """The decoded JSON of a 2xx answer; raises RemoteError or Unreachable."""
        ...


def fed_path(template: str, *args: str) -> str:
    """A request path with each argument percent-encoded as one path segment."""
    from urllib.parse import quote

    return template % tuple(quote(a, safe="") for a in args)
