"""Transport between servers over real TLS: X-Matrix verification (a forged or misaddressed
request gets 401 M_UNAUTHORIZED), certificate verification against the extra CA file, the
outbound address policy, the shared listener and the server well-known."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from federation.client import FederationClient, FederationError, FederationUnreachable
from federation.tls import client_context
from federation.xmatrix import sign_request
from homeserver.config import ConfigError, load_config
from homeserver.outbound import OutboundPolicy, parse_ranges
from homeserver.signing import ServerSigningKey
from tests.conftest import PgAdmin, free_port
from tests.federation.conftest import LOOPBACK, Factory, FedServer, run_server
from tests.federation.pki import Cert, LocalCA


async def _raw(server: FedServer, method: str, uri: str, headers: dict[str, str],
               body: bytes | None = None) -> tuple[int, Any]:
    ctx = client_context(server.config.federation_ca_file)
    url = URL(server.fed_url + uri, encoded=True)  # sent exactly as signed
    async with server.http.request(method, url, headers=headers, data=body, ssl=ctx) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_signed_requests_verify_and_forgeries_get_401(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    status, _ = await b.client.request("POST", "/register", {
        "username": "bob", "password": "pw-secret-1", "auth": {"type": "m.login.dummy"}})
    assert status == 200
    bob = f"@bob:{b.name}"
    uri = f"/_matrix/federation/v1/query/profile?user_id={bob.replace(':', '%3A')}"
    got = await a.hs.federation.client.request(b.name, "GET", uri)
    assert got == {"displayname": "bob"}
    good = sign_request(a.key, "GET", uri, b.name)
    assert (await _raw(b, "GET", uri, {"Authorization": good}))[0] == 200

    other = ServerSigningKey.generate(a.name)  # a key that is not a's
    tampered = good.replace('sig="', 'sig="A', 1)
    cases = {
        "no header": {},
        "bearer": {"Authorization": "Bearer abc"},
        "malformed": {"Authorization": "X-Matrix nonsense"},
        "bad signature": {"Authorization": tampered},
        "unknown key": {"Authorization": sign_request(other, "GET", uri, b.name).replace(
            other.key_id, "ed25519:unknown")},
        "key not the origin's": {"Authorization": sign_request(
            ServerSigningKey(a.name, other.signing_key), "GET", uri, b.name)},
        "other destination": {"Authorization": sign_request(a.key, "GET", uri, "else.test")},
        "other uri": {"Authorization": sign_request(a.key, "GET", uri + "&x=1", b.name)},
        "other method": {"Authorization": sign_request(a.key, "POST", uri, b.name)},
    }
    for why, headers in cases.items():
        status, body = await _raw(b, "GET", uri, headers)
        assert (status, body.get("errcode")) == (401, "M_UNAUTHORIZED"), why
    # An origin that is not a server name at all (a non-numeric port): a malformed request.
    not_a_name = sign_request(ServerSigningKey("localhost:http", other.signing_key), "GET",
                              uri, b.name)
    status, body = await _raw(b, "GET", uri, {"Authorization": not_a_name})
    assert (status, body.get("errcode")) == (400, "M_UNAUTHORIZED")
    # Several Authorization headers: one valid is enough.
    ctx = client_context(b.config.federation_ca_file)
    async with b.http.get(URL(b.fed_url + uri, encoded=True), ssl=ctx,
                          headers=[("Authorization", tampered), ("Authorization", good)]) as r:
        assert r.status == 200


async def test_certificates_are_verified(make_server: Factory, tmp_path: Path) -> None:
    a: FedServer = await make_server()
    policy = OutboundPolicy(parse_ranges(LOOPBACK))
    # Without the local CA the server's certificate is not trusted.
    untrusting = FederationClient(a.key, policy, client_context(None))
    other_ca = LocalCA(tmp_path, "Another CA")
    wrong_ca = FederationClient(a.key, policy, client_context(other_ca.ca_file))
    trusting = FederationClient(a.key, policy, client_context(a.config.federation_ca_file))
    try:
        for client in (untrusting, wrong_ca):
            with pytest.raises(FederationUnreachable):
                await client.fetch_server_keys(a.name)
        assert (await trusting.fetch_server_keys(a.name))["server_name"] == a.name
    finally:
        for c in (untrusting, wrong_ca, trusting):
            await c.close()


async def test_certificate_for_another_name_is_refused(
        make_server: Factory, local_ca: LocalCA) -> None:
    cert = local_ca.issue("elsewhere", dns=("elsewhere.test",), ips=())
    a: FedServer = await make_server(tls_cert_path=cert.cert, tls_key_path=cert.key)
    client = FederationClient(a.key, OutboundPolicy(parse_ranges(LOOPBACK)),
                              client_context(a.config.federation_ca_file))
    try:
        with pytest.raises(FederationUnreachable) as e:
            await client.fetch_server_keys(a.name)
        assert "certificate" in str(e.value).lower() or "ssl" in str(e.value).lower()
    finally:
        await client.close()


async def test_outbound_policy_denies_loopback_by_default(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(outbound_allow=())
    denied = b.hs.federation.client
    with pytest.raises(FederationUnreachable) as e:
        await denied.fetch_server_keys(a.name)
    assert "permitted" in str(e.value)
    # localhost resolves to loopback: refused as its IP literal is.
    name = f"localhost:{a.config.federation_listen_port}"
    with pytest.raises(FederationUnreachable):
        await denied.fetch_server_keys(name)


async def test_shared_listener_serves_client_and_federation(
        pg_admin: PgAdmin, tmp_path: Path, server_cert: Cert, local_ca: LocalCA) -> None:
    port = free_port()
    env = {"PARLEY_SERVER_NAME": f"127.0.0.1:{port}", "PARLEY_LISTEN": f"127.0.0.1:{port}",
           "PARLEY_FEDERATION_LISTEN": f"127.0.0.1:{port}",
           "PARLEY_TLS_CERT": str(server_cert.cert), "PARLEY_TLS_KEY": str(server_cert.key),
           "PARLEY_FEDERATION_CA_FILE": str(local_ca.ca_file),
           "PARLEY_OUTBOUND_ALLOW": "127.0.0.0/8, ::1", "PARLEY_DATA_DIR": str(tmp_path),
           "PARLEY_REGISTRATION": "open"}
    cfg = load_config(None, env)
    assert cfg.shared_listener and cfg.federation_enabled
    assert cfg.outbound_allow == ("127.0.0.0/8", "::1")
    assert cfg.base_url.startswith("https://")
    name = await pg_admin.create()
    try:
        async with run_server(cfg, pg_admin.dsn_for(name)) as s:
            ctx = client_context(local_ca.ca_file)
            for path in ("/_matrix/client/versions", "/_matrix/key/v2/server",
                         "/_matrix/federation/v1/version"):
                async with s.http.get(s.fed_url + path, ssl=ctx) as resp:
                    assert resp.status == 200, path
            # No SNI (as Synapse connects to an IP-literal name): still served.
            raw = ssl.create_default_context(cafile=str(local_ca.ca_file))
            raw.check_hostname = False
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=raw,
                                                           server_hostname="")
            writer.write(b"GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: close\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 200")
            writer.close()
    finally:
        await pg_admin.drop(name)


async def test_well_known_server_is_served_from_config(make_server: Factory) -> None:
    a: FedServer = await make_server(well_known_server="delegated.test:443")
    status, body = await _raw(a, "GET", "/.well-known/matrix/server", {})
    assert (status, body) == (200, {"m.server": "delegated.test:443"})
    b: FedServer = await make_server()
    status, body = await _raw(b, "GET", "/.well-known/matrix/server", {})
    assert status == 404
    # The client's well-known lookup reads it (here on the federation port of `a`).
    client = FederationClient(a.key, OutboundPolicy(parse_ranges(LOOPBACK)),
                              client_context(a.config.federation_ca_file),
                              well_known_port=a.config.federation_listen_port)
    try:
        assert await client._well_known("localhost") == "delegated.test:443"
    finally:
        await client.close()


def test_federation_config_errors(tmp_path: Path, server_cert: Cert) -> None:
    base = {"PARLEY_DATA_DIR": str(tmp_path), "PARLEY_FEDERATION_LISTEN": "127.0.0.1:8448"}
    with pytest.raises(ConfigError, match="tls"):
        load_config(None, base)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, {**base, "PARLEY_TLS_CERT": str(tmp_path / "no.crt"),
                           "PARLEY_TLS_KEY": str(server_cert.key)})
    with pytest.raises(ConfigError, match="outbound"):
        load_config(None, {"PARLEY_DATA_DIR": str(tmp_path), "PARLEY_OUTBOUND_ALLOW": "x/99"})
    ok = load_config(None, {**base, "PARLEY_TLS_CERT": str(server_cert.cert),
                            "PARLEY_TLS_KEY": str(server_cert.key), "PARLEY_FEDERATION": "off"})
    assert not ok.federation_enabled and ok.federation_listen_port == 8448
    assert not ok.shared_listener
    cfg_file = tmp_path / "hs.yaml"
    cfg_file.write_text(
        "listeners:\n  - port: 9000\n    resources: [client]\n"
        "  - port: 9001\n    bind_address: 127.0.0.1\n    resources: [federation]\n"
        f"tls:\n  certificate: {server_cert.cert}\n  private_key: {server_cert.key}\n"
        "federation:\n  trusted_key_servers: [notary.test]\n"
        "outbound:\n  allow_ranges: [10.0.0.0/8]\n")
    y = load_config(cfg_file, {})
    assert (y.listen_port, y.federation_listen_port, y.federation_enabled) == (9000, 9001, True)
    assert y.trusted_key_servers == ("notary.test",) and y.outbound_allow == ("10.0.0.0/8",)
    assert replace(y, listen_port=9001, listen_host="127.0.0.1").shared_listener


async def test_unknown_federation_endpoint_is_matrix_json(make_server: Factory) -> None:
    a: FedServer = await make_server()
    status, body = await _raw(a, "GET", "/_matrix/federation/v1/nothing", {})
    assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")
    try:
        await a.hs.federation.client.request(a.name, "GET", "/_matrix/federation/v1/nothing")
    except FederationError as e:
        assert e.status == 404
    else:
        raise AssertionError("expected a FederationError")


async def test_inbound_requests_are_rate_limited_per_origin(make_server: Factory) -> None:
    from homeserver.config import RateLimit, RateLimits

    b: FedServer = await make_server(
        rate_limits=RateLimits(enabled=True, federation=RateLimit(0.01, 3)))
    a: FedServer = await make_server()
    c: FedServer = await make_server()
    uri = "/_matrix/federation/v1/query/profile?user_id=%40x%3Ay"
    for _ in range(3):
        with pytest.raises(FederationError) as e:
            await a.hs.federation.client.request(b.name, "GET", uri)
        assert e.value.status == 404  # allowed through, and no such user
    with pytest.raises(FederationError) as e:
        await a.hs.federation.client.request(b.name, "GET", uri)
    assert (e.value.status, e.value.errcode) == (429, "M_LIMIT_EXCEEDED")
    assert e.value.body["retry_after_ms"] > 0
    with pytest.raises(FederationError) as e:  # another origin has its own budget
        await c.hs.federation.client.request(b.name, "GET", uri)
    assert e.value.status == 404
