-- When the upstream answered a reservation's request (unix seconds). The expiry sweep charges a
-- served reservation whose settlement never came (the upstream did the work) and releases an
-- unserved one (nothing was produced).
ALTER TABLE reservations ADD COLUMN served_at BIGINT;
