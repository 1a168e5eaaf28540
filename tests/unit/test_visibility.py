"""History visibility rule table (spec: "History visibility")."""

from __future__ import annotations

import pytest

from homeserver.rooms.visibility import may_see

CASES = [
    # visibility, membership at the event, currently joined, visible
    ("world_readable", None, False, True),
    ("world_readable", "leave", False, True),
    ("shared", None, True, True),
    ("shared", "leave", True, True),
    ("shared", None, False, False),
    ("shared", "join", False, True),
    ("shared", "invite", False, False),
    ("invited", "invite", False, True),
    ("invited", "invite", True, True),
    ("invited", None, True, False),
    ("invited", "join", False, True),
    ("invited", "leave", True, False),
    ("joined", "join", False, True),
    ("joined", "invite", True, False),
    ("joined", None, True, False),
    ("joined", "leave", False, False),
    ("joined", "ban", False, False),
]


@pytest.mark.parametrize(("hv", "membership", "joined", "expected"), CASES)
def test_may_see(hv: str, membership: str | None, joined: bool, expected: bool) -> None:
    assert may_see(hv, membership, joined) is expected
