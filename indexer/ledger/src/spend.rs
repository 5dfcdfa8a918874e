//! The statements behind a request's ledger writes — hold, mark served, charge, release — and
//! the values they take and give ([`Hold`], [`Charge`], [`Reservation`], [`Settlement`]). The
//! bottom of one pipeline: `reservations` (the API a request calls) → `writer` (the group
//! commit) → here, on SQLite; the Postgres writer applies the same rules to rows it has read
//! and locked (`writer::plan`), and its tests and the ledger's run both engines on the same
//! cases. Each statement runs inside the batch the writer commits; none leaves a partial
//! effect when it refuses, so a refusal never spoils the batch it ran in.
//!
//! Lock order: rows are taken in the order reservations → entries → key budgets → balances
//! (several keys or users each in sorted order), so on Postgres two transactions (two
//! replicas, or a settlement and the expiry sweep) never wait on each other in a cycle.
use super::{
    ensure_user,
    entries::debit_id,
    keys::{hold_key, release_key_hold, spend_key, undo_key_hold, unhold_key, KeyLimit},
    now,
    outbox::{enqueue_in, Announcement},
    rates::{check_request_in, count_request_in, count_tokens_in, RateLimit, RateWindow},
    sql::{args, Row, Sql},
    usage::{record_usage, UsageRecord},
    LedgerError, Result,
};

/// A held amount, released by `settle`/`release` or when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: String,
    pub user: String,
    pub amount: i64,
    pub expires_at: i64,
    /// When the upstream answered (then the expiry sweep charges rather than releases it).
    pub served_at: Option<i64>,
}

/// What a settlement charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub charged: i64,
    /// What the actual cost exceeded the reservation and the remaining balance by (not charged).
    pub shortfall: i64,
    /// False when this request was settled before (nothing changed).
    pub newly_settled: bool,
}

/// What to hold before an upstream call.
#[derive(Debug, Clone)]
pub struct Hold<'a> {
    pub id: &'a str,
    pub user: &'a str,
    /// What the caller wants held.
    pub amount: i64,
    /// Hold less when that is all the balance (and the key's budget) affords, but not less
    /// than this; `None` holds exactly `amount` or nothing. Folding "what can this caller
    /// afford" into the hold saves the reads a caller would otherwise make before it.
    pub minimum: Option<i64>,
    pub ttl_seconds: i64,
    /// The delegated key whose budget this also draws on.
    pub key: Option<KeyLimit<'a>>,
    /// The caller's per-minute limits, counted over every replica sharing the ledger.
    pub rate: Option<RateLimit<'a>>,
    /// The session the request came with (its id): refused once its wallet logged it out.
    pub session: Option<&'a str>,
}

/// What a finished request cost.
#[derive(Debug, Clone)]
pub struct Charge<'a> {
    pub id: &'a str,
    pub user: &'a str,
    pub cost: i64,
    /// The delegated key that made the request: its spend is capped by its budget.
    pub key_id: Option<&'a str>,
    /// Recorded for the usage endpoint (`cost` there is what was actually charged).
    pub usage: Option<UsageRecord>,
    /// The caller's rate window the usage's tokens count in.
    pub rate: Option<RateWindow<'a>>,
}

