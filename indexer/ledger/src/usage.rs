//! One usage record per settled request, for the caller's usage endpoint.
use super::{
    now,
    sql::{args, Sql},
    Ledger, Result,
};
use sqlx::Row;

/// What a request consumed, as counted by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub model: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// A settled request, as the usage endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageRow {
    pub request_id: String,
    pub model: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// What was charged, in ledger tokens.
    pub cost: i64,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

impl Ledger {
    /// The user's most recent requests, newest first; only one key's when `key_id` is given.
    pub async fn usage(
        &self,
        user: &str,
        key_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<UsageRow>> {
        let rows = sqlx::query(
            "SELECT request_id, model, prompt_tokens, completion_tokens, cost, created_at, key_id
             FROM request_usage WHERE user_key = $1 AND ($2 IS NULL OR key_id = $2)
             ORDER BY created_at DESC, request_id LIMIT $3",
        )
        .bind(user)
        .bind(key_id)
        .bind(limit)
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageRow {
                    request_id: row.try_get("request_id")?,
                    model: row.try_get("model")?,
                    prompt_tokens: row.try_get("prompt_tokens")?,
                    completion_tokens: row.try_get("completion_tokens")?,
                    cost: row.try_get("cost")?,
                    created_at: row.try_get("created_at")?,
                    key_id: row.try_get("key_id")?,
                })
            })
            .collect()
    }
}

pub(super) async fn record_usage(
    tx: &mut impl Sql,
    request_id: &str,
    user: &str,
    key_id: Option<&str>,
    usage: &UsageRecord,
    cost: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO request_usage
           (request_id, user_key, key_id, model, prompt_tokens, completion_tokens, cost, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (request_id) DO NOTHING",
        args![
            request_id,
            user,
            key_id,
            usage.model.as_str(),
            usage.prompt_tokens,
            usage.completion_tokens,
            cost,
            now()
        ],
    )
    .await?;
    Ok(())
}
