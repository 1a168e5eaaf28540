-- Application services (homeserver/appservice/). The services themselves live in their
-- registration files; the database keeps what must survive a restart.

-- Per AS: the last transaction id handed out, its delivery backoff, and which process sends
-- to it (a lease renewed while it works; another process takes over once it expires). Each AS
-- reads the event stream as the consumer 'appservice:<id>' (stream_consumers).
CREATE TABLE appservice_state (
    as_id             TEXT PRIMARY KEY,
    last_txn_id       BIGINT NOT NULL DEFAULT 0 CHECK (last_txn_id >= 0),
    failures          INT NOT NULL DEFAULT 0 CHECK (failures >= 0),
    retry_at_ts       BIGINT NOT NULL DEFAULT 0,
    holder            TEXT,
    lease_expires_ts  BIGINT NOT NULL DEFAULT 0
);

-- Transactions made but not yet accepted by the AS: written with the consumer's position,
-- deleted on the AS's 2xx, so a retry (or a restart) sends exactly the same events again.
CREATE TABLE appservice_txns (
    as_id    TEXT NOT NULL,
    txn_id   BIGINT NOT NULL CHECK (txn_id > 0),
    body     BYTEA NOT NULL,
    PRIMARY KEY (as_id, txn_id)
);

-- Rooms an AS published in its own directory list for one of its networks (spec
-- "Published room directories": PUT /directory/list/appservice/{networkId}/{roomId}).
CREATE TABLE appservice_room_list (
    as_id       TEXT NOT NULL,
    network_id  TEXT NOT NULL,
    room_id     TEXT NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    PRIMARY KEY (as_id, network_id, room_id)
);
CREATE INDEX appservice_room_list_room ON appservice_room_list (room_id);
