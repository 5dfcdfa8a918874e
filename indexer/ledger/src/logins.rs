//! Login nonces used so far, shared by every proxy replica. Nonces are issued statelessly (the
//! proxy checks its own HMAC), so issuing one writes nothing; a login records the nonce it
//! accepted until the nonce expires, and a captured login signature cannot be replayed.
use super::{Ledger, Result};

impl Ledger {
    /// Records `nonce` (valid until `expires_at`) as used by `wallet`; true exactly once per
    /// nonce. Forgets nonces that expired before `now`: they are refused by their expiry alone.
    pub async fn use_login_nonce(
        &self,
        nonce: &str,
        wallet: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        if expires_at < now {
            return Ok(false);
        }
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM used_login_nonces WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let recorded = sqlx::query(
            "INSERT INTO used_login_nonces (nonce, wallet, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(nonce)
        .bind(wallet)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(recorded == 1)
    }
}
