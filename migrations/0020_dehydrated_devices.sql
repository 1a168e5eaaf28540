-- Dehydrated devices (MSC3814): at most one per user, a device row without access tokens whose
-- keys and to-device inbox are the ordinary ones; its encrypted data is kept here.
CREATE TABLE dehydrated_devices (
    user_id      TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL,
    device_data  TEXT NOT NULL,
    UNIQUE (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);
