"""Pure federation protocol code, table by table: X-Matrix headers, server discovery and the
outbound address policy."""

from __future__ import annotations

import pytest

from federation.discovery import ServerAddress, resolve, split_server_name
from federation.xmatrix import BadAuthHeader, XMatrix, parse_header, request_json, sign_request
from homeserver.outbound import OutboundPolicy, parse_ranges
from homeserver.signing import ServerSigningKey, canonical_json, verify_signed_json

KEY = ServerSigningKey.from_seed("origin.test", "ed25519:1",
                                 "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")


@pytest.mark.parametrize(("header", "expected"), [
    ('X-Matrix origin=origin.test,key="ed25519:1",sig="abc"',
     XMatrix("origin.test", None, "ed25519:1", "abc")),
    ('X-Matrix origin="o.test",destination="d.test:8448",key="ed25519:a_b",sig="x/y+z"',
     XMatrix("o.test", "d.test:8448", "ed25519:a_b", "x/y+z")),
    ('X-Matrix  sig="s", key="ed25519:k" , origin="o.test"',
     XMatrix("o.test", None, "ed25519:k", "s")),
    ('X-Matrix origin="o.test",key="ed25519:k",sig="s",future="ignored"',
     XMatrix("o.test", None, "ed25519:k", "s")),
    ('X-Matrix origin="o\\"x",key="ed25519:k",sig="s"', XMatrix('o"x', None, "ed25519:k", "s")),
])
def test_parse_header(header: str, expected: XMatrix) -> None:
    assert parse_header(header) == expected


@pytest.mark.parametrize("header", [
    "Bearer abc",
    "X-Matrix",
    'X-Matrix origin="o.test",key="ed25519:k"',  # no sig
    'X-Matrix key="ed25519:k",sig="s"',  # no origin
    'X-Matrix origin="o.test",key="rsa:k",sig="s"',
    'X-Matrix origin="o.test",origin="p.test",key="ed25519:k",sig="s"',
    'X-Matrix origin="o.test" key="ed25519:k",sig="s"',
    'X-Matrix origin="unterminated,key="ed25519:k",sig="s"',
])
def test_parse_header_refuses(header: str) -> None:
    with pytest.raises(BadAuthHeader):
        parse_header(header)


def test_signed_header_verifies_over_request_json() -> None:
    content = {"a": 1, "b": "\u00e9"}
    value = sign_request(KEY, "put", "/_matrix/federation/v1/send/1?x=y", "dest.test", content)
    auth = parse_header(value)
    assert (auth.origin, auth.destination, auth.key_id) == ("origin.test", "dest.test",
                                                            "ed25519:1")
    obj = request_json("PUT", "/_matrix/federation/v1/send/1?x=y", "origin.test", "dest.test",
                       content)
    assert b'"method":"PUT"' in canonical_json(obj)
    obj["signatures"] = {"origin.test": {auth.key_id: auth.sig}}
    verify_signed_json(obj, "origin.test", auth.key_id, KEY.verify_key_base64)
    assert "content" not in request_json("GET", "/x", "o", "d")


@pytest.mark.parametrize(("name", "expected"), [
    ("example.org", ("example.org", None)),
    ("example.org:8448", ("example.org", 8448)),
    ("1.2.3.4:80", ("1.2.3.4", 80)),
    ("[::1]:8448", ("::1", 8448)),
    ("[2001:db8::1]", ("2001:db8::1", None)),
])
def test_split_server_name(name: str, expected: tuple[str, int | None]) -> None:
    assert split_server_name(name) == expected


@pytest.mark.parametrize("name", ["", "a b", "example.org:", "example.org:0",
                                  "example.org:65536", "[::1", "[nonsense]:1", "x:80a"])
def test_split_server_name_refuses(name: str) -> None:
    with pytest.raises(ValueError):
        split_server_name(name)


