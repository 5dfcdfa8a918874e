//! Where each watcher stopped, so a restart resumes instead of starting over.
use super::{now, Ledger, Result};
use sqlx::Row;

impl Ledger {
    pub async fn cursor(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("value")).transpose()?)
    }

    pub async fn set_cursor(&self, name: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO cursors (name, value, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(value)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
