-- Identity, second wave: sessions that slide and can be revoked one by one,
-- token signing keys shared by every daemon of the database, and one-time
-- password reset codes. See docs/ARCHITECTURE.md, "Identity".

-- Every daemon on this database signs and verifies tokens with these keys, so
-- a session made on one host works on every host. The newest key without
-- retired_at signs; a retired key still verifies until its tokens expired.
CREATE TABLE signing_keys (
    id          serial PRIMARY KEY,
    secret      bytea NOT NULL CHECK (length(secret) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);

-- One row per login. A token names its session; the session's expiry slides
-- forward on use, and revoking it (logout) stops every copy of the token.
CREATE TABLE sessions (
    id            uuid PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id),
    unix_user     text NOT NULL,
    -- The daemon host the login happened on.
    host          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

-- An empty password_hash means "no password": the account signs in by its
-- Unix user only (peer sign-in) until its owner sets one.
-- A one-time reset code made by the host admin (its argon2id hash).
ALTER TABLE users
    ADD COLUMN reset_code_hash text,
    ADD COLUMN reset_code_expires timestamptz;
