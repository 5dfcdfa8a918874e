-- Login nonces are stateless now (an HMAC the gateway checks without a lookup), so the table of
-- issued nonces goes; login records each nonce it accepts until the nonce expires, so a
-- captured login signature cannot be replayed at any replica.
DROP TABLE login_nonces;

CREATE TABLE used_login_nonces (
    nonce      TEXT PRIMARY KEY,
    wallet     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_login_nonces_expiry ON used_login_nonces (expires_at);

-- Delegated keys their wallet revoked; a hold on a key listed here is refused, in the same
-- transaction that would take it, on every replica.
CREATE TABLE key_revocations (
    key_id     TEXT PRIMARY KEY,
    user_key   TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX key_revocations_expiry ON key_revocations (expires_at);
