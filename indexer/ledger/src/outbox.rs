//! Events that must reach the relay. They are written in the same transaction as the state
//! change they announce, and retried until a relay accepts them.
use super::{
    now,
    sql::{args, Sql},
    Ledger, Result,
};
use sqlx::Row;

/// A signed event that announces a ledger entry: queued in the outbox in the transaction that
/// writes the entry, whose row keeps the event's id, so anyone holding the public event can
/// find the row it accounts for, and a row the relays lost its event for can be told from a
/// row that was never announced (`indexer verify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// Queuing the same announcement twice is a no-op.
    pub dedupe_key: String,
    /// The Nostr event id (hex).
    pub event_id: String,
    pub event_json: String,
}

/// A signed Nostr event waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub id: i64,
    /// The Nostr event id: enqueueing the same event twice is a no-op.
    pub dedupe_key: String,
    pub event_json: String,
    pub attempts: i64,
}

impl Ledger {
    /// Queues a signed event for publishing.
    pub async fn enqueue(&self, dedupe_key: &str, event_json: &str) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        enqueue_in(&mut *conn, dedupe_key, event_json).await
    }

    /// Up to `limit` events due for a (re)try, oldest first.
    pub async fn due_outbox(&self, limit: i64) -> Result<Vec<OutboxEvent>> {
        let rows = sqlx::query(
            "SELECT id, dedupe_key, event_json, attempts FROM outbox
             WHERE published_at IS NULL AND next_attempt_at <= $1 ORDER BY id LIMIT $2",
        )
        .bind(self.now())
        .bind(limit)
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxEvent {
                    id: row.try_get("id")?,
                    dedupe_key: row.try_get("dedupe_key")?,
                    event_json: row.try_get("event_json")?,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// Marks events a relay accepted, in one statement (one commit for a whole pass).
    pub async fn mark_published(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let list = (2..ids.len() + 2)
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE outbox SET published_at = $1, attempts = attempts + 1 WHERE id IN ({list})"
        );
        let mut query = sqlx::query(&sql).bind(self.now());
        for id in ids {
            query = query.bind(*id);
        }
        query.execute(&self.pool).await?;
        Ok(())
    }

    /// Records a failed attempt; the next one waits longer each time (capped at 5 minutes).
    pub async fn mark_failed(&self, id: i64, attempts: i64, error: &str) -> Result<()> {
        let backoff = 2_i64.saturating_pow(attempts.clamp(0, 8) as u32).min(300);
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE id = $3",
        )
        .bind(self.now() + backoff)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How many events still wait for a relay.
    pub async fn outbox_backlog(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL")
            .fetch_one(&self.reads)
            .await?;
        Ok(row.try_get("n")?)
    }
}

/// Queues `announcement` and marks entry `entry_id` as announced by it.
pub(super) async fn announce_in(
    conn: &mut impl Sql,
    entry_id: &str,
    announcement: &Announcement,
) -> Result<()> {
    conn.execute(
        "UPDATE entries SET event_id = $1 WHERE id = $2",
        args![announcement.event_id.as_str(), entry_id],
    )
    .await?;
    enqueue_in(conn, &announcement.dedupe_key, &announcement.event_json).await
}

pub(super) async fn enqueue_in(
    conn: &mut impl Sql,
    dedupe_key: &str,
    event_json: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO outbox (dedupe_key, event_json, created_at, next_attempt_at)
         VALUES ($1, $2, $3, $3) ON CONFLICT (dedupe_key) DO NOTHING",
        args![dedupe_key, event_json, now()],
    )
    .await?;
    Ok(())
}
