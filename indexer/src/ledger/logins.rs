//! Single-use login nonces, shared by every proxy replica: a captured login signature cannot
//! be replayed, because the nonce it signed is consumed by the first login.
use super::{now, Ledger, Result};

impl Ledger {
    /// Stores a fresh nonce for `wallet`, valid for `ttl_seconds`; drops expired ones.
    pub async fn issue_login_nonce(
        &self,
        nonce: &str,
        wallet: &str,
        ttl_seconds: i64,
    ) -> Result<i64> {
        let expires_at = now() + ttl_seconds;
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM login_nonces WHERE expires_at < $1")
            .bind(now())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO login_nonces (nonce, wallet, expires_at) VALUES ($1, $2, $3)")
            .bind(nonce)
            .bind(wallet)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(expires_at)
    }

    /// Consumes the nonce if it was issued to `wallet` and has not expired; true exactly once.
    pub async fn consume_login_nonce(&self, nonce: &str, wallet: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let consumed = sqlx::query(
            "DELETE FROM login_nonces WHERE nonce = $1 AND wallet = $2 AND expires_at >= $3",
        )
        .bind(nonce)
        .bind(wallet)
        .bind(now())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(consumed == 1)
    }
}
