-- The media repository (homeserver/media/): metadata here, the bytes in the media store
-- (homeserver/media/storage.py), addressed by their SHA-256. A row names its content only once
-- the file is complete and renamed into place, so a crash can leave an unreferenced file (swept
-- by the retention task) but never a row without its file.

-- Local media: created (POST /media/v1/create, or an upload) by a local user. `sha256` is NULL
-- while an asynchronous upload is pending; such a row expires at `expires_ts`.
CREATE TABLE local_media (
    media_id TEXT PRIMARY KEY CHECK (media_id ~ '^[A-Za-z0-9_-]{1,255}$'),
    user_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT,
    uploaded_ts BIGINT,
    content_type TEXT,
    upload_name TEXT,
    size BIGINT CHECK (size >= 0),
    sha256 TEXT CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    -- uploaded while unauthenticated media was frozen: served by the authenticated endpoints only
    authenticated BOOLEAN NOT NULL DEFAULT TRUE,
    quarantined BOOLEAN NOT NULL DEFAULT FALSE,
    CHECK ((sha256 IS NULL) = (uploaded_ts IS NULL)),
    CHECK ((sha256 IS NULL) = (size IS NULL)),
    CHECK (sha256 IS NOT NULL OR expires_ts IS NOT NULL)
);
CREATE INDEX local_media_user ON local_media (user_id, created_ts);
CREATE INDEX local_media_sha256 ON local_media (sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX local_media_pending ON local_media (expires_ts) WHERE sha256 IS NULL;
CREATE INDEX local_media_uploaded ON local_media (uploaded_ts) WHERE sha256 IS NOT NULL;

-- Media of other servers, cached here when first asked for (over federation).
CREATE TABLE remote_media (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL CHECK (media_id ~ '^[A-Za-z0-9_-]{1,255}$'),
    content_type TEXT,
    upload_name TEXT,
    size BIGINT NOT NULL CHECK (size >= 0),
    sha256 TEXT NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    cached_ts BIGINT NOT NULL,
    last_access_ts BIGINT NOT NULL,
    authenticated BOOLEAN NOT NULL DEFAULT TRUE,
    quarantined BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (origin, media_id)
);
CREATE INDEX remote_media_sha256 ON remote_media (sha256);
CREATE INDEX remote_media_access ON remote_media (last_access_ts);

-- Thumbnails, made once per (content, size, method, animated) and kept as content of their own.
-- Keyed by the source's hash: identical uploads share their thumbnails.
CREATE TABLE media_thumbnails (
    source_sha256 TEXT NOT NULL CHECK (source_sha256 ~ '^[0-9a-f]{64}$'),
    width INTEGER NOT NULL CHECK (width > 0),
    height INTEGER NOT NULL CHECK (height > 0),
    method TEXT NOT NULL CHECK (method IN ('crop', 'scale')),
    animated BOOLEAN NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL CHECK (size >= 0),
    sha256 TEXT NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (source_sha256, width, height, method, animated)
);
CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);

-- URL previews (GET /media/preview_url), cached per URL.
CREATE TABLE url_previews (
    url TEXT PRIMARY KEY,
    og TEXT NOT NULL,
    fetched_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX url_previews_expires ON url_previews (expires_ts);
