-- Each caller's requests and tokens per minute, counted by every replica in the transaction
-- that holds the request's spend, so that a rate limit holds over all replicas together. Rows
-- older than the previous minute are deleted by the expiry sweep.
CREATE TABLE rate_windows (
    caller   TEXT NOT NULL,
    minute   BIGINT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0 CHECK (requests >= 0),
    tokens   BIGINT NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    PRIMARY KEY (caller, minute)
);
CREATE INDEX rate_windows_minute ON rate_windows (minute);
