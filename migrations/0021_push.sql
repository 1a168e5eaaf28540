-- Push notifications (homeserver/push/): what push-rule evaluation decided, unread counts, and
-- the users' HTTP pushers.

-- One row per (user, event) that notified the user, written in the event's transaction. It is
-- the GET /notifications list, what a read receipt marks read (and the counts go down by), and
-- the queue each pusher reads after its saved position. No foreign key to users or
-- events: the rows are written for every member on every event and must stay cheap.
CREATE TABLE push_notifications (
    user_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL CHECK (stream_ordering > 0),
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    thread_id TEXT NOT NULL CHECK (thread_id = 'main' OR thread_id LIKE '$%'),
    actions TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    ts BIGINT NOT NULL,
    unread BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (user_id, stream_ordering)
);
CREATE INDEX push_notifications_unread ON push_notifications (user_id, room_id, stream_ordering)
    WHERE unread;

-- Unread notification and highlight counts per user, room and thread ('main' is the main
-- timeline): always the number of unread push_notifications rows (incremented with each event,
-- decremented by what a receipt marks read).
CREATE TABLE push_counts (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    notification_count INTEGER NOT NULL CHECK (notification_count >= 0),
    highlight_count INTEGER NOT NULL CHECK (highlight_count >= 0),
    PRIMARY KEY (user_id, room_id, thread_id)
);

-- HTTP pushers (POST /pushers/set). `position` is the stream ordering of the last notification
-- the gateway accepted: the sender resumes after it, so a restart neither loses nor repeats.
CREATE TABLE pushers (
    id BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind = 'http'),
    app_id TEXT NOT NULL CHECK (length(app_id) BETWEEN 1 AND 64),
    pushkey TEXT NOT NULL CHECK (length(pushkey) BETWEEN 1 AND 512),
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    position BIGINT NOT NULL,
    UNIQUE (user_id, app_id, pushkey)
);
CREATE INDEX pushers_app_pushkey ON pushers (app_id, pushkey);

-- Which process runs the pusher sender (one per database): a lease renewed while it runs and
-- taken over by another process once it has expired.
CREATE TABLE push_sender_lease (
    id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    holder TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
