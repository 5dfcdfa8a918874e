//! SQLite WAL checkpoints off the hot path. By default SQLite checkpoints inside whichever
//! commit crosses the WAL threshold, and that commit waits for the database file's fsync; on the
//! ledger's single writer connection every queued request waits with it (it was the gateway's
//! p99). The writer connection turns automatic checkpoints off, and this second connection runs a
//! passive checkpoint twice a second, which never blocks the writer.
use sqlx::{any::AnyPoolOptions, AnyPool};
use std::time::Duration;

/// How often the WAL is copied back into the database file.
const EVERY: Duration = Duration::from_millis(500);

/// Opens the checkpointing connection and starts its loop; it ends when the pool is closed.
pub(super) async fn start(url: &str) -> Result<AnyPool, sqlx::Error> {
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("PRAGMA busy_timeout = 10000;")
                    .execute(conn)
                    .await
                    .map(|_| ())
            })
        })
        .connect(url)
        .await?;
    let checkpointer = pool.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            if checkpointer.is_closed() {
                return;
            }
            let done = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&checkpointer)
                .await;
            if let Err(error) = done {
                if checkpointer.is_closed() {
                    return;
                }
                tracing::warn!(%error, "ledger: WAL checkpoint failed");
            }
        }
    });
    Ok(pool)
}
