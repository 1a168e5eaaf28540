-- User-interactive auth sessions (spec "User-Interactive Authentication API"). Kept in the
-- database so that a flow started before a restart, or on another process sharing the database,
-- can be completed. A session belongs to one API call (`operation`, e.g. the route of
-- /account/password) and, except for registration, to one user. It is deleted when its flow
-- completes (so one completed flow authorises one request) and expired ones are swept by age.
CREATE TABLE uia_sessions (
    session_id  TEXT PRIMARY KEY,
    operation   TEXT NOT NULL,
    user_id     TEXT REFERENCES users(user_id) ON DELETE CASCADE,  -- NULL: registration
    completed   TEXT[] NOT NULL DEFAULT '{}',
    created_ts  BIGINT NOT NULL
);
CREATE INDEX uia_sessions_created ON uia_sessions (created_ts);
