-- People and organisations, their role, and the API tokens that identify them.
CREATE TABLE users (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email       text UNIQUE CHECK (email IS NULL OR email ~ '^[^@\s]+@[^@\s]+$'),
    role        text NOT NULL
                CHECK (role IN ('homeowner', 'prosumer', 'utility', 'regulator', 'operator')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

-- Tokens are random 256-bit secrets; only their SHA-256 is stored, so a database dump does not
-- hand out credentials. A plain hash is enough for secrets of that entropy.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label        text NOT NULL DEFAULT '' CHECK (length(label) <= 200),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
