-- End-to-end encryption keys (spec "End-to-End Encryption"): the server stores public keys and
-- signatures and hands them out; it never sees a private key.

-- A device's identity keys, as the device signed them; they go when the device goes.
CREATE TABLE e2e_device_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    ts         BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);

-- One-time keys: each is handed out once (the claim deletes it).
CREATE TABLE e2e_one_time_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    ts         BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);

-- At most one fallback key per device and algorithm; claiming marks it used, not gone.
CREATE TABLE e2e_fallback_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    used       BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);

-- Cross-signing keys: the newest of each kind per user.
CREATE TABLE e2e_cross_signing_keys (
    user_id     TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    key_type    TEXT NOT NULL CHECK (key_type IN ('master', 'self_signing', 'user_signing')),
    public_key  TEXT NOT NULL,
    key_json    TEXT NOT NULL,
    stream_id   BIGINT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload, over a device's keys (target_key_id is
-- the device id) or over a master key (its public key). Served merged into those objects.
CREATE TABLE e2e_signatures (
    signer_user_id  TEXT NOT NULL,
    signer_key_id   TEXT NOT NULL,
    target_user_id  TEXT NOT NULL,
    target_key_id   TEXT NOT NULL,
    signature       TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- The device list stream: a row per change of a user's devices or cross-signing keys
-- (device_id '' for the latter), which sync's device_lists and /keys/changes read. A change
-- only one user may hear of names them in `only_for` (a user-signing key concerns only its
-- owner; a signature of someone's master key, only the signer); NULL: everyone sharing a room.
CREATE TABLE device_list_changes (
    stream_id  BIGINT NOT NULL,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    only_for   TEXT,
    PRIMARY KEY (stream_id, user_id, device_id)
);
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_id);

-- Sync's device_lists reads who joined or left the syncing user's rooms between two positions.
CREATE INDEX room_memberships_room ON room_memberships (room_id, stream_ordering);
