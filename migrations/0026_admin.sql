-- Operators (docs/admin.md): account states an admin sets, per-user rate-limit overrides,
-- blocked rooms, abuse reports, admin background jobs and server notice rooms.

-- locked: every request but logout gets 401 M_USER_LOCKED; suspended: the user may read but
-- not send (403 M_USER_SUSPENDED); shadow_banned: sends look successful and go nowhere;
-- erased: deactivated with erase (profile gone).
ALTER TABLE users ADD COLUMN locked BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN suspended BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN shadow_banned BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN erased BOOLEAN NOT NULL DEFAULT FALSE;

-- A user's own message rate limit (0 messages per second: none), replacing the configured one.
CREATE TABLE ratelimit_overrides (
    user_id              TEXT PRIMARY KEY REFERENCES users(user_id) ON DELETE CASCADE,
    messages_per_second  DOUBLE PRECISION NOT NULL CHECK (messages_per_second >= 0),
    burst_count          INTEGER NOT NULL CHECK (burst_count >= 0)
);

-- Rooms nobody on this server may join (no foreign key: a deleted room stays blocked).
CREATE TABLE blocked_rooms (
    room_id     TEXT PRIMARY KEY CHECK (room_id LIKE '!%'),
    user_id     TEXT NOT NULL,
    blocked_ts  BIGINT NOT NULL
);

-- Reports (spec "Reporting content"). The reported event, room or user may be gone by the
-- time an admin reads the report, so no foreign keys.
CREATE TABLE event_reports (
    id           BIGSERIAL PRIMARY KEY,
    received_ts  BIGINT NOT NULL,
    room_id      TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    reason       TEXT,
    score        INTEGER CHECK (score BETWEEN -100 AND 0)
);
CREATE INDEX event_reports_room ON event_reports (room_id);
CREATE INDEX event_reports_user ON event_reports (user_id);

CREATE TABLE room_reports (
    id           BIGSERIAL PRIMARY KEY,
    received_ts  BIGINT NOT NULL,
    room_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    reason       TEXT
);

CREATE TABLE user_reports (
    id              BIGSERIAL PRIMARY KEY,
    received_ts     BIGINT NOT NULL,
    target_user_id  TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    reason          TEXT
);

-- Room deletions and history purges run in the background; their status is kept here so that
-- any process can answer the status endpoints and a restart does not lose the outcome; a job
-- its process did not finish (stopped, crashed) is marked failed when that process restarts.
CREATE TABLE admin_jobs (
    id          TEXT PRIMARY KEY,
    instance    TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('delete_room', 'purge_history')),
    room_id     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('scheduled', 'active', 'complete', 'failed')),
    error       TEXT,
    result      TEXT,
    created_ts  BIGINT NOT NULL
);
CREATE INDEX admin_jobs_room ON admin_jobs (room_id, created_ts);

-- The room each user receives server notices in (one per user, as Synapse does).
CREATE TABLE server_notice_rooms (
    user_id  TEXT PRIMARY KEY REFERENCES users(user_id) ON DELETE CASCADE,
    room_id  TEXT NOT NULL
);