# (server name, well-known answers, SRV answers, expected address)
DISCOVERY = [
    ("1.2.3.4", {}, {}, ServerAddress("1.2.3.4", 8448, "1.2.3.4", "1.2.3.4")),
    ("1.2.3.4:99", {}, {}, ServerAddress("1.2.3.4", 99, "1.2.3.4:99", "1.2.3.4")),
    ("[::1]:99", {}, {}, ServerAddress("::1", 99, "[::1]:99", "::1")),
    # An explicit port: direct, no well-known or SRV asked.
    ("hs.test:99", {"hs.test": "other.test"}, {"_matrix-fed._tcp.hs.test": [("x", 1)]},
     ServerAddress("hs.test", 99, "hs.test:99", "hs.test")),
    # Well-known delegating to an IP literal, to a name with a port, to a name with SRV,
    # to a bare name.
    ("hs.test", {"hs.test": "5.6.7.8"}, {}, ServerAddress("5.6.7.8", 8448, "5.6.7.8", "5.6.7.8")),
    ("hs.test", {"hs.test": "deleg.test:443"}, {},
     ServerAddress("deleg.test", 443, "deleg.test:443", "deleg.test")),
    ("hs.test", {"hs.test": "deleg.test"}, {"_matrix-fed._tcp.deleg.test": [("t.test", 7)]},
     ServerAddress("t.test", 7, "deleg.test", "deleg.test")),
    ("hs.test", {"hs.test": "deleg.test"}, {"_matrix._tcp.deleg.test": [("legacy.test", 8)]},
     ServerAddress("legacy.test", 8, "deleg.test", "deleg.test")),
    ("hs.test", {"hs.test": "deleg.test"}, {},
     ServerAddress("deleg.test", 8448, "deleg.test", "deleg.test")),
    # No well-known: SRV _matrix-fed first, then the legacy _matrix, then 8448.
    ("hs.test", {}, {"_matrix-fed._tcp.hs.test": [("a.test", 1)],
                     "_matrix._tcp.hs.test": [("b.test", 2)]},
     ServerAddress("a.test", 1, "hs.test", "hs.test")),
    ("hs.test", {}, {"_matrix._tcp.hs.test": [("b.test", 2)]},
     ServerAddress("b.test", 2, "hs.test", "hs.test")),
    ("hs.test", {}, {}, ServerAddress("hs.test", 8448, "hs.test", "hs.test")),
    # A well-known naming something invalid is ignored as the lookup failing is.
    ("hs.test", {"hs.test": "FAIL"}, {}, ServerAddress("hs.test", 8448, "hs.test", "hs.test")),
]


@pytest.mark.parametrize(("name", "wk", "srv", "expected"), DISCOVERY)
async def test_discovery(name: str, wk: dict[str, str], srv: dict[str, list[tuple[str, int]]],
                         expected: ServerAddress) -> None:
    asked: list[str] = []

    async def well_known(host: str) -> str | None:
        asked.append("wk:" + host)
        if wk.get(host) == "FAIL":
            raise RuntimeError("no well-known")
        return wk.get(host)

    async def lookup(record: str) -> list[tuple[str, int]]:
        asked.append(record)
        return srv.get(record, [])

    assert await resolve(name, well_known, lookup) == expected
    if ":" in name or name[0].isdigit():
        assert asked == []


@pytest.mark.parametrize(("allow", "deny", "address", "ok"), [
    ((), None, "127.0.0.1", False),
    ((), None, "10.1.2.3", False),
    ((), None, "192.168.0.1", False),
    ((), None, "169.254.1.1", False),
    ((), None, "::1", False),
    ((), None, "fe80::1", False),
    ((), None, "::ffff:127.0.0.1", False),  # v4-mapped is judged as v4
    ((), None, "8.8.8.8", True),
    ((), None, "2606:4700::1", True),
    (("127.0.0.0/8", "::1"), None, "127.0.0.1", True),
    (("127.0.0.0/8", "::1"), None, "::1", True),
    (("127.0.0.0/8",), None, "10.0.0.1", False),
    ((), ("8.8.8.0/24",), "8.8.8.8", False),
    ((), ("8.8.8.0/24",), "127.0.0.1", True),
    ((), None, "not an ip", False),
])
def test_outbound_policy(allow: tuple[str, ...], deny: tuple[str, ...] | None, address: str,
                         ok: bool) -> None:
    policy = OutboundPolicy(parse_ranges(allow)) if deny is None else OutboundPolicy(
        parse_ranges(allow), parse_ranges(deny))
    assert policy.permits(address) is ok
