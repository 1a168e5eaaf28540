-- Federation, part 2 (issue 11): EDUs that must arrive exactly once (to-device messages,
-- device list and signing key updates) and the cache of other servers' users' devices.

-- Durable EDUs queued per destination, written in the transaction of the change they announce
-- (a to-device send with its txn id, a device list change with its stream row) and deleted
-- when the destination acknowledged the transaction carrying them. `id` orders them per
-- destination, so one sender's to-device messages arrive in the order they were sent.
-- Typing, receipts and presence are ephemeral and queued in memory only.
CREATE TABLE federation_edu_outbox (
    id           BIGSERIAL PRIMARY KEY,
    destination  TEXT NOT NULL CHECK (destination <> ''),
    edu_type     TEXT NOT NULL CHECK (edu_type <> ''),
    content      JSONB NOT NULL
);
CREATE INDEX federation_edu_outbox_dest ON federation_edu_outbox (destination, id);

-- m.direct_to_device EDUs already delivered, by origin and message_id: a transaction retried
-- after a crash half way (or an EDU sent twice) delivers nothing twice.
CREATE TABLE federation_inbound_to_device (
    origin       TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    received_ts  BIGINT NOT NULL,
    PRIMARY KEY (origin, message_id)
);
CREATE INDEX federation_inbound_to_device_ts ON federation_inbound_to_device (received_ts);

-- Remote users' device lists, cached for users sharing a room with ours. `stream_id` is the
-- remote's position of the last m.device_list_update applied (or of the last resync); `stale`
-- means the cache may be missing an update (a gap in the prev_id chain, or a failed resync),
-- so it is not served and is fetched again (/user/devices/{userId}), also after a restart.
CREATE TABLE remote_device_lists (
    user_id    TEXT PRIMARY KEY CHECK (user_id LIKE '@%:%'),
    stream_id  BIGINT NOT NULL DEFAULT 0,
    stale      BOOLEAN NOT NULL DEFAULT TRUE,
    master_key        JSONB,
    self_signing_key  JSONB,
    updated_ts BIGINT NOT NULL
);

CREATE TABLE remote_devices (
    user_id       TEXT NOT NULL REFERENCES remote_device_lists(user_id) ON DELETE CASCADE,
    device_id     TEXT NOT NULL CHECK (device_id <> ''),
    display_name  TEXT,
    keys          JSONB,
    PRIMARY KEY (user_id, device_id)
);
