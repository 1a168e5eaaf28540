-- GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event (homeserver/rooms/timestamps.py):
-- a room's served events by origin_server_ts, both ways.
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts, stream_ordering)
    WHERE (stream_ordering > 0 OR backfilled) AND NOT outlier AND rejected IS NULL
          AND NOT soft_failed;
