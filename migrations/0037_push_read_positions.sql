-- Read positions instead of an unread flag and a counts table (homeserver/push/).
--
-- Before: each notification row was inserted unread, then updated when the user read the room
-- (PostgreSQL wrote it twice), and push_counts was incremented and decremented with it. Now a
-- row is written once; what the user has read is one position per user, room and thread (the
-- stream ordering of the last event read there), and a notification is unread when it is after
-- both its room's position and its thread's. Counts are the rows after the positions (kept in
-- memory by NotificationService).

-- thread_id '' is the whole room (an unthreaded receipt, or the user's own send: every thread
-- up to there); 'main' and '$root' are one thread each (a threaded receipt). Positions only
-- move forward (m.read and m.read.private both move them, whichever is further ahead wins).
CREATE TABLE push_read (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL CHECK (thread_id IN ('', 'main') OR thread_id LIKE '$%'),
    stream_ordering BIGINT NOT NULL CHECK (stream_ordering > 0),
    PRIMARY KEY (user_id, room_id, thread_id)
);

-- The existing rows, converted so that each stays read or unread as it was. Per user and room:
-- the whole room is read up to just before its oldest unread row (or up to its newest row when
-- none is unread).
INSERT INTO push_read (user_id, room_id, thread_id, stream_ordering)
SELECT user_id, room_id, '', pos FROM (
    SELECT user_id, room_id,
           COALESCE(MIN(stream_ordering) FILTER (WHERE unread) - 1, MAX(stream_ordering)) AS pos
    FROM push_notifications GROUP BY user_id, room_id) x
WHERE pos > 0;

-- Per thread: its newest read row, where that is beyond the room's position (a threaded
-- receipt). Read rows form a prefix of each thread (receipts and sends mark everything up to
-- a point, and a room's rows are written in stream order), so no unread row is below it.
INSERT INTO push_read (user_id, room_id, thread_id, stream_ordering)
SELECT n.user_id, n.room_id, n.thread_id, MAX(n.stream_ordering)
FROM push_notifications n
LEFT JOIN push_read r ON r.user_id = n.user_id AND r.room_id = n.room_id AND r.thread_id = ''
WHERE NOT n.unread AND n.stream_ordering > COALESCE(r.stream_ordering, 0)
GROUP BY n.user_id, n.room_id, n.thread_id;

DROP TABLE push_counts;
DROP INDEX push_notifications_unread;
ALTER TABLE push_notifications DROP COLUMN unread;

-- The counts: a user's rows in a room after a position. (The primary key, user and stream
-- ordering, serves GET /notifications and the pushers' queues.)
CREATE INDEX push_notifications_room ON push_notifications (user_id, room_id, stream_ordering);
