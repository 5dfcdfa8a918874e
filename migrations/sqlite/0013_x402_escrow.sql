-- x402 `escrow` payments: a registered wallet signs the program's spending authorisation for a
-- request's worst case; the gateway `lock_token`s it, serves the request, and `settle_token`s
-- the actual cost (the rest stays in the wallet's vault). A row is claimed before the lock is
-- sent, keyed by the lock account (one per wallet and nonce), so replicas sharing the ledger
-- lock an authorisation once and settle it once. The settlement is credited to the payer as
-- an ordinary payment + credit entry, and the request's debit charged against it.
--   locking  -> locked (the lock landed) | failed (it never will)
--   locked   -> settling (the cost is known: `cost`, `units`, usage, and the settlement's
--               transaction, replaced only once it expired unseen) | released (settled at 0)
--   settling -> settled (the settlement landed and was credited)
--   settled  -> charged (the request's debit was charged)
CREATE TABLE x402_locks (
    lock              TEXT PRIMARY KEY,
    payer             TEXT NOT NULL,
    mint              TEXT NOT NULL,
    nonce             BIGINT NOT NULL,
    max_amount        BIGINT NOT NULL CHECK (max_amount > 0),
    deadline          BIGINT NOT NULL,
    request_id        TEXT NOT NULL,
    lock_tx           TEXT NOT NULL,
    blockhash         TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN
                          ('locking', 'locked', 'settling', 'settled', 'charged', 'released', 'failed')),
    cost              BIGINT,
    units             BIGINT,
    model             TEXT,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    settle_tx         TEXT,
    settle_blockhash  TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX x402_locks_state ON x402_locks (state, updated_at);
