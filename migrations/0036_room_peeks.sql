-- MSC2753 peeking through /sync: the world-readable rooms a device is peeking into. Kept per
-- device (a peek belongs to the device that asked), gone with its device or room. `stream_pos`
-- is the events-stream position taken when the peek started: a sync from before it sends the
-- room from its start, a sync from after it only what is new.
CREATE TABLE room_peeks (
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    room_id     TEXT NOT NULL REFERENCES rooms(room_id) ON DELETE CASCADE,
    stream_pos  BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, room_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX room_peeks_room ON room_peeks (room_id, user_id);
