//! Entries the gateway writes on its own word — ecash and x402 credits, ecash change — have no
//! controller-signed credit behind them, so the gateway announces each with an event it signs
//! (queued in the outbox with the entry, the entry keeping the event's id): everything that
//! moves a balance is public, and `indexer verify` can check it (the ecash ones as attested
//! only: a mint's records are not public).
use super::{
    outbox::{announce_in, Announcement},
    sql::Sql,
    Result,
};
use std::{fmt, sync::Arc};

/// How an attested entry was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rail {
    /// Ecash received at an allow-listed mint (or change paid back in ecash).
    Cashu,
    /// An x402 `exact` payment: a token transfer to the treasury, on chain.
    X402,
    /// An x402 `escrow` payment: a lock settled by the program, on chain.
    Escrow,
}

impl Rail {
    /// The name announcements carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Rail::Cashu => "cashu",
            Rail::X402 => "x402",
            Rail::Escrow => "escrow",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "cashu" => Some(Rail::Cashu),
            "x402" => Some(Rail::X402),
            "escrow" => Some(Rail::Escrow),
            _ => None,
        }
    }
}

/// What an attested entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attested<'a> {
    pub user: &'a str,
    /// Positive for a credit, negative for a debit.
    pub tokens: i64,
    /// The chain transaction (x402, escrow) or the ecash receipt id (Cashu).
    pub reference: &'a str,
    pub rail: Rail,
}

type Sign = dyn Fn(&Attested<'_>) -> Option<Announcement> + Send + Sync;

/// Signs attested entries' announcements: the gateway's Nostr key. None (the indexer, the
/// ledger's own tests): nothing is announced.
#[derive(Clone, Default)]
pub struct Attestor(Option<Arc<Sign>>);

impl Attestor {
    pub fn new(
        sign: impl Fn(&Attested<'_>) -> Option<Announcement> + Send + Sync + 'static,
    ) -> Self {
        Self(Some(Arc::new(sign)))
    }

    /// Queues the announcement of entry `entry_id`, inside the caller's transaction.
    pub(super) async fn attest_in(
        &self,
        conn: &mut impl Sql,
        entry_id: &str,
        attested: &Attested<'_>,
    ) -> Result<()> {
        match self.0.as_ref().and_then(|sign| sign(attested)) {
            Some(announcement) => announce_in(conn, entry_id, &announcement).await,
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Attestor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Attestor(signs)"
        } else {
            "Attestor(none)"
        })
    }
}
