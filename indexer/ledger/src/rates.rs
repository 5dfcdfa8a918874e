//! Rate limits over every replica: a caller's held requests and settled tokens per minute
//! are counted in the ledger, in the transaction that holds (or charges) the request, so
//! gateways sharing a ledger enforce one limit together, exactly. A refused hold counts
//! nothing. The statements here are SQLite's (its writer runs `spend`'s statements); the
//! Postgres writer applies [`admit`] to the window rows it has read and locked
//! (`writer::plan`).
use super::{
    sql::{args, Sql},
    LedgerError, Result,
};

/// A caller's limits, checked and counted when its request is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit<'a> {
    /// Who the limits count under: a delegated key's id, or the wallet for its sessions.
    pub caller: &'a str,
    /// The unix minute (seconds / 60) the request is counted in.
    pub minute: i64,
    /// Requests per minute.
    pub rpm: i64,
    /// Tokens (prompt and completion, as settled) per minute.
    pub tpm: i64,
}

/// Where a settled request's tokens are counted: its caller's window of the minute it settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow<'a> {
    pub caller: &'a str,
    pub minute: i64,
}

/// Refuses a request when its caller's window already holds `requests` and `tokens` at or
/// over the limits (the same rule on both engines).
pub(crate) fn admit(limit: &RateLimit<'_>, requests: i64, tokens: i64) -> Result<()> {
    let over = if requests >= limit.rpm {
        format!("{} requests per minute", limit.rpm)
    } else if tokens >= limit.tpm {
        format!("{} tokens per minute", limit.tpm)
    } else {
        return Ok(());
    };
    Err(LedgerError::RateLimited {
        limit: over,
        minute: limit.minute,
    })
}

/// Refuses a request whose caller's window is full; changes nothing.
pub(super) async fn check_request_in(conn: &mut impl Sql, limit: &RateLimit<'_>) -> Result<()> {
    let (requests, tokens) = match conn
        .fetch_row(
            "SELECT requests, tokens FROM rate_windows WHERE caller = $1 AND minute = $2",
            args![limit.caller, limit.minute],
        )
        .await?
    {
        Some(row) => (row.int(0)?, row.int(1)?),
        None => (0, 0),
    };
    admit(limit, requests, tokens)
}

/// Counts a held request in its caller's window.
pub(super) async fn count_request_in(conn: &mut impl Sql, limit: &RateLimit<'_>) -> Result<()> {
    conn.execute(
        "INSERT INTO rate_windows (caller, minute, requests, tokens) VALUES ($1, $2, 1, 0)
         ON CONFLICT (caller, minute) DO UPDATE SET requests = rate_windows.requests + 1",
        args![limit.caller, limit.minute],
    )
    .await?;
    Ok(())
}

/// Adds a settled request's tokens to its caller's window.
pub(super) async fn count_tokens_in(
    conn: &mut impl Sql,
    window: &RateWindow<'_>,
    tokens: i64,
) -> Result<()> {
    if tokens <= 0 {
        return Ok(());
    }
    conn.execute(
        "INSERT INTO rate_windows (caller, minute, requests, tokens) VALUES ($1, $2, 0, $3)
         ON CONFLICT (caller, minute) DO UPDATE SET tokens = rate_windows.tokens + $3",
        args![window.caller, window.minute, tokens],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_window_refuses_with_the_limit_it_hit() {
        let limit = RateLimit {
            caller: "k",
            minute: 7,
            rpm: 2,
            tpm: 100,
        };
        assert!(admit(&limit, 1, 99).is_ok());
        let refused = |requests, tokens| match admit(&limit, requests, tokens) {
            Err(LedgerError::RateLimited { limit, minute: 7 }) => limit,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(2, 0), "2 requests per minute");
        assert_eq!(refused(0, 100), "100 tokens per minute");
    }
}
