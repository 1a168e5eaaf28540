"""Server keys over real TLS: our own (self-signed, old keys after a rotation), remote fetching
with caching and expiry, and the notary endpoints."""

from __future__ import annotations

import time

import pytest

from federation.client import FederationClient, FederationUnreachable
from federation.discovery import ServerAddress
from federation.tls import client_context
from homeserver.__main__ import main
from homeserver.outbound import OutboundPolicy, parse_ranges
from homeserver.signing import ServerSigningKey, SignatureError, verify_signed_json
from tests.federation.conftest import LOOPBACK, Factory, FedServer


def _client(server: FedServer) -> FederationClient:
    return FederationClient(server.key, OutboundPolicy(parse_ranges(LOOPBACK)),
                            client_context(server.config.federation_ca_file))


async def test_own_keys_are_self_signed(make_server: Factory) -> None:
    a: FedServer = await make_server()
    async with a.http.get(a.fed_url + "/_matrix/key/v2/server",
                          ssl=client_context(a.config.federation_ca_file)) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["server_name"] == a.name
    now = int(time.time() * 1000)
    assert now < body["valid_until_ts"] <= now + 7 * 24 * 3600 * 1000
    assert body["verify_keys"] == {a.key.key_id: {"key": a.key.verify_key_base64}}
    assert body["old_verify_keys"] == {}
    verify_signed_json(body, a.name, a.key.key_id, a.key.verify_key_base64)
    body["valid_until_ts"] += 1
    with pytest.raises(SignatureError):
        verify_signed_json(body, a.name, a.key.key_id, a.key.verify_key_base64)


async def test_rotate_key_command_keeps_the_old_key(make_server: Factory, tmp_path) -> None:
    cfg_file = tmp_path / "homeserver.yaml"
    cfg_file.write_text(f"server_name: rot.test\ndata_dir: {tmp_path}\n")
    key_path = tmp_path / "signing.key"
    first = ServerSigningKey.generate("rot.test")
    first.save(key_path)
    assert main(["--config", str(cfg_file), "rotate-key"]) == 0
    assert main(["--config", str(cfg_file), "rotate-key"]) == 0
    third = ServerSigningKey.from_file(key_path, "rot.test")
    old_file = tmp_path / "signing.key.old"
    lines = old_file.read_text().split("\n")
    assert lines[0].startswith(f"ed25519 {first.signing_key.version} {first.verify_key_base64} ")
    assert len([x for x in lines if x]) == 2
    # A server started with the rotated files publishes both retired keys as old keys and
    # accepts signatures of the first key made before it expired.
    a: FedServer = await make_server(signing_key_path=key_path,
                                     old_signing_keys_path=old_file)
    assert a.key.key_id == third.key_id
    own = a.hs.federation.keys.own_response()
    assert set(own["verify_keys"]) == {third.key_id}
    assert first.key_id in own["old_verify_keys"]
    expired = own["old_verify_keys"][first.key_id]["expired_ts"]
    assert expired <= int(time.time() * 1000)
    ring = a.hs.federation.keys
    assert await ring.server_keys(a.name, [first.key_id], expired - 1000) == {
        first.key_id: first.verify_key_base64}
    assert await ring.server_keys(a.name, [first.key_id], expired + 1) == {}


