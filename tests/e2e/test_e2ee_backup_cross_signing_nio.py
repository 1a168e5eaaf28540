"""Key backup and cross-signing around matrix-nio devices. nio 0.26 has no API for either (no
/room_keys, no /keys/device_signing or /keys/signatures calls), so these tests do the client's
part themselves with real keys: vodozemac's PkEncryption for m.megolm_backup.v1.curve25519-aes-sha2
and ed25519 (signedjson) for cross-signing, while nio holds the Olm/Megolm state and decrypts.
matrix-js-sdk does both with its own code in test_js_crypto.py."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import vodozemac
from canonicaljson import encode_canonical_json
from nio import RoomMessageText
from signedjson.key import generate_signing_key, get_verify_key
from signedjson.sign import sign_json, verify_signed_json
from unpaddedbase64 import encode_base64

from tests.e2e.nio_crypto import MEGOLM, Crypto, CryptoFactory, encrypted_room
from tests.helpers import Client

BACKUP = "m.megolm_backup.v1.curve25519-aes-sha2"


def device_sign(d: Crypto, obj: dict[str, Any]) -> dict[str, Any]:
    """Signs obj with the nio device's own ed25519 key, as the spec's signing rules say."""
    assert d.c.olm is not None
    unsigned = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    sig = d.c.olm.account.sign(encode_canonical_json(unsigned).decode())
    obj.setdefault("signatures", {}).setdefault(d.user_id, {})[f"ed25519:{d.device_id}"] = sig
    return obj


def backup_sessions(d: Crypto, public_key: str) -> dict[str, Any]:
    """Every megolm session the device holds, as a PUT /room_keys/keys body."""
    assert d.c.store is not None
    enc = vodozemac.PkEncryption.from_key(vodozemac.Curve25519PublicKey.from_base64(public_key))
    rooms: dict[str, Any] = {}
    for s in d.c.store.load_inbound_group_sessions():
        plain = {"algorithm": MEGOLM, "sender_key": s.sender_key,
                 "session_key": s.export_session(s.first_known_index),
                 "sender_claimed_keys": {"ed25519": s.ed25519},
                 "forwarding_curve25519_key_chain": s.forwarding_chain}
        m = enc.encrypt(json.dumps(plain).encode())
        rooms.setdefault(s.room_id, {"sessions": {}})["sessions"][s.id] = {
            "first_message_index": s.first_known_index, "forwarded_count": 0,
            "is_verified": False,
            "session_data": {"ephemeral": encode_base64(m.ephemeral_key),
                             "ciphertext": encode_base64(m.ciphertext),
                             "mac": encode_base64(m.mac)}}
    return {"rooms": rooms}


def restore_session(d: Crypto, dec: vodozemac.PkDecryption, room_id: str, session_id: str,
                    backed_up: dict[str, Any]) -> None:
    """Decrypts one backed-up session and gives it to the nio device's crypto store."""
    from nio.crypto import InboundGroupSession

    assert d.c.olm is not None
    data = backed_up["session_data"]
    m = vodozemac.Message.from_base64(data["ciphertext"], data["mac"], data["ephemeral"])
    plain = json.loads(dec.decrypt(m))
    s = InboundGroupSession.import_session(plain["session_key"],
                                           plain["sender_claimed_keys"]["ed25519"],
                                           plain["sender_key"], room_id,
                                           plain["forwarding_curve25519_key_chain"])
    assert s.id == session_id
    assert d.c.olm.inbound_group_store.add(s)
    d.c.olm.save_inbound_group_session(s)