/// Holds what `hold` asks (or, with a minimum, what is affordable) on the key, then the
/// balance; refused by either, it leaves nothing held.
pub(super) async fn hold_in(conn: &mut impl Sql, hold: &Hold<'_>) -> Result<Reservation> {
    if let Some(session) = hold.session {
        let revoked = conn
            .fetch_row(
                "SELECT 1 FROM key_revocations WHERE key_id = $1",
                args![session],
            )
            .await?;
        if revoked.is_some() {
            return Err(LedgerError::SessionRevoked);
        }
    }
    if let Some(rate) = &hold.rate {
        check_request_in(conn, rate).await?;
    }
    let minimum = hold.minimum.unwrap_or(hold.amount).clamp(1, hold.amount);
    let mut amount = hold.amount;
    if minimum < amount {
        amount = amount.min(available(conn, hold.user).await?);
        if let Some(key) = &hold.key {
            let remaining = conn
                .fetch_int(
                    "SELECT budget - spent - reserved FROM key_budgets WHERE key_id = $1",
                    args![key.key_id],
                )
                .await?;
            amount = amount.min(remaining.unwrap_or(key.budget));
        }
        // Below the minimum, the holds below refuse it with the reason.
        amount = amount.max(minimum);
    }
    if let Some(key) = &hold.key {
        hold_key(conn, hold.user, key, amount).await?;
    }
    let held = conn
        .execute(
            "UPDATE balances SET reserved = reserved + $1
             WHERE user_key = $2 AND credited - debited - reserved >= $1",
            args![amount, hold.user],
        )
        .await?;
    if held == 0 {
        if let Some(key) = &hold.key {
            undo_key_hold(conn, key.key_id, amount).await?;
        }
        return Err(LedgerError::Insufficient {
            needed: amount,
            available: available(conn, hold.user).await?,
        });
    }
    // Counted once held (a refused request leaves nothing, as everywhere in this module).
    if let Some(rate) = &hold.rate {
        count_request_in(conn, rate).await?;
    }
    let (created_at, expires_at) = (now(), now() + hold.ttl_seconds);
    conn.execute(
        "INSERT INTO reservations (id, user_key, amount, created_at, expires_at, key_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
        args![
            hold.id,
            hold.user,
            amount,
            created_at,
            expires_at,
            hold.key.as_ref().map(|key| key.key_id)
        ],
    )
    .await?;
    Ok(Reservation {
        id: hold.id.to_owned(),
        user: hold.user.to_owned(),
        amount,
        expires_at,
        served_at: None,
    })
}

/// What `user` could still hold (zero for a user the ledger has never seen).
async fn available(conn: &mut impl Sql, user: &str) -> Result<i64> {
    Ok(conn
        .fetch_int(
            "SELECT credited - debited - reserved FROM balances WHERE user_key = $1",
            args![user],
        )
        .await?
        .unwrap_or(0))
}

/// Marks reservation `id` served at `at`; false when it is already gone.
pub(super) async fn served_in(conn: &mut impl Sql, id: &str, at: i64) -> Result<bool> {
    let marked = conn
        .execute(
            "UPDATE reservations SET served_at = $1 WHERE id = $2 AND served_at IS NULL",
            args![at, id],
        )
        .await?;
    Ok(marked == 1)
}

/// Replaces the request's reservation with its cost (capped by what is available and by the
/// key's budget), records the debit, the usage and the announcement.
pub(super) async fn charge_in(
    conn: &mut impl Sql,
    charge: &Charge<'_>,
    announce: &(dyn Fn(i64) -> Option<Announcement> + Send + Sync),
) -> Result<Settlement> {
    let (id, user) = (charge.id, charge.user);
    let cost = charge.cost.max(0);
    let held = conn
        .fetch_int(
            "DELETE FROM reservations WHERE id = $1 RETURNING amount",
            args![id],
        )
        .await?
        .unwrap_or(0);
    if !insert_debit_entry(conn, id, user, now()).await? {
        // Settled before: only give back what this reservation (if any) still held.
        if let Some(key_id) = charge.key_id {
            unhold_key(conn, key_id, held).await?;
        }
        unreserve(conn, user, held).await?;
        return Ok(Settlement {
            charged: 0,
            shortfall: 0,
            newly_settled: false,
        });
    }
    let key_remaining = match charge.key_id {
        Some(key_id) => release_key_hold(conn, key_id, held).await?,
        None => None,
    };
    ensure_user(conn, user).await?;
    let available = conn
        .fetch_int(
            "UPDATE balances SET reserved = reserved - $1 WHERE user_key = $2
             RETURNING credited - debited - reserved",
            args![held, user],
        )
        .await?
        .ok_or(LedgerError::Column(0, "missing: the balance row vanished"))?;
    let charged = cost
        .min(available.max(0))
        .min(key_remaining.map_or(i64::MAX, |remaining| remaining.max(0)));
    if let (Some(key_id), Some(_)) = (charge.key_id, key_remaining) {
        spend_key(conn, key_id, charged).await?;
    }
    let announcement = announce(charged);
    let event_id = announcement.as_ref().map(|a| a.event_id.as_str());
    debit(conn, id, user, charged, event_id).await?;
    if let Some(usage) = &charge.usage {
        record_usage(conn, id, user, charge.key_id, usage, charged).await?;
        if let Some(window) = &charge.rate {
            count_tokens_in(conn, window, usage.prompt_tokens + usage.completion_tokens).await?;
        }
    }
    if let Some(announcement) = &announcement {
        enqueue_in(conn, &announcement.dedupe_key, &announcement.event_json).await?;
    }
    Ok(Settlement {
        charged,
        shortfall: cost - charged,
        newly_settled: true,
    })
}