async def test_remote_keys_fetched_cached_and_expired(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server(host="localhost")
    ring = a.hs.federation.keys
    ring.refetch_after_ms = 0
    now = int(time.time() * 1000)
    got = await ring.server_keys(b.name, [b.key.key_id], now)
    assert got == {b.key.key_id: b.key.verify_key_base64}
    row = await a.hs.db.fetchrow(
        "SELECT verify_key, valid_until_ts FROM server_keys WHERE server_name = $1", b.name)
    assert row["verify_key"] == b.key.verify_key_base64 and row["valid_until_ts"] > now
    # Cached: found without asking B (whose key server is made to fail).
    ring.source = None
    assert await ring.server_keys(b.name, [b.key.key_id], now) == got
    ring._cache.clear()  # ... and from the database after a restart
    assert await ring.server_keys(b.name, [b.key.key_id], now) == got
    # Past valid_until_ts the cached key is not used for a later timestamp.
    later = row["valid_until_ts"] + 1
    assert await ring.server_keys(b.name, [b.key.key_id], later) == {}
    # Unknown key ids of a reachable server: fetched again, and still not there.
    ring.source = a.hs.federation.client
    assert await ring.server_keys(b.name, ["ed25519:nope"], now) == {}


async def test_notary_query_serves_signed_responses(make_server: Factory) -> None:
    a: FedServer = await make_server()
    b: FedServer = await make_server()
    client = _client(a)
    try:
        body = {"server_keys": {b.name: {b.key.key_id: {"minimum_valid_until_ts": 0}}}}
        resp = await client.request(a.name, "POST", "/_matrix/key/v2/query", body=body,
                                    signed=False)
        [one] = resp["server_keys"]
        assert one["server_name"] == b.name
        verify_signed_json(one, b.name, b.key.key_id, b.key.verify_key_base64)
        verify_signed_json(one, a.name, a.key.key_id, a.key.verify_key_base64)
        got = await client.request(a.name, "GET", f"/_matrix/key/v2/query/{b.name}",
                                   signed=False)
        assert [k["server_name"] for k in got["server_keys"]] == [b.name]
        # The plain client listener does not serve federation resources.
        status, err = await a.client.request("GET", "/_matrix/key/v2/server")
        assert (status, err["errcode"]) == (404, "M_UNRECOGNIZED")
    finally:
        await client.close()


async def test_keys_through_a_notary_when_the_origin_is_down(make_server: Factory) -> None:
    notary: FedServer = await make_server()
    b: FedServer = await make_server()
    c: FedServer = await make_server(trusted_key_servers=(notary.name,))
    now = int(time.time() * 1000)
    # The notary learns B's keys, then B goes away.
    assert await notary.hs.federation.keys.server_keys(b.name, [b.key.key_id], now)
    # B is unreachable for C: C's view of B's address is a dead port.
    c.hs.federation.client._addresses[b.name] = (time.monotonic() + 600, ServerAddress(
        "127.0.0.1", 1, b.name, "127.0.0.1"))
    with pytest.raises(FederationUnreachable):
        await c.hs.federation.client.fetch_server_keys(b.name)
    got = await c.hs.federation.keys.server_keys(b.name, [b.key.key_id], now)
    assert got == {b.key.key_id: b.key.verify_key_base64}


async def test_bad_notary_queries_are_refused(make_server: Factory) -> None:
    a: FedServer = await make_server()
    client = _client(a)
    try:
        for body in ({}, {"server_keys": []}, {"server_keys": {"bad name!": {}}},
                     {"server_keys": {"x.test": {"ed25519:a": {"minimum_valid_until_ts": "1"}}}}):
            with pytest.raises(Exception) as e:
                await client.request(a.name, "POST", "/_matrix/key/v2/query", body=body,
                                     signed=False)
            assert getattr(e.value, "status", None) == 400, body
            assert e.value.errcode == "M_BAD_JSON"  # type: ignore[attr-defined]
    finally:
        await client.close()


async def test_federation_without_its_own_listener_is_served_on_the_client_listener(
        make_server: Factory) -> None:
    """`federation.enabled` with no federation listener: the client listener serves the
    federation API too (behind a TLS proxy, as Synapse's default listener does); with a
    listener of its own, the client listener does not."""
    a: FedServer = await make_server(federation_listen_port=0)
    async with a.http.get(a.client_url + "/_matrix/key/v2/server") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["server_name"] == a.name
    verify_signed_json(body, a.name, a.key.key_id, a.key.verify_key_base64)
    async with a.http.get(a.client_url + "/_matrix/federation/v1/version") as resp:
        assert resp.status == 200 and "server" in await resp.json()
    b: FedServer = await make_server()
    async with b.http.get(b.client_url + "/_matrix/key/v2/server") as resp:
        assert resp.status == 404
