//! The reconciliation report: every credit backed by a payment, every payment credited,
//! every debit tied to a request, and balances equal to the sum of their entries.
use super::{Ledger, Result};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct UserTotals {
    pub user: String,
    pub credited: i64,
    pub debited: i64,
    pub reserved: i64,
    pub available: i64,
    /// Sum of the user's applied entries; must equal `credited - debited`.
    pub entries_net: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AuditReport {
    /// Credit entry ids whose on-chain payment was never seen (pending or applied on grace).
    pub credits_without_payment: Vec<String>,
    /// Credit entry ids whose amount is not what their payment is worth (refused by the
    /// ledger, or applied on grace before a payment of another value landed).
    pub credits_disagreeing: Vec<String>,
    /// Payment ids (signature:index) that no credit references.
    pub payments_without_credit: Vec<String>,
    /// Debit entry ids with no request id, or refused for lack of balance.
    pub debits_without_request: Vec<String>,
    /// Users whose balance row disagrees with their entries.
    pub mismatched_users: Vec<String>,
    /// Cashu receipts whose credit or change entry disagrees with the ecash received or paid.
    pub cashu_unreconciled: Vec<String>,
    pub cashu: CashuTotals,
    pub users: Vec<UserTotals>,
}

/// The Cashu rail in sats: what the gateway holds must be what it received less what it paid
/// out (change, withdrawals) and the mints' fees for paying it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CashuTotals {
    pub received: i64,
    pub change: i64,
    pub withdrawn: i64,
    pub fees: i64,
    /// The gateway's proofs not yet spent (unspent or in a pending swap).
    pub held: i64,
}

impl CashuTotals {
    /// `held = received − change − withdrawn − fees`.
    pub fn reconciles(&self) -> bool {
        self.held == self.received - self.change - self.withdrawn - self.fees
    }
}

impl AuditReport {
    /// True when everything reconciles.
    pub fn is_clean(&self) -> bool {
        self.credits_without_payment.is_empty()
            && self.credits_disagreeing.is_empty()
            && self.payments_without_credit.is_empty()
            && self.debits_without_request.is_empty()
            && self.mismatched_users.is_empty()
            && self.cashu_unreconciled.is_empty()
            && self.cashu.reconciles()
    }
}

impl Ledger {
    pub async fn audit(&self) -> Result<AuditReport> {
        let strings = |rows: Vec<sqlx::any::AnyRow>| -> Result<Vec<String>> {
            rows.iter()
                .map(|row| Ok(row.try_get::<String, _>(0)?))
                .collect()
        };
        let credits_without_payment = strings(
            sqlx::query(
                "SELECT e.id FROM entries e WHERE e.kind = 'credit' AND e.status <> 'rejected'
                 AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.signature = e.reference AND p.user_key = e.user_key)
                 AND NOT EXISTS (SELECT 1 FROM cashu_receipts r WHERE r.id = e.id AND r.state = 'received')
                 ORDER BY e.id",
            )
            .fetch_all(&self.pool)
            .await?,
        )?;
        let credits_disagreeing = strings(
            sqlx::query(
                "SELECT e.id FROM entries e WHERE e.kind = 'credit'
                 AND EXISTS (SELECT 1 FROM payments p WHERE p.signature = e.reference AND p.user_key = e.user_key)
                 AND e.tokens <> (SELECT SUM(p.tokens) FROM payments p WHERE p.signature = e.reference AND p.user_key = e.user_key)
                 ORDER BY e.id",
            )
            .fetch_all(&self.pool)
            .await?,
        )?;
        let payments_without_credit = strings(
            sqlx::query(
                "SELECT p.id FROM payments p WHERE NOT EXISTS
                 (SELECT 1 FROM entries e WHERE e.kind = 'credit' AND e.reference = p.signature AND e.status = 'applied')
                 ORDER BY p.id",
            )
            .fetch_all(&self.pool)
            .await?,
        )?;
        let debits_without_request = strings(
            sqlx::query(
                "SELECT id FROM entries WHERE kind = 'debit' AND (reference IS NULL OR status = 'rejected') ORDER BY id",
            )
            .fetch_all(&self.pool)
            .await?,
        )?;
        let cashu_unreconciled = strings(
            sqlx::query(
                "SELECT r.id FROM cashu_receipts r WHERE r.state = 'received' AND (
                   COALESCE((SELECT SUM(e.tokens) FROM entries e WHERE e.id = r.id AND e.kind = 'credit'), 0)
                     <> r.sats * r.tokens_per_sat
                   OR COALESCE((SELECT -SUM(e.tokens) FROM entries e WHERE e.reference = r.id AND e.id LIKE 'change:%'), 0)
                     <> COALESCE(r.change_sats, 0) * r.tokens_per_sat)
                 ORDER BY r.id",
            )
            .fetch_all(&self.pool)
            .await?,
        )?;
        let totals = sqlx::query(
            "SELECT
               CAST(COALESCE((SELECT SUM(sats) FROM cashu_receipts WHERE state = 'received'), 0) AS BIGINT) AS received,
               CAST(COALESCE((SELECT SUM(paid_sats) FROM cashu_swaps WHERE state = 'done' AND kind = 'change'), 0) AS BIGINT) AS change,
               CAST(COALESCE((SELECT SUM(paid_sats) FROM cashu_swaps WHERE state = 'done' AND kind = 'withdraw'), 0) AS BIGINT) AS withdrawn,
               CAST(COALESCE((SELECT SUM(fee) FROM cashu_swaps WHERE state = 'done' AND kind <> 'receive'), 0) AS BIGINT) AS fees,
               CAST(COALESCE((SELECT SUM(amount) FROM cashu_proofs WHERE state <> 'spent'), 0) AS BIGINT) AS held",
        )
        .fetch_one(&self.pool)
        .await?;
        let cashu = CashuTotals {
            received: totals.try_get("received")?,
            change: totals.try_get("change")?,
            withdrawn: totals.try_get("withdrawn")?,
            fees: totals.try_get("fees")?,
            held: totals.try_get("held")?,
        };
        let rows = sqlx::query(
            "SELECT b.user_key, b.credited, b.debited, b.reserved,
                    CAST(COALESCE((SELECT SUM(e.tokens) FROM entries e WHERE e.user_key = b.user_key AND e.status = 'applied'), 0) AS BIGINT) AS net
             FROM balances b ORDER BY b.user_key",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut users = Vec::with_capacity(rows.len());
        let mut mismatched_users = Vec::new();
        for row in rows {
            let totals = UserTotals {
                user: row.try_get("user_key")?,
                credited: row.try_get("credited")?,
                debited: row.try_get("debited")?,
                reserved: row.try_get("reserved")?,
                available: 0,
                entries_net: row.try_get("net")?,
            };
            let totals = UserTotals {
                available: totals.credited - totals.debited - totals.reserved,
                ..totals
            };
            if totals.entries_net != totals.credited - totals.debited {
                mismatched_users.push(totals.user.clone());
            }
            users.push(totals);
        }
        Ok(AuditReport {
            credits_without_payment,
            credits_disagreeing,
            payments_without_credit,
            debits_without_request,
            mismatched_users,
            cashu_unreconciled,
            cashu,
            users,
        })
    }
}
