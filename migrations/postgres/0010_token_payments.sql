-- Payments in SPL tokens (`TokenPaid`) beside SOL (`Paid`): `mint` names the token, NULL for
-- SOL; `lamports` then holds the payment in the mint's base units. What a payment is worth in
-- ledger tokens (`tokens`) is still fixed when it is recorded, at the operator's rate for its
-- asset, so a credit stays a function of its on-chain payment only.
ALTER TABLE payments ADD COLUMN mint TEXT;
