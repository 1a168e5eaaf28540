"""Sync and pagination tokens.

A sync token holds one position per stream ("s<events>_<account_data>"); a pagination token
points between two events in topological order ("t<depth>_<stream>"). /messages accepts both.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.errors import Codes, MatrixError


@dataclass(frozen=True, slots=True)
class SyncToken:
    events: int
    account_data: int

    def serialize(self) -> str:
        return f"s{self.events}_{self.account_data}"

    @classmethod
    def parse(cls, token: str) -> SyncToken:
        try:
            if not token.startswith("s"):
                raise ValueError
            parts = [int(p) for p in token[1:].split("_")]
            while len(parts) < 2:
                parts.append(0)
            if any(p < 0 for p in parts):
                raise ValueError
            return cls(parts[0], parts[1])
        except ValueError:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid sync token {token!r}") from None


@dataclass(frozen=True, slots=True)
class PaginationToken:
    depth: int
    stream: int

    def serialize(self) -> str:
        return f"t{self.depth}_{self.stream}"

    @classmethod
    def parse(cls, token: str) -> PaginationToken | SyncToken:
        if token.startswith("s"):
            return SyncToken.parse(token)
        try:
            if not token.startswith("t"):
                raise ValueError
            depth, stream = (int(p) for p in token[1:].split("_"))
            return cls(depth, stream)
        except ValueError:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid token {token!r}") from None
