"""A key backup round trip with real cryptography: a megolm session encrypts messages in an
encrypted room, its key is backed up with `m.megolm_backup.v1.curve25519-aes-sha2`, and a new
device that has only the backup decryption key restores it and decrypts the room's history.

matrix-nio 0.26 has no key backup API (and its Olm machine needs /keys/*, which is another part
of issue 7), so nio is the client for login, room and history, and the cryptography is done with
vodozemac (the library nio's `e2e` extra installs) exactly as a client does it: PkEncryption to
the backup's public key, PkDecryption with the decryption key, megolm session export and
import. The backup calls are raw HTTP with the nio clients' access tokens.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import vodozemac
from nio import MessageDirection, RoomCreateResponse, RoomMessagesResponse, RoomSendResponse

from tests.e2e.conftest import NioFactory, nio_login
from tests.helpers import Client

BACKUP = "m.megolm_backup.v1.curve25519-aes-sha2"
MEGOLM = "m.megolm.v1.aes-sha2"


async def _call(raw: Client, token: str, method: str, path: str, body: Any = None,
                **params: str) -> Any:
    status, data = await raw.request(method, path, body, token, params=params or None)
    assert status == 200, (method, path, status, data)
    return data


async def test_backup_restores_megolm_session_on_a_new_device(
        nio_user: NioFactory, nio_client: Any, raw: Client) -> None:
    alice = await nio_user("alice")
    created = await alice.room_create(initial_state=[{
        "type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}])
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id

    # Alice's device: identity keys, an outbound megolm session and her own inbound copy.
    account = vodozemac.Account()
    outbound = vodozemac.GroupSession()
    inbound = vodozemac.InboundGroupSession(outbound.session_key)
    texts = ["the first secret", "the second secret", "the third secret"]
    for text in texts:
        payload = json.dumps({"type": "m.room.message", "room_id": room_id,
                              "content": {"msgtype": "m.text", "body": text}})
        content = {"algorithm": MEGOLM, "sender_key": account.curve25519_key.to_base64(),
                   "session_id": outbound.session_id, "device_id": alice.device_id,
                   "ciphertext": outbound.encrypt(payload.encode()).to_base64()}
        sent = await alice.room_send(room_id, "m.room.encrypted", content)
        assert isinstance(sent, RoomSendResponse), sent

    # Alice creates a backup and backs the session up, encrypted to the backup's key.
    decryption_key = vodozemac.Curve25519SecretKey()
    public_key = vodozemac.PkDecryption.from_key(decryption_key).public_key.to_base64()
    version = (await _call(raw, alice.access_token, "POST", "/room_keys/version",
                           {"algorithm": BACKUP, "auth_data": {"public_key": public_key}})
               )["version"]
    backed_up = {"algorithm": MEGOLM, "forwarding_curve25519_key_chain": [],
                 "sender_key": account.curve25519_key.to_base64(),
                 "sender_claimed_keys": {"ed25519": account.ed25519_key.to_base64()},
                 "session_key": inbound.export_at(0).to_base64()}
    encrypted = vodozemac.PkEncryption.from_key(
        vodozemac.Curve25519PublicKey.from_base64(public_key)).encrypt(
        json.dumps(backed_up).encode())
    ephemeral, mac, ciphertext = encrypted.to_base64()
    session_path = (f"/room_keys/keys/{quote(room_id, safe='')}/"
                    f"{quote(outbound.session_id, safe='')}")
    stored = await _call(raw, alice.access_token, "PUT", session_path, {
        "first_message_index": inbound.first_known_index, "forwarded_count": 0,
        "is_verified": True,
        "session_data": {"ephemeral": ephemeral, "ciphertext": ciphertext, "mac": mac}},
        version=version)
    assert stored["count"] == 1

    # A new device of alice's, which has nothing but the decryption key (say, typed in).
    phone = await nio_login(nio_client, alice.user_id, "PHONE")
    typed = decryption_key.to_base64()
    restore = vodozemac.PkDecryption.from_key(vodozemac.Curve25519SecretKey.from_base64(typed))
    info = await _call(raw, phone.access_token, "GET", "/room_keys/version")
    assert info["version"] == version and info["algorithm"] == BACKUP and info["count"] == 1
    # The backup is trusted because its public key is the one the decryption key derives.
    assert info["auth_data"]["public_key"] == restore.public_key.to_base64()
    keys = await _call(raw, phone.access_token, "GET", "/room_keys/keys", version=version)
    sessions: dict[str, vodozemac.InboundGroupSession] = {}
    for sid, key in keys["rooms"][room_id]["sessions"].items():
        data = key["session_data"]
        plain = restore.decrypt(vodozemac.Message.from_base64(
            data["ciphertext"], data["mac"], data["ephemeral"]))
        session = json.loads(plain)
        assert session["sender_key"] == account.curve25519_key.to_base64()
        sessions[sid] = vodozemac.InboundGroupSession.import_session(
            vodozemac.ExportedSessionKey(session["session_key"]))
    assert list(sessions) == [outbound.session_id]

    # The new device reads the room's history and decrypts every message.
    history = await phone.room_messages(room_id, start="", direction=MessageDirection.back,
                                        limit=50)
    assert isinstance(history, RoomMessagesResponse), history
    decrypted = []
    for ev in reversed(history.chunk):
        if ev.source["type"] != "m.room.encrypted":
            continue
        c = ev.source["content"]
        clear = sessions[c["session_id"]].decrypt(
            vodozemac.MegolmMessage.from_base64(c["ciphertext"]))
        decrypted.append(json.loads(clear.plaintext)["content"]["body"])
    assert decrypted == texts