/// Gives reservation `id` back in full; false when it is already gone.
pub(super) async fn release_in(conn: &mut impl Sql, id: &str) -> Result<bool> {
    let row = conn
        .fetch_row(
            "DELETE FROM reservations WHERE id = $1 RETURNING user_key, amount, key_id",
            args![id],
        )
        .await?;
    let Some(row) = row else { return Ok(false) };
    give_back(conn, vec![Held::from_row(&row)?]).await?;
    Ok(true)
}

/// A deleted reservation's hold, to give back or charge.
pub(super) struct Held {
    pub(super) user: String,
    pub(super) amount: i64,
    pub(super) key_id: Option<String>,
}

impl Held {
    /// From a row of `user_key, amount, key_id` (in that order).
    pub(super) fn from_row(row: &Row) -> Result<Self> {
        Ok(Self {
            user: row.text(0)?,
            amount: row.int(1)?,
            key_id: row.maybe_text(2)?,
        })
    }
}

/// Gives deleted reservations' holds back to their keys and users, in the module's lock order.
pub(super) async fn give_back(tx: &mut impl Sql, mut held: Vec<Held>) -> Result<()> {
    held.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    for hold in &held {
        if let Some(key_id) = &hold.key_id {
            unhold_key(tx, key_id, hold.amount).await?;
        }
    }
    held.sort_by(|a, b| a.user.cmp(&b.user));
    for hold in &held {
        unreserve(tx, &hold.user, hold.amount).await?;
    }
    Ok(())
}

/// Inserts request `id`'s debit entry (zero tokens until [`debit`] fills it); false when the
/// request was debited before.
pub(super) async fn insert_debit_entry(
    tx: &mut impl Sql,
    id: &str,
    user: &str,
    now: i64,
) -> Result<bool> {
    let inserted = tx
        .execute(
            "INSERT INTO entries (id, user_key, tokens, kind, status, reference, created_at, applied_at)
             VALUES ($1, $2, 0, 'debit', 'applied', $3, $4, $4) ON CONFLICT (id) DO NOTHING",
            args![debit_id(id).as_str(), user, id, now],
        )
        .await?;
    Ok(inserted == 1)
}

/// Charges `charged` to `user` as request `id`'s debit entry, announced by event `event_id`.
pub(super) async fn debit(
    tx: &mut impl Sql,
    id: &str,
    user: &str,
    charged: i64,
    event_id: Option<&str>,
) -> Result<()> {
    tx.execute(
        "UPDATE balances SET debited = debited + $1 WHERE user_key = $2",
        args![charged, user],
    )
    .await?;
    tx.execute(
        "UPDATE entries SET tokens = $1, event_id = $3 WHERE id = $2",
        args![-charged, debit_id(id).as_str(), event_id],
    )
    .await?;
    Ok(())
}

/// Gives `amount` of `user`'s reserved balance back.
pub(super) async fn unreserve(tx: &mut impl Sql, user: &str, amount: i64) -> Result<()> {
    tx.execute(
        "UPDATE balances SET reserved = reserved - $1 WHERE user_key = $2",
        args![amount, user],
    )
    .await?;
    Ok(())
}
