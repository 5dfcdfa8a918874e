//! Where each watcher stopped, so a restart resumes instead of starting over. Each cursor
//! keeps when it was written, so a reader can tell a value that cannot be right (later than
//! its own writing time) from one that can.
use super::{now, Ledger, Result};
use sqlx::Row;

impl Ledger {
    /// The cursor `name`, if one was saved.
    pub async fn cursor(&self, name: &str) -> Result<Option<String>> {
        Ok(self.cursor_with_time(name).await?.map(|(value, _)| value))
    }

    /// The cursor `name` and the Unix time it was written.
    pub async fn cursor_with_time(&self, name: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT value, updated_at FROM cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|row| Ok::<_, sqlx::Error>((row.try_get("value")?, row.try_get("updated_at")?)))
            .transpose()?)
    }

    /// Saves the cursor `name`, written now.
    pub async fn set_cursor(&self, name: &str, value: &str) -> Result<()> {
        self.set_cursor_at(name, value, now()).await
    }

    /// Saves the cursor `name`, written at `at` (Unix seconds; the caller's clock).
    pub async fn set_cursor_at(&self, name: &str, value: &str, at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO cursors (name, value, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(value)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
