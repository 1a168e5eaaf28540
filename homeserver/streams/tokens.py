"""Sync and pagination tokens.

A sync token holds one position per stream: "s<events>_<account_data>_<receipts>_<to_device>_
<presence>_<typing>_<device_lists>" (shorter tokens from older versions read as zeros for the
missing streams). A pagination token points between two events in topological order
("t<depth>_<stream>"). /messages accepts both.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from homeserver.errors import Codes, MatrixError

_MAX_POSITION = 2**63 - 1  # positions are BIGINTs; a larger number must not reach SQL


def _position(p: str) -> int:
    """One position of a token: ASCII digits (an optional minus) within BIGINT range."""
    digits = p[1:] if p[:1] == "-" else p
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        raise ValueError(p)
    v = int(p)
    if abs(v) > _MAX_POSITION:
        raise ValueError(p)
    return v


@dataclass(frozen=True, slots=True)
class SyncToken:
    events: int
    account_data: int = 0
    receipts: int = 0
    to_device: int = 0
    presence: int = 0
    typing: int = 0
    device_lists: int = 0

    def serialize(self) -> str:
        return (f"s{self.events}_{self.account_data}_{self.receipts}_{self.to_device}_"
                f"{self.presence}_{self.typing}_{self.device_lists}")

    @classmethod
    def parse(cls, token: str) -> SyncToken:
        try:
            if not token.startswith("s"):
                raise ValueError
            parts = [_position(p) for p in token[1:].split("_")]
            if not parts or len(parts) > len(fields(cls)) or any(p < 0 for p in parts):
                raise ValueError
            return cls(*parts)
        except ValueError:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid sync token {token!r}") from None

    def capped(self, now: SyncToken) -> SyncToken:
        """This token with no position beyond `now` (a token from the future reads as now)."""
        return SyncToken(*(min(getattr(self, f.name), getattr(now, f.name))
                           for f in fields(self)))


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
            depth, stream = (_position(p) for p in token[1:].split("_"))
            return cls(depth, stream)
        except ValueError:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid token {token!r}") from None
