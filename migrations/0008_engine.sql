-- The room engine (issue 6): positions and ids from sequences so several processes can share
-- the database; events that are known but not served (outliers, rejected, soft-failed); the
-- registry of live processes; saved positions of background consumers.

-- Stream positions. A sequence never hands a value out twice, whichever process asks.
CREATE SEQUENCE events_stream_seq;
CREATE SEQUENCE account_data_seq;
CREATE SEQUENCE receipts_seq;
CREATE SEQUENCE to_device_seq;
CREATE SEQUENCE presence_seq;
CREATE SEQUENCE typing_seq;
CREATE SEQUENCE device_lists_seq;
CREATE SEQUENCE state_group_seq;
-- Events that are stored but never served by stream (outliers, rejected, soft-failed) take
-- negative stream orderings, so no sync range (always >= 0) can ever include them.
CREATE SEQUENCE events_hidden_seq INCREMENT BY -1 MAXVALUE -1 START WITH -1;

DO $$
DECLARE m BIGINT;
BEGIN
    SELECT MAX(stream_ordering) INTO m FROM events;
    IF m > 0 THEN PERFORM setval('events_stream_seq', m); END IF;
    SELECT MAX(stream_id) INTO m FROM account_data;
    IF m > 0 THEN PERFORM setval('account_data_seq', m); END IF;
    SELECT MAX(stream_id) INTO m FROM receipts;
    IF m > 0 THEN PERFORM setval('receipts_seq', m); END IF;
    SELECT GREATEST((SELECT MAX(pos) FROM to_device_stream),
                    (SELECT MAX(stream_id) FROM to_device_inbox)) INTO m;
    IF m > 0 THEN PERFORM setval('to_device_seq', m); END IF;
    SELECT MAX(stream_id) INTO m FROM presence;
    IF m > 0 THEN PERFORM setval('presence_seq', m); END IF;
    SELECT MAX(id) INTO m FROM state_groups;
    IF m > 0 THEN PERFORM setval('state_group_seq', m); END IF;
END $$;

-- Outliers (auth chains, invites, knocks known without their state) and rejected events have
-- no state group. `rejected` holds why an event failed its checks: such an event is kept so
-- that it is not fetched again, but never becomes state, an extremity, or visible.
-- A soft-failed event passed auth at its own place in the DAG but not against the room's
-- current state: it is state at its position, but neither an extremity nor served.
ALTER TABLE events ALTER COLUMN state_group DROP NOT NULL;
ALTER TABLE events ADD COLUMN rejected TEXT;
ALTER TABLE events ADD COLUMN soft_failed BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE events ADD CONSTRAINT events_served_have_state
    CHECK (stream_ordering < 0 OR (state_group IS NOT NULL AND NOT outlier
                                   AND rejected IS NULL AND NOT soft_failed));
CREATE INDEX events_room_hidden ON events (room_id) WHERE stream_ordering < 0;

-- Live processes and the stream floors each publishes for the others (see
-- homeserver/storage/instances.py). Unlogged: after a database crash every process restarts
-- and republishes, and a heartbeat does not wait for a WAL flush.
CREATE UNLOGGED TABLE instances (
    name          TEXT PRIMARY KEY,
    started_ms    BIGINT NOT NULL,
    heartbeat_ms  BIGINT NOT NULL,
    floors        JSONB NOT NULL,
    peers         TEXT[] NOT NULL DEFAULT '{}'
);

-- Background consumers of the event stream (federation sender, pushers, application
-- services): the position each has processed up to, saved so a restart resumes there.
CREATE TABLE stream_consumers (
    name        TEXT PRIMARY KEY,
    stream      TEXT NOT NULL,
    position    BIGINT NOT NULL CHECK (position >= 0),
    updated_ts  BIGINT NOT NULL
);
