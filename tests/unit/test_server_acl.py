"""Server ACL matching, table by table (spec: m.room.server_acl)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.federation.acl import host_of, is_ip_literal, server_allowed


@pytest.mark.parametrize(("name", "host"), [
    ("example.org", "example.org"),
    ("example.org:8448", "example.org"),
    ("1.2.3.4:80", "1.2.3.4"),
    ("[::1]:8448", "[::1]"),
    ("[2001:db8::1]", "[2001:db8::1]"),
])
def test_host_of(name: str, host: str) -> None:
    assert host_of(name) == host


@pytest.mark.parametrize(("host", "literal"), [
    ("1.2.3.4", True), ("[::1]", True), ("[2001:db8::1]", True),
    ("example.org", False), ("1.2.3", False), ("localhost", False),
])
def test_is_ip_literal(host: str, literal: bool) -> None:
    assert is_ip_literal(host) is literal


ALL = {"allow": ["*"]}


@pytest.mark.parametrize(("server", "acl", "allowed"), [
    ("evil.com", None, True),  # no ACL in the room
    ("evil.com", {}, False),  # no allow rule: nobody
    ("good.org", ALL, True),
    ("evil.com", {"allow": ["*"], "deny": ["evil.com"]}, False),
    ("evil.com:8448", {"allow": ["*"], "deny": ["evil.com"]}, False),  # port ignored
    ("EVIL.com", {"allow": ["*"], "deny": ["evil.com"]}, False),  # case ignored
    ("sub.evil.com", {"allow": ["*"], "deny": ["*.evil.com"]}, False),
    ("evil.com", {"allow": ["*"], "deny": ["*.evil.com"]}, True),
    ("evil.co", {"allow": ["*"], "deny": ["evil.c?m"]}, True),
    ("evil.cxm", {"allow": ["*"], "deny": ["evil.c?m"]}, False),
    ("good.org", {"allow": ["good.org"]}, True),
    ("other.org", {"allow": ["good.org"]}, False),
    ("good.org", {"allow": ["good.org"], "deny": ["good.org"]}, False),  # deny first
    ("a.b", {"allow": ["a.b.*"]}, False),
    ("axb", {"allow": ["a.b"]}, False),  # '.' is not a wildcard
    ("1.2.3.4:8448", ALL, True),
    ("1.2.3.4:8448", {**ALL, "allow_ip_literals": False}, False),
    ("[::1]:8448", {**ALL, "allow_ip_literals": False}, False),
    ("1.2.3.4", {**ALL, "allow_ip_literals": "no"}, True),  # not a boolean: default true
    ("x.org", {"allow": "*"}, False),  # malformed lists match nothing
    ("x.org", {"allow": [1, None, "*"]}, True),
    ("x.org", {"allow": ["*"], "deny": [{"x": 1}]}, True),
    ("x.org", "nonsense", False),
])
def test_server_allowed(server: str, acl: Any, allowed: bool) -> None:
    assert server_allowed(server, acl) is allowed
