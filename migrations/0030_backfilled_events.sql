-- Events fetched with /backfill (history from before this server joined a room): stored with
-- their state, like any event at its place in the DAG, but with negative stream orderings
-- (from events_hidden_seq) so that no sync range, push or federation feed includes them;
-- /messages serves them in topological order beside the served events.
ALTER TABLE events ADD COLUMN backfilled BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE events ADD CONSTRAINT events_backfilled_have_state
    CHECK (NOT backfilled OR (stream_ordering < 0 AND state_group IS NOT NULL AND NOT outlier
                              AND rejected IS NULL AND NOT soft_failed));
CREATE INDEX events_room_backfilled ON events (room_id, depth) WHERE backfilled;
