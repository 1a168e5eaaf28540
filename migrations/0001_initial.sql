-- Parley initial schema. Forward-only: never edit once landed; add 0002_... instead.

CREATE TABLE users (
    user_id        TEXT PRIMARY KEY,
    localpart      TEXT NOT NULL UNIQUE,
    password_hash  TEXT,
    is_admin       BOOLEAN NOT NULL DEFAULT FALSE,
    is_guest       BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated    BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts     BIGINT NOT NULL
);

CREATE TABLE profiles (
    user_id      TEXT PRIMARY KEY REFERENCES users(user_id) ON DELETE CASCADE,
    displayname  TEXT,
    avatar_url   TEXT
);

CREATE TABLE devices (
    user_id       TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    device_id     TEXT NOT NULL,
    display_name  TEXT,
    last_seen_ts  BIGINT,
    last_seen_ip  TEXT,
    created_ts    BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored as SHA-256 digests: a leaked table does not leak sessions.
CREATE TABLE access_tokens (
    id          BIGSERIAL PRIMARY KEY,
    token_hash  BYTEA NOT NULL UNIQUE,
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    created_ts  BIGINT NOT NULL,
    valid_until_ms BIGINT,
    refresh_token_hash BYTEA UNIQUE,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);

CREATE TABLE registration_tokens (
    token         TEXT PRIMARY KEY,
    uses_allowed  INTEGER,
    completed     INTEGER NOT NULL DEFAULT 0,
    expiry_time   BIGINT
);

CREATE TABLE rooms (
    room_id       TEXT PRIMARY KEY,
    room_version  TEXT NOT NULL,
    creator       TEXT NOT NULL,
    is_public     BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts    BIGINT NOT NULL
);

-- State is stored as groups with deltas: a state event makes a new group holding only the
-- changed (type, state_key) rows and a pointer to the previous group; every N deltas a full
-- snapshot restarts the chain. Storage grows with state changes, never with events x members.
CREATE TABLE state_groups (
    id          BIGINT PRIMARY KEY,
    room_id     TEXT NOT NULL REFERENCES rooms(room_id),
    prev_group  BIGINT REFERENCES state_groups(id),
    chain_len   INTEGER NOT NULL
);

CREATE TABLE state_group_entries (
    state_group  BIGINT NOT NULL REFERENCES state_groups(id),
    type         TEXT NOT NULL,
    state_key    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    PRIMARY KEY (state_group, type, state_key)
);

-- The room DAG. stream_ordering is the global order sync reads in; topological_ordering
-- (depth) is the order history is paged in.
CREATE TABLE events (
    stream_ordering       BIGINT PRIMARY KEY,
    event_id              TEXT NOT NULL UNIQUE,
    room_id               TEXT NOT NULL REFERENCES rooms(room_id),
    type                  TEXT NOT NULL,
    state_key             TEXT,
    sender                TEXT NOT NULL,
    depth                 BIGINT NOT NULL,
    origin_server_ts      BIGINT NOT NULL,
    state_group           BIGINT NOT NULL REFERENCES state_groups(id),
    state_group_before    BIGINT REFERENCES state_groups(id),
    relates_to            TEXT,
    rel_type              TEXT,
    redacted_by           TEXT,
    outlier               BOOLEAN NOT NULL DEFAULT FALSE,
    json                  TEXT NOT NULL
);
CREATE INDEX events_room_topo ON events (room_id, depth, stream_ordering);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_relations ON events (relates_to, rel_type) WHERE relates_to IS NOT NULL;

CREATE TABLE event_edges (
    event_id       TEXT NOT NULL,
    prev_event_id  TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);

CREATE TABLE event_auth (
    event_id  TEXT NOT NULL,
    auth_id   TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_id)
);

CREATE TABLE forward_extremities (
    room_id   TEXT NOT NULL REFERENCES rooms(room_id),
    event_id  TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

CREATE TABLE current_state (
    room_id     TEXT NOT NULL REFERENCES rooms(room_id),
    type        TEXT NOT NULL,
    state_key   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    membership  TEXT,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE INDEX current_state_members ON current_state (state_key, membership)
    WHERE type = 'm.room.member';

-- Membership history per user, for sync's join/leave/invite sections and /forget.
CREATE TABLE room_memberships (
    event_id         TEXT PRIMARY KEY,
    room_id          TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    sender           TEXT NOT NULL,
    membership       TEXT NOT NULL,
    stream_ordering  BIGINT NOT NULL
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, stream_ordering);

CREATE TABLE forgotten_rooms (
    user_id  TEXT NOT NULL,
    room_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

CREATE TABLE room_aliases (
    alias    TEXT PRIMARY KEY,
    room_id  TEXT NOT NULL REFERENCES rooms(room_id),
    creator  TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- Idempotent sends: the same (user, device, txn_id) returns the first event id.
CREATE TABLE event_txn_ids (
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    created_ts  BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);

CREATE TABLE account_data (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL DEFAULT '',
    type       TEXT NOT NULL,
    content    TEXT NOT NULL,
    stream_id  BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_id);

CREATE TABLE filters (
    user_id      TEXT NOT NULL,
    filter_id    BIGINT NOT NULL,
    filter_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
