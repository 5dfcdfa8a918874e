-- The id of the transaction that paid an x402 payment, once it landed. A payment the gateway
-- settles itself is claimed by that id already; one settled by an external facilitator is
-- claimed by its payer's signature (the facilitator's fee-payer signature, which is the
-- transaction's id, is not known until it signs), and its id is recorded here when it lands.
ALTER TABLE x402_payments ADD COLUMN transaction_id TEXT;
CREATE INDEX x402_payments_transaction ON x402_payments (transaction_id);
