-- Only pending credits are ever looked up by status (to settle them when their payment comes,
-- or to sweep them): an index over every entry's status cost each insert a write into an index
-- of three values. Indexing the pending ones alone, by age, serves both lookups.
DROP INDEX entries_status;
CREATE INDEX entries_pending ON entries (created_at) WHERE status = 'pending';
