-- A payment's value in ledger tokens (its lamports at the deployment's rate), recorded by the
-- chain watcher: a credit applies only when it announces exactly this value.
-- Ledgers from before this migration had no deployments; their payments read as worth 0.
ALTER TABLE payments ADD COLUMN tokens BIGINT NOT NULL DEFAULT 0;
CREATE INDEX payments_user_nonce ON payments (user_key, namespace_id, nonce);
