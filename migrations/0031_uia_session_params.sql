-- Registration over user-interactive auth (spec "Account registration"): the session remembers
-- the parameters of the request that started it (a client may finish the flow with only `auth`)
-- and, once the flow has registered an account, that account (`result`), so that the same
-- session finishing twice gives the same user instead of an error or a second account. Such a
-- session is marked `finished` rather than deleted and expires with the others.
ALTER TABLE uia_sessions
    ADD COLUMN params   TEXT,      -- JSON object: the request body without `auth`
    ADD COLUMN result   TEXT,
    ADD COLUMN finished BOOLEAN NOT NULL DEFAULT false;
