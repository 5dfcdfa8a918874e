-- One sender per swap: a swap at a mint is sent (or sent again) only by the caller holding its
-- lease, until `lease_until` (unix seconds). An answer that is not final (the mint's
-- "pending", a timeout, a cut connection) keeps the swap; it is never forgotten until the mint
-- has answered it for good. A caller that dies lets its lease lapse, and another takes over.
ALTER TABLE cashu_swaps ADD COLUMN lease_owner TEXT;
ALTER TABLE cashu_swaps ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
