-- The ledger: per-user balances, every credit/debit once, reservations, on-chain payments,
-- resumable cursors, an outbox for Nostr, and the controller's request log.
CREATE TABLE balances (
    user_key TEXT PRIMARY KEY,
    credited BIGINT NOT NULL DEFAULT 0 CHECK (credited >= 0),
    debited  BIGINT NOT NULL DEFAULT 0 CHECK (debited >= 0),
    reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    CHECK (credited - debited - reserved >= 0)
);

CREATE TABLE entries (
    id         TEXT PRIMARY KEY,
    user_key   TEXT NOT NULL,
    tokens     BIGINT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('credit', 'debit')),
    status     TEXT NOT NULL CHECK (status IN ('applied', 'pending', 'rejected')),
    reference  TEXT,
    event_id   TEXT,
    author     TEXT,
    created_at BIGINT NOT NULL,
    applied_at BIGINT
);
CREATE INDEX entries_reference ON entries (reference);
CREATE INDEX entries_status ON entries (status);

CREATE TABLE reservations (
    id         TEXT PRIMARY KEY,
    user_key   TEXT NOT NULL,
    amount     BIGINT NOT NULL CHECK (amount > 0),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX reservations_expiry ON reservations (expires_at);

CREATE TABLE payments (
    id           TEXT PRIMARY KEY,
    signature    TEXT NOT NULL,
    user_key     TEXT NOT NULL,
    namespace_id BIGINT NOT NULL,
    nonce        BIGINT NOT NULL,
    lamports     BIGINT NOT NULL,
    slot         BIGINT NOT NULL,
    seen_at      BIGINT NOT NULL
);
CREATE INDEX payments_signature ON payments (signature);

CREATE TABLE cursors (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    dedupe_key      TEXT NOT NULL UNIQUE,
    event_json      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    published_at    BIGINT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (published_at, next_attempt_at);

CREATE TABLE requests (
    id         TEXT PRIMARY KEY,
    user_key   TEXT NOT NULL,
    nonce      BIGINT NOT NULL,
    amount     BIGINT NOT NULL,
    state      TEXT NOT NULL,
    signature  TEXT,
    reason     TEXT,
    event_json TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
