-- Server-side key backups (spec "Server-side key backups", /room_keys/*), issue 7.
--
-- A user's backup versions are numbered 1, 2, ... per user and never reused: a deleted version
-- keeps its row (deleted = TRUE, auth_data emptied) so that its number is not handed out again
-- and a repeated DELETE still succeeds, as the spec asks. The latest version is the highest one
-- not deleted; keys can only be written to it.
--
-- `etag` and `key_count` describe the stored sessions. They are kept on the version row and
-- changed in the same transaction as the sessions, under that row's lock (every write of a
-- version's sessions locks its version row first), so concurrent uploads cannot skew them.
CREATE TABLE room_key_backup_versions (
    user_id    TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    version    BIGINT NOT NULL CHECK (version > 0),
    algorithm  TEXT NOT NULL CHECK (algorithm <> ''),
    auth_data  TEXT NOT NULL,  -- JSON object, as the client sent it
    etag       BIGINT NOT NULL DEFAULT 0 CHECK (etag >= 0),
    key_count  BIGINT NOT NULL DEFAULT 0 CHECK (key_count >= 0),
    deleted    BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version),
    CHECK (NOT deleted OR key_count = 0)
);
-- The latest live version of a user.
CREATE INDEX room_key_backup_versions_live ON room_key_backup_versions (user_id, version DESC)
    WHERE NOT deleted;

CREATE TABLE room_key_backup_sessions (
    user_id              TEXT NOT NULL,
    version              BIGINT NOT NULL,
    room_id              TEXT NOT NULL CHECK (room_id LIKE '!%'),
    session_id           TEXT NOT NULL CHECK (session_id <> ''),
    first_message_index  BIGINT NOT NULL CHECK (first_message_index >= 0),
    forwarded_count      BIGINT NOT NULL CHECK (forwarded_count >= 0),
    is_verified          BOOLEAN NOT NULL,
    session_data         TEXT NOT NULL,  -- JSON object, opaque to the server
    PRIMARY KEY (user_id, version, room_id, session_id),
    FOREIGN KEY (user_id, version) REFERENCES room_key_backup_versions (user_id, version)
        ON DELETE CASCADE
);
