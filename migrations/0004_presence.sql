-- Presence (issue 3): each local user's last computed presence, kept so it survives a restart.
-- Written only when a user's state or status changes (batched by the presence sweep), never per
-- heartbeat. `stream_id` is the user's position in the presence stream at that change.

CREATE TABLE presence (
    user_id         TEXT PRIMARY KEY REFERENCES users(user_id) ON DELETE CASCADE,
    presence        TEXT NOT NULL CHECK (presence IN ('online', 'unavailable', 'offline')),
    -- A state set with PUT /presence that outranks the devices until the next online activity.
    explicit        TEXT CHECK (explicit IN ('unavailable', 'offline')),
    status_msg      TEXT,
    last_active_ts  BIGINT,
    stream_id       BIGINT NOT NULL CHECK (stream_id >= 0)
);

CREATE INDEX presence_stream_id ON presence (stream_id);
