-- Read receipts (m.read, m.read.private): one row per (room, type, user, thread), overwritten by
-- each new receipt; stream_id orders them for /sync. thread_id '' is an unthreaded receipt.
CREATE TABLE receipts (
    room_id       TEXT NOT NULL REFERENCES rooms (room_id),
    receipt_type  TEXT NOT NULL CHECK (receipt_type IN ('m.read', 'm.read.private')),
    user_id       TEXT NOT NULL,
    thread_id     TEXT NOT NULL DEFAULT '',
    event_id      TEXT NOT NULL,
    data          TEXT NOT NULL,
    stream_id     BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_stream ON receipts (stream_id);
CREATE INDEX receipts_room_stream ON receipts (room_id, stream_id);
