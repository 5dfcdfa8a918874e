-- The id of the transaction that paid an x402 payment, once it landed. A payment the gateway
-- settles itself is claimed by that id already; one settled by an external facilitator is
-- claimed by its payer's signature (the facilitator's fee-payer signature, which is the
-- transaction's id, is not known until it signs), and its id is recorded here when it lands.
-- The token account the payment moves tokens out of: its history, short and the payer's own,
-- is where a payment settled by someone else is looked for (NULL on rows claimed before).
ALTER TABLE x402_payments ADD COLUMN transaction_id TEXT;
ALTER TABLE x402_payments ADD COLUMN source TEXT;
CREATE INDEX x402_payments_transaction ON x402_payments (transaction_id);
