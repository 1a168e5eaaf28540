-- Federation, part 1 (issue 8): remote server keys, outbound per-destination queues and
-- inbound transaction de-duplication.

-- Verify keys of other servers, as fetched from them (or a notary). `key_json` is the whole
-- signed /_matrix/key/v2/server response the key came in, so this server can serve it again
-- as a notary; `valid_until_ts` is that response's (capped), `expired_ts` set for old keys.
CREATE TABLE server_keys (
    server_name     TEXT NOT NULL CHECK (server_name <> ''),
    key_id          TEXT NOT NULL CHECK (key_id LIKE 'ed25519:%'),
    verify_key      TEXT NOT NULL,
    valid_until_ts  BIGINT NOT NULL,
    expired_ts      BIGINT,
    fetched_ts      BIGINT NOT NULL,
    key_json        JSONB NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- The federation sender's per-destination queues: each served local event, for every other
-- server in its room, is written here in the same transaction as the sender's saved position,
-- and deleted once the destination acknowledged the transaction carrying it.
CREATE TABLE federation_outbox (
    destination      TEXT NOT NULL CHECK (destination <> ''),
    stream_ordering  BIGINT NOT NULL CHECK (stream_ordering > 0),
    room_id          TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    PRIMARY KEY (destination, stream_ordering)
);

-- Retry state of a destination that failed: no request before `retry_at_ts`.
CREATE TABLE federation_destinations (
    destination  TEXT PRIMARY KEY CHECK (destination <> ''),
    failures     INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    retry_at_ts  BIGINT NOT NULL DEFAULT 0,
    last_txn_id  BIGINT NOT NULL DEFAULT 0 CHECK (last_txn_id >= 0)
);

-- Inbound transactions already processed, by origin and transaction id, with the response,
-- so a retried transaction is answered the same and processed once.
CREATE TABLE federation_inbound_txns (
    origin       TEXT NOT NULL,
    txn_id       TEXT NOT NULL,
    response     JSONB NOT NULL,
    received_ts  BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
