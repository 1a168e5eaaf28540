-- What the admin API's federation destinations show (Synapse's
-- /_synapse/admin/v1/federation/destinations): since when a destination has been failing, when
-- it last failed, and how far in the event stream its transactions got.
ALTER TABLE federation_destinations
    ADD COLUMN failure_ts BIGINT,
    ADD COLUMN retry_last_ts BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN last_success_stream BIGINT;