async def test_a_key_backup_restores_history_on_a_new_nio_device(e2ee: CryptoFactory,
                                                                 raw: Client) -> None:
    alice, bob = await e2ee("alice"), await e2ee("bob")
    room_id = await encrypted_room(alice, bob)
    await alice.send(room_id, "first, from alice")
    await bob.decrypted(room_id, "first, from alice")
    await bob.send(room_id, "second, from bob")
    await alice.decrypted(room_id, "second, from bob")

    recovery = vodozemac.PkDecryption()  # the backup's private key, kept by the user
    auth_data = device_sign(alice, {"public_key": recovery.public_key.to_base64()})
    token = alice.c.access_token
    status, made = await raw.request("POST", "/room_keys/version",
                                     {"algorithm": BACKUP, "auth_data": auth_data}, token)
    assert status == 200, made
    version = made["version"]
    body = backup_sessions(alice, auth_data["public_key"])
    assert len(body["rooms"][room_id]["sessions"]) == 2  # alice's own and the one bob shared
    status, put = await raw.request("PUT", "/room_keys/keys", body, token,
                                    params={"version": version})
    assert status == 200 and put["count"] == 2, put

    alice2 = await e2ee(user_id=alice.user_id)
    token2 = alice2.c.access_token
    status, latest = await raw.request("GET", "/room_keys/version", token=token2)
    assert status == 200, latest
    assert (latest["version"], latest["algorithm"], latest["count"], latest["auth_data"]) == (
        version, BACKUP, 2, auth_data)
    assert latest["etag"] == put["etag"]
    # The new device checks the backup was made by one of its user's devices before trusting it:
    # nio's key query hands it the (self-signed) keys of alice's first device.
    await alice2.sync()
    await alice2.query_keys()
    device_keys = alice2.c.device_store[alice.user_id][alice.device_id]
    signed = dict(latest["auth_data"])
    sig = signed.pop("signatures")[alice.user_id][f"ed25519:{alice.device_id}"]
    vodozemac.Ed25519PublicKey.from_base64(device_keys.ed25519).verify_signature(
        encode_canonical_json(signed), vodozemac.Ed25519Signature.from_base64(sig))

    status, keys = await raw.request("GET", "/room_keys/keys", token=token2,
                                     params={"version": version})
    assert status == 200, keys
    assert keys == body
    for session_id, backed_up in keys["rooms"][room_id]["sessions"].items():
        # Session ids are base64, so "/" and "+" in them must be escaped in the path.
        path = f"/room_keys/keys/{quote(room_id, safe='')}/{quote(session_id, safe='')}"
        status, one = await raw.request("GET", path,
                                        token=token2, params={"version": version})
        assert status == 200 and one == backed_up, one
        restore_session(alice2, recovery, room_id, session_id, backed_up)

    hist = await alice2.c.room_messages(room_id, start=alice2.c.next_batch or "", limit=20)
    texts = {e.body for e in hist.chunk
             if isinstance(e, RoomMessageText) and e.decrypted}
    assert texts == {"first, from alice", "second, from bob"}, hist


def cross_signing_key(user_id: str, usage: str) -> tuple[Any, dict[str, Any]]:
    key = generate_signing_key("x")
    pub = encode_base64(get_verify_key(key).encode())
    key.version = pub  # the key id of a cross-signing key is its public key
    return key, {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{pub}": pub}}


async def test_cross_signing_keys_of_one_user_are_seen_by_the_other(
        e2ee: CryptoFactory, raw: Client) -> None:
    alice, bob = await e2ee("alice"), await e2ee("bob")
    await encrypted_room(alice, bob)
    await bob.sync()
    master, master_pub = cross_signing_key(alice.user_id, "master")
    ssk, ssk_pub = cross_signing_key(alice.user_id, "self_signing")
    usk, usk_pub = cross_signing_key(alice.user_id, "user_signing")
    device_sign(alice, master_pub)
    sign_json(ssk_pub, alice.user_id, master)
    sign_json(usk_pub, alice.user_id, master)
    status, body = await raw.request("POST", "/keys/device_signing/upload", {
        "master_key": master_pub, "self_signing_key": ssk_pub, "user_signing_key": usk_pub},
        alice.c.access_token)
    assert status == 200, body  # the first upload needs no user-interactive auth

    # alice's self-signing key signs her nio device's keys, as a client does after verifying.
    status, own = await raw.request("POST", "/keys/query",
                                    {"device_keys": {alice.user_id: [alice.device_id]}},
                                    alice.c.access_token)
    assert status == 200, own
    device = dict(own["device_keys"][alice.user_id][alice.device_id])
    device.pop("unsigned", None)
    cross_signed = sign_json({k: v for k, v in device.items() if k != "signatures"},
                             alice.user_id, ssk)
    status, body = await raw.request("POST", "/keys/signatures/upload",
                                     {alice.user_id: {alice.device_id: cross_signed}},
                                     alice.c.access_token)
    assert status == 200 and body.get("failures", {}) == {}, body

    resp = await bob.sync()
    assert alice.user_id in resp.device_list.changed, resp.device_list
    status, seen = await raw.request("POST", "/keys/query",
                                     {"device_keys": {alice.user_id: []}}, bob.c.access_token)
    assert status == 200, seen
    assert alice.user_id not in seen.get("user_signing_keys", {})  # only alice may see hers
    got_master = seen["master_keys"][alice.user_id]
    got_ssk = seen["self_signing_keys"][alice.user_id]
    assert got_master["keys"] == master_pub["keys"] and got_ssk["keys"] == ssk_pub["keys"]
    verify_signed_json(got_ssk, alice.user_id, get_verify_key(master))
    got_device = seen["device_keys"][alice.user_id][alice.device_id]
    verify_signed_json(got_device, alice.user_id, get_verify_key(ssk))
    assert f"ed25519:{alice.device_id}" in got_device["signatures"][alice.user_id]

    # nio still accepts the device, whose own signature is intact beside the new one.
    query = await bob.query_keys()
    assert alice.device_id in query.device_keys[alice.user_id]
    assert alice.device_id in bob.c.device_store[alice.user_id]
    # And alice herself sees her user-signing key.
    status, mine = await raw.request("POST", "/keys/query",
                                     {"device_keys": {alice.user_id: []}}, alice.c.access_token)
    assert status == 200 and mine["user_signing_keys"][alice.user_id]["keys"] == usk_pub["keys"]
