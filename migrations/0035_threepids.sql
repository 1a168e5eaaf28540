-- Third-party identifiers (spec "Adding Account Administrative Contact Information"), the
-- homeserver's own e-mail validation sessions, the identity servers a 3PID was bound to (so
-- that unbinding and deactivation reach them), and single sign-on (CAS) logins.

-- The 3PIDs of an account, as this homeserver validated them. An address belongs to one
-- account at most (registration, login and password reset look accounts up by it). Addresses
-- are stored as the homeserver compares them: e-mail addresses in lower case.
CREATE TABLE user_threepids (
    user_id      TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    medium       TEXT NOT NULL CHECK (medium IN ('email', 'msisdn')),
    address      TEXT NOT NULL CHECK (address <> ''),
    validated_at BIGINT NOT NULL,
    added_at     BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);

-- Which identity servers hold a binding of one of an account's 3PIDs, made through this
-- homeserver (POST /account/3pid/bind): /unbind and /delete without an id_server, and
-- deactivation, unbind at each of them.
CREATE TABLE threepid_bindings (
    user_id   TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    medium    TEXT NOT NULL,
    address   TEXT NOT NULL,
    id_server TEXT NOT NULL CHECK (id_server <> ''),
    PRIMARY KEY (user_id, medium, address, id_server)
);

-- E-mail validation sessions this homeserver runs itself (POST .../email/requestToken): the
-- client's secret, the token mailed as a link, and when the link was followed. A session is
-- (client_secret, address, send_attempt)-idempotent: a repeat with the same send_attempt
-- returns the same sid and sends nothing.
CREATE TABLE threepid_validation_sessions (
    session_id    TEXT PRIMARY KEY,
    medium        TEXT NOT NULL,
    address       TEXT NOT NULL,
    client_secret TEXT NOT NULL,
    token         TEXT NOT NULL,
    send_attempt  BIGINT NOT NULL,
    next_link     TEXT,
    created_ts    BIGINT NOT NULL,
    validated_at  BIGINT,
    UNIQUE (client_secret, medium, address)
);

-- Short-lived single-use tokens that single sign-on hands to the client (m.login.token).
CREATE TABLE login_tokens (
    token      TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    expires_ts BIGINT NOT NULL
);

-- Accounts that single sign-on created or linked: (provider, the provider's user id) -> user.
CREATE TABLE user_external_ids (
    auth_provider TEXT NOT NULL,
    external_id   TEXT NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    PRIMARY KEY (auth_provider, external_id)
);
