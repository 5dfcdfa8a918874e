-- What the proxy needs besides balances: per-key budgets for delegated keys, single-use login
-- nonces, and a usage record per served request.
ALTER TABLE reservations ADD COLUMN key_id TEXT;

CREATE TABLE key_budgets (
    key_id   TEXT PRIMARY KEY,
    user_key TEXT NOT NULL,
    budget   BIGINT NOT NULL CHECK (budget >= 0),
    spent    BIGINT NOT NULL DEFAULT 0 CHECK (spent >= 0),
    reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    max_uses BIGINT,
    uses     BIGINT NOT NULL DEFAULT 0,
    CHECK (spent + reserved <= budget),
    CHECK (max_uses IS NULL OR uses <= max_uses)
);

CREATE TABLE login_nonces (
    nonce      TEXT PRIMARY KEY,
    wallet     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX login_nonces_expiry ON login_nonces (expires_at);

CREATE TABLE request_usage (
    request_id        TEXT PRIMARY KEY,
    user_key          TEXT NOT NULL,
    key_id            TEXT,
    model             TEXT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost              BIGINT NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE INDEX request_usage_user ON request_usage (user_key, created_at);
