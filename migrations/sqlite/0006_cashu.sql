-- The Cashu rail. A token is received once (its receipt's id comes from its proofs' secrets);
-- what it was worth is credited to the receipt's payer (`cashu:<id>` for a token paying one
-- request, or a wallet it topped up); the change paid back is recorded on the receipt. The
-- gateway's own ecash (the proofs the mint issued to it) lives here too, and every swap at a
-- mint is written down before it is sent, so a crash in between can be replayed or restored.
CREATE TABLE cashu_receipts (
    id             TEXT PRIMARY KEY,
    mint           TEXT NOT NULL,
    user_key       TEXT NOT NULL,
    request_id     TEXT,
    state          TEXT NOT NULL CHECK (state IN ('receiving', 'received')),
    sats           BIGINT NOT NULL CHECK (sats >= 0),
    fee            BIGINT NOT NULL CHECK (fee >= 0),
    tokens_per_sat BIGINT NOT NULL CHECK (tokens_per_sat > 0),
    change_sats    BIGINT,
    change_token   TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE cashu_proofs (
    secret     TEXT PRIMARY KEY,
    mint       TEXT NOT NULL,
    keyset_id  TEXT NOT NULL,
    amount     BIGINT NOT NULL CHECK (amount > 0),
    c          TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('unspent', 'pending', 'spent')),
    swap_id    TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX cashu_proofs_unspent ON cashu_proofs (mint, state, amount);

CREATE TABLE cashu_swaps (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('receive', 'change', 'withdraw')),
    mint       TEXT NOT NULL,
    inputs     TEXT NOT NULL,
    outputs    TEXT,
    fee        BIGINT NOT NULL CHECK (fee >= 0),
    paid_sats  BIGINT NOT NULL DEFAULT 0,
    paid_token TEXT,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'done')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX cashu_swaps_pending ON cashu_swaps (state);
