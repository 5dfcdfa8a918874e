-- A wallet's statement (`GET /v1/statement`, `indexer verify`) pages its entries by id.
CREATE INDEX entries_user ON entries (user_key, id);

-- The rates the deployment announced, over time (`/.well-known/llm-gateway`, the catalog):
-- what a credit is checked against. A row starts a period; it lasts until the next one.
CREATE TABLE rate_periods (
    since BIGINT PRIMARY KEY,
    rates TEXT NOT NULL
);
