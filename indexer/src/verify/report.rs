//! What a check found: each wallet's books from public data, and every finding with its cause
//! and the event, payment or ledger row it concerns.
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// One user's books from public data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserBooks {
    /// Every counted credit, checked against the chain or attested.
    pub credited: i64,
    pub debited: i64,
    /// The part of `credited` only the gateway's word backs (ecash).
    pub attested: i64,
    pub credits: u64,
    pub debits: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault: Option<Vault>,
}

impl UserBooks {
    pub fn balance(&self) -> i64 {
        self.credited - self.debited
    }
}

/// Why something does not reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A credit whose on-chain payment (of that user, to this namespace) does not exist.
    CreditWithoutPayment,
    /// A credit that is not its payment × the rate published for its time.
    CreditAmountDiffers,
    /// A payment no credit references, older than the grace period.
    PaymentNeverCredited,
    /// A debit that names no request.
    DebitWithoutRequest,
    /// A second credit of one payment, or a second debit of one request (not counted).
    Duplicate,
    /// Signed by a key the gateway does not publish, or one not allowed to do that (ignored).
    UnknownKey,
    /// An event the gateway's ledger names that no relay has: the data is incomplete.
    MissingEvent,
    /// A ledger row with no signed event behind it.
    Unannounced,
    /// A ledger row whose amount is not its signed event's.
    RowDiffers,
    /// A counted public entry the gateway's ledger does not have.
    NotInLedger,
    /// A ledger row younger than the publishing grace whose event is not on the relays yet
    /// (counted into what the gateway's balance should be; listed).
    InFlight,
    /// The gateway reports another balance than public data gives.
    BalanceDiffers,
}

impl Cause {
    /// Listed, but not a discrepancy: anyone may publish events.
    pub fn ignored(self) -> bool {
        matches!(self, Cause::UnknownKey | Cause::InFlight)
    }

    /// Says the data is incomplete, not that a balance is wrong.
    pub fn incomplete(self) -> bool {
        self == Cause::MissingEvent
    }
}

/// One thing that does not reconcile, and what it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub cause: Cause,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The event id, transaction signature or ledger row id it concerns.
    pub subject: String,
    pub detail: String,
}

/// The books and what does not reconcile.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub users: BTreeMap<String, UserBooks>,
    pub findings: Vec<Finding>,
    pub events: usize,
    pub payments: usize,
    /// The events counted in the books.
    #[serde(skip)]
    pub counted: HashSet<String>,
}

impl Report {
    /// True when nothing but ignored events was found.
    pub fn reconciles(&self) -> bool {
        self.findings.iter().all(|finding| finding.cause.ignored())
    }

    pub(super) fn find(&mut self, cause: Cause, user: Option<&str>, subject: &str, detail: String) {
        self.findings.push(Finding {
            cause,
            user: user.map(str::to_owned),
            subject: subject.to_owned(),
            detail,
        });
    }
}

/// A user's vault activity, by asset (`SOL` or the mint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Vault {
    pub deposited: BTreeMap<String, u64>,
    pub withdrawn: BTreeMap<String, u64>,
    pub paid: BTreeMap<String, u64>,
}
