"""Which values of org.matrix.self_destruct_after schedule an expiry (rooms/expiry.py)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.rooms.expiry import FIELD, MAX_TS, self_destruct_after


@pytest.mark.parametrize(("content", "expected"), [
    ({FIELD: 1_700_000_000_000}, 1_700_000_000_000),
    ({FIELD: 0}, 0),
    ({FIELD: MAX_TS}, MAX_TS),
    ({FIELD: MAX_TS + 1}, None),  # beyond canonical JSON's integers (and BIGINT)
    ({FIELD: 2**70}, None),
    ({FIELD: -1}, None),
    ({FIELD: True}, None),  # a bool is an int in Python, not in JSON
    ({FIELD: False}, None),
    ({FIELD: 1.5e12}, None),
    ({FIELD: "1700000000000"}, None),
    ({FIELD: None}, None),
    ({FIELD: [1]}, None),
    ({FIELD: {"ts": 1}}, None),
    ({"org.matrix.self_destruct": 5000}, None),  # the duration form: Synapse ignores it too
    ({"body": "hi"}, None),
    ({}, None),
    ("not a dict", None),
    (None, None),
])
def test_self_destruct_after(content: Any, expected: int | None) -> None:
    assert self_destruct_after(content) == expected
