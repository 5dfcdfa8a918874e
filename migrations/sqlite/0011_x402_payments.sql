-- x402 `exact` payments: a transfer of an accepted token to the namespace treasury, signed by
-- its payer, co-signed by the gateway as fee payer and submitted by it. A row is claimed
-- before the transaction is sent, keyed by the transaction's id, so replicas sharing the
-- ledger send it once and credit it once: the request that moves it from 'submitted' to
-- 'credited' is the one request it pays for (NULL: credited by the sweep after its request
-- was lost); the credit itself is an ordinary payment + credit entry, like a chain payment's.
CREATE TABLE x402_payments (
    signature  TEXT PRIMARY KEY,
    payer      TEXT NOT NULL,
    mint       TEXT NOT NULL,
    amount     BIGINT NOT NULL CHECK (amount > 0),
    tokens     BIGINT NOT NULL CHECK (tokens >= 0),
    blockhash  TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('submitted', 'credited', 'failed')),
    request_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX x402_payments_state ON x402_payments (state, created_at);
