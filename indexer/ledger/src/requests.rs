//! The controller's log of user `Request`s, keyed by the request event id: what makes a
//! request paid at most once and its credit announced at least once across crashes.
use super::{now, outbox::enqueue_in, to_i64, Ledger, Result};
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Claimed; the payment may or may not have landed.
    Paying,
    Paid,
    Refused,
}

impl RequestState {
    fn as_str(self) -> &'static str {
        match self {
            RequestState::Paying => "paying",
            RequestState::Paid => "paid",
            RequestState::Refused => "refused",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "paid" => RequestState::Paid,
            "refused" => RequestState::Refused,
            _ => RequestState::Paying,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub id: String,
    pub user: String,
    pub nonce: u64,
    pub amount: u64,
    pub state: RequestState,
    pub signature: Option<String>,
    pub reason: Option<String>,
    /// The request event as received.
    pub event_json: Option<String>,
}

impl Ledger {
    /// Claims request `id` for payment. Returns `None` when this call claimed it, or the
    /// existing record when it was seen before (a replay, or a restart mid-payment).
    /// `event_json` is kept so that a restarted controller can resume the request.
    pub async fn claim_request(
        &self,
        id: &str,
        user: &str,
        nonce: u64,
        amount: u64,
        event_json: &str,
    ) -> Result<Option<RequestRecord>> {
        let inserted = sqlx::query(
            "INSERT INTO requests (id, user_key, nonce, amount, state, event_json, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'paying', $5, $6, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(user)
        .bind(to_i64(nonce)?)
        .bind(to_i64(amount)?)
        .bind(event_json)
        .bind(now())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(None);
        }
        self.request(id).await
    }

    pub async fn request(&self, id: &str) -> Result<Option<RequestRecord>> {
        let row = sqlx::query("SELECT * FROM requests WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| record(&row)).transpose()
    }

    /// Requests claimed but not finished: to resume after a crash.
    pub async fn unfinished_requests(&self) -> Result<Vec<RequestRecord>> {
        let rows = sqlx::query("SELECT * FROM requests WHERE state = 'paying' ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record).collect()
    }

    /// Marks request `id` finished and queues its announcements (credit and status events,
    /// as `(dedupe key, JSON)`) in the same transaction.
    pub async fn finish_request(
        &self,
        id: &str,
        state: RequestState,
        signature: Option<&str>,
        reason: Option<&str>,
        events: &[(String, String)],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE requests SET state = $1, signature = $2, reason = $3, updated_at = $4 WHERE id = $5")
            .bind(state.as_str())
            .bind(signature)
            .bind(reason)
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for (dedupe_key, json) in events {
            enqueue_in(&mut *tx, dedupe_key, json).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn record(row: &sqlx::any::AnyRow) -> Result<RequestRecord> {
    Ok(RequestRecord {
        id: row.try_get("id")?,
        user: row.try_get("user_key")?,
        nonce: row.try_get::<i64, _>("nonce")?.max(0) as u64,
        amount: row.try_get::<i64, _>("amount")?.max(0) as u64,
        state: RequestState::parse(&row.try_get::<String, _>("state")?),
        signature: row.try_get("signature")?,
        reason: row.try_get("reason")?,
        event_json: row.try_get("event_json")?,
    })
}
