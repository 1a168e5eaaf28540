-- MSC2228 self-destructing events (homeserver/rooms/expiry.py): when each event whose content
-- has org.matrix.self_destruct_after is due to be pruned. A row is written in the event's own
-- transaction and deleted by the transaction that prunes the event's stored JSON, so an
-- expiry survives a restart and is done once, whichever process does it.
CREATE TABLE event_expiry (
    event_id  TEXT PRIMARY KEY REFERENCES events(event_id) ON DELETE CASCADE,
    expiry_ts BIGINT NOT NULL CHECK (expiry_ts >= 0)
);
CREATE INDEX event_expiry_ts ON event_expiry (expiry_ts);
