-- The media admin API (docs/admin.md, admin_api/media.py): who quarantined an item, which
-- local items are protected from quarantine, and when local media was last downloaded (the
-- admin API's delete-by-date counts from the last access, as Synapse's does).
ALTER TABLE local_media ADD COLUMN quarantined_by TEXT;
ALTER TABLE local_media ADD COLUMN safe_from_quarantine BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE local_media ADD COLUMN last_access_ts BIGINT;
ALTER TABLE remote_media ADD COLUMN quarantined_by TEXT;
