-- Threads (GET /_matrix/client/v1/rooms/{roomId}/threads, m.thread bundled aggregations,
-- homeserver/rooms/threads.py): a room's thread events grouped by their root, without reading
-- the room's other events.
CREATE INDEX events_threads ON events (room_id, relates_to, stream_ordering)
    WHERE rel_type = 'm.thread';
