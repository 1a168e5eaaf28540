-- To-device messages (issue 3): one inbox row per recipient device, deleted when that device
-- acknowledges it with a later sync token, or with the device itself (logout) by cascade.
CREATE TABLE to_device_inbox (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    stream_id  BIGINT NOT NULL,
    sender     TEXT NOT NULL,
    type       TEXT NOT NULL,
    content    TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);

-- Idempotency of PUT /sendToDevice per (sender, sender's device, txn id).
CREATE TABLE to_device_txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    stream_id  BIGINT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);

-- The highest position ever handed out. Inbox rows are deleted once acknowledged, so their max
-- can go backwards; restarting from it would reuse positions that clients already hold in their
-- sync tokens and treat new messages as acknowledged.
CREATE TABLE to_device_stream (
    only_row  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    pos       BIGINT NOT NULL
);
INSERT INTO to_device_stream (only_row, pos) VALUES (TRUE, 0);
