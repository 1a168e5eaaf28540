-- OpenID tokens (client-server spec "OpenID"): a user asks for one to prove their identity to
-- a third party, which checks it with this server's /_matrix/federation/v1/openid/userinfo.
-- Only a hash of the token is kept.
CREATE TABLE openid_tokens (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    expires_ts  BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);
