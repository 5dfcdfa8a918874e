//! The rates a deployment announced, over time: each replica records its rates at start, and a
//! new period begins only when they change, so `/.well-known/llm-gateway` and the signed
//! catalog can publish the whole history a credit is checked against (`indexer verify`).
use super::{Ledger, LedgerError, Result};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// One period of announced rates: from `since` (unix seconds) until the next period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatePeriod {
    pub since: i64,
    /// The rates, as the gateway publishes them (JSON).
    pub rates: serde_json::Value,
}

impl Ledger {
    /// Starts a period of `rates` at `now` unless they are the latest period's already: what
    /// each replica does at start, so the history changes only when the rates do.
    pub async fn record_rates(&self, rates: &serde_json::Value, now: i64) -> Result<()> {
        let text = rates.to_string();
        let latest = sqlx::query("SELECT rates FROM rate_periods ORDER BY since DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = latest {
            if row.try_get::<String, _>("rates")? == text {
                return Ok(());
            }
        }
        // Rates that changed within the second the latest period started replace it.
        sqlx::query(
            "INSERT INTO rate_periods (since, rates) VALUES ($1, $2)
             ON CONFLICT (since) DO UPDATE SET rates = excluded.rates",
        )
        .bind(now)
        .bind(text)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every period of rates, oldest first.
    pub async fn rate_periods(&self) -> Result<Vec<RatePeriod>> {
        let rows = sqlx::query("SELECT since, rates FROM rate_periods ORDER BY since")
            .fetch_all(&self.reads)
            .await?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get("rates")?;
                Ok(RatePeriod {
                    since: row.try_get("since")?,
                    rates: serde_json::from_str(&text)
                        .map_err(|e| LedgerError::Amount(format!("stored rates: {e}")))?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::{testing::TempDatabase, Ledger};
    use serde_json::json;

    #[tokio::test]
    async fn a_rate_period_starts_only_when_the_rates_change() {
        let db = TempDatabase::sqlite();
        let ledger = Ledger::connect(&db.url).await.unwrap();
        let (one, two) = (json!({"tokens_per_sol": 1}), json!({"tokens_per_sol": 2}));
        ledger.record_rates(&one, 100).await.unwrap();
        ledger.record_rates(&one, 200).await.unwrap(); // another replica, same rates
        ledger.record_rates(&two, 300).await.unwrap();
        ledger.record_rates(&two, 400).await.unwrap();
        let three = json!({"tokens_per_sol": 3});
        ledger.record_rates(&three, 300).await.unwrap(); // changed again within that second
        let periods = ledger.rate_periods().await.unwrap();
        let periods: Vec<(i64, serde_json::Value)> =
            periods.into_iter().map(|p| (p.since, p.rates)).collect();
        assert_eq!(periods, vec![(100, one), (300, three)]);
        ledger.close().await;
        db.remove().await;
    }
}
