//! The books rebuilt from public facts alone — the program's events on chain and the signed
//! `Transaction` events on the relays — and every way they fail to reconcile, each named with
//! the event or payment it concerns. Pure: the sources (`super::sources`) gather the facts,
//! this module judges them, so the rules are tested without a chain or a relay.
//!
//! The rules are the ledger's own (`ledger::entries`, `indexer::nostr::ingest`): a credit
//! counts when a controller key signed it, it references an on-chain `pay` of that user, and
//! it is exactly what the payment is worth at the rate published for the moment it was signed;
//! one payment, one credit. A debit counts when a proxy key signed it, once per request. An
//! entry the gateway attests (a `rail`) counts when a proxy key signed it: x402 and escrow
//! ones are checked against their transaction on chain like a credit; ecash ones cannot be
//! (a mint's records are not public) and are counted as attested.
pub use super::report::{Cause, Finding, Report, UserBooks, Vault};
use common::books::{rates_at, RatePeriod};
use ledger::Rail;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A payment the program made on chain, from its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPayment {
    pub signature: String,
    pub user: String,
    /// `None`: lamports.
    pub mint: Option<String>,
    pub amount: u64,
    pub slot: u64,
    /// When its block was made, when known.
    pub block_time: Option<i64>,
    pub kind: PaymentKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentKind {
    /// `pay`/`pay_token`: a top-up the controller credits.
    Pay,
    /// `settle`/`settle_token`: an escrow lock settled by the gateway, which credits it.
    Settle,
}

/// A token transfer to the treasury found on chain: what an x402 `exact` credit references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub payer: String,
    pub mint: String,
    pub amount: u64,
}

/// A signed `Transaction` event from the relays (its signature already checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub event_id: String,
    pub author: String,
    pub created_at: i64,
    pub user: String,
    pub tokens: i64,
    pub reference: Option<String>,
    pub rail: Option<String>,
}

/// The keys whose events count, as the gateway publishes them.
#[derive(Debug, Clone, Default)]
pub struct Trusted {
    pub controllers: HashSet<String>,
    pub proxies: HashSet<String>,
}

/// Everything public, gathered.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Payments to the gateway's namespace.
    pub payments: Vec<ChainPayment>,
    /// x402 transfers referenced by credits, by transaction signature (absent: not found on
    /// chain, or not a transfer to the treasury).
    pub transfers: HashMap<String, Transfer>,
    pub events: Vec<Announced>,
    /// Vault movements per user, for the report (deposits, withdrawals).
    pub vaults: BTreeMap<String, Vault>,
}

/// What one event is, once its signer's role is known.
enum Role {
    Controller,
    Proxy,
}

/// Rebuilds every user's books from `facts`; payments older than `grace` seconds at `now`
/// that no credit references are reported.
pub fn reconcile(
    facts: &Facts,
    trusted: &Trusted,
    rates: &[RatePeriod],
    now: i64,
    grace: i64,
) -> Report {
    let mut report = Report {
        events: facts.events.len(),
        payments: facts.payments.len(),
        ..Report::default()
    };
    let mut by_signature: HashMap<(&str, PaymentKind), Vec<&ChainPayment>> = HashMap::new();
    for payment in &facts.payments {
        by_signature
            .entry((payment.signature.as_str(), payment.kind))
            .or_default()
            .push(payment);
    }
    let mut events: Vec<&Announced> = facts.events.iter().collect();
    events.sort_by(|a, b| (a.created_at, &a.event_id).cmp(&(b.created_at, &b.event_id)));
    // Payments (by kind and signature) and requests already counted.
    let mut credited: HashSet<(PaymentKind, &str)> = HashSet::new();
    let mut counted: HashSet<(&'static str, &str)> = HashSet::new();
    for event in events {
        let role = if trusted.controllers.contains(&event.author) {
            Role::Controller
        } else if trusted.proxies.contains(&event.author) {
            Role::Proxy
        } else {
            report.find(
                Cause::UnknownKey,
                Some(&event.user),
                &event.event_id,
                format!(
                    "signed by {}, a key the gateway does not publish: ignored",
                    event.author
                ),
            );
            continue;
        };
        let user = event.user.as_str();
        let rail = event.rail.as_deref().map(|name| (name, Rail::parse(name)));
        let reference = event.reference.as_deref();
        let counts = match (event.tokens.signum(), rail, role) {
            (0, _, _) => false,
            (_, Some((name, None)), _) => {
                report.find(
                    Cause::UnknownKey,
                    Some(user),
                    &event.event_id,
                    format!("a rail this verifier does not know ({name}): ignored"),
                );
                false
            }
            (1, None, Role::Controller) => credit_of_payment(
                &mut report,
                event,
                PaymentKind::Pay,
                &by_signature,
                rates,
                &mut credited,
            ),
            (1, Some((_, Some(Rail::Escrow))), Role::Proxy) => credit_of_payment(
                &mut report,
                event,
                PaymentKind::Settle,
                &by_signature,
                rates,
                &mut credited,
            ),
            (1, Some((_, Some(Rail::X402))), Role::Proxy) => {
                credit_of_transfer(&mut report, event, &facts.transfers, rates, &mut counted)
            }
            (1, Some((_, Some(Rail::Cashu))), Role::Proxy) => {
                once(&mut report, event, "cashu credit", reference, &mut counted)
            }
            (-1, Some((_, Some(Rail::Cashu))), Role::Proxy) => {
                once(&mut report, event, "cashu change", reference, &mut counted)
            }
            (-1, None, Role::Proxy) => match reference {
                Some(_) => once(&mut report, event, "debit", reference, &mut counted),
                None => {
                    report.find(
                        Cause::DebitWithoutRequest,
                        Some(user),
                        &event.event_id,
                        format!("a debit of {} names no request", -event.tokens),
                    );
                    true // the ledger applies it (by its event id): so does the balance
                }
            },
            _ => {
                report.find(
                    Cause::UnknownKey,
                    Some(user),
                    &event.event_id,
                    format!(
                        "{} may not sign a {} of {}{}: ignored",
                        event.author,
                        if event.tokens > 0 { "credit" } else { "debit" },
                        event.tokens,
                        event
                            .rail
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ),
                );
                false
            }
        };
        if counts {
            report.counted.insert(event.event_id.clone());
            let books = report.users.entry(event.user.clone()).or_default();
            if event.tokens > 0 {
                books.credited += event.tokens;
                books.credits += 1;
                if event.rail.as_deref() == Some("cashu") {
                    books.attested += event.tokens;
                }
            } else {
                books.debited += -event.tokens;
                books.debits += 1;
            }
        }
    }
    for payment in &facts.payments {
        if credited.contains(&(payment.kind, payment.signature.as_str())) || payment.amount == 0 {
            continue;
        }
        let old = payment.block_time.is_none_or(|at| now - at > grace);
        if old {
            report.find(
                Cause::PaymentNeverCredited,
                Some(&payment.user),
                &payment.signature,
                format!(
                    "{} of {} paid{} and never credited",
                    payment.amount,
                    payment.mint.as_deref().unwrap_or("lamports"),
                    payment
                        .block_time
                        .map(|at| format!(" {}s ago", now - at))
                        .unwrap_or_default()
                ),
            );
        }
    }
    for (user, vault) in &facts.vaults {
        report.users.entry(user.clone()).or_default().vault = Some(vault.clone());
    }
    report
}

/// A credit of an on-chain payment of `kind`: counted when the payment is the event's user's
/// and the amount is its worth, once.
fn credit_of_payment<'a>(
    report: &mut Report,
    event: &'a Announced,
    kind: PaymentKind,
    payments: &HashMap<(&str, PaymentKind), Vec<&ChainPayment>>,
    rates: &[RatePeriod],
    credited: &mut HashSet<(PaymentKind, &'a str)>,
) -> bool {
    let user = event.user.as_str();
    let Some(reference) = event.reference.as_deref() else {
        report.find(
            Cause::CreditWithoutPayment,
            Some(user),
            &event.event_id,
            format!("a credit of {} names no payment", event.tokens),
        );
        return false;
    };
    let paid: Vec<&&ChainPayment> = payments
        .get(&(reference, kind))
        .map(|found| found.iter().filter(|p| p.user == user).collect())
        .unwrap_or_default();
    if paid.is_empty() {
        report.find(
            Cause::CreditWithoutPayment,
            Some(user),
            &event.event_id,
            format!(
                "credits {} for {reference}, which is no payment of {user} on chain",
                event.tokens
            ),
        );
        return false;
    }
    if credited.contains(&(kind, reference)) {
        report.find(
            Cause::Duplicate,
            Some(user),
            &event.event_id,
            format!("a second credit of payment {reference}: not counted"),
        );
        return false;
    }
    let worth = rates_at(rates, event.created_at).and_then(|rates| {
        paid.iter().try_fold(0i64, |sum, p| {
            sum.checked_add(rates.worth(p.mint.as_deref(), p.amount)?)
        })
    });
    if worth != Some(event.tokens) {
        report.find(
            Cause::CreditAmountDiffers,
            Some(user),
            &event.event_id,
            format!(
                "credits {} for {reference}, which is worth {} at the published rate",
                event.tokens,
                worth.map_or("nothing known".into(), |w| w.to_string())
            ),
        );
        return false;
    }
    credited.insert((kind, reference));
    true
}

/// An x402 `exact` credit: its transfer to the treasury must be on chain, from its user, worth
/// the credit.
fn credit_of_transfer<'a>(
    report: &mut Report,
    event: &'a Announced,
    transfers: &HashMap<String, Transfer>,
    rates: &[RatePeriod],
    counted: &mut HashSet<(&'static str, &'a str)>,
) -> bool {
    let user = event.user.as_str();
    let transfer = event
        .reference
        .as_deref()
        .and_then(|reference| transfers.get(reference))
        .filter(|transfer| transfer.payer == user);
    let Some(transfer) = transfer else {
        report.find(
            Cause::CreditWithoutPayment,
            Some(user),
            &event.event_id,
            format!(
                "an x402 credit of {} whose transfer from {user} to the treasury is not on chain",
                event.tokens
            ),
        );
        return false;
    };
    let worth = rates_at(rates, event.created_at)
        .and_then(|rates| rates.worth(Some(&transfer.mint), transfer.amount));
    if worth != Some(event.tokens) {
        report.find(
            Cause::CreditAmountDiffers,
            Some(user),
            &event.event_id,
            format!(
                "an x402 credit of {} for {} base units, worth {} at the published rate",
                event.tokens,
                transfer.amount,
                worth.map_or("nothing known".into(), |w| w.to_string())
            ),
        );
        return false;
    }
    once(
        report,
        event,
        "x402 credit",
        event.reference.as_deref(),
        counted,
    )
}

/// Counts an entry keyed by `what` and its reference once; a second is a duplicate.
fn once<'a>(
    report: &mut Report,
    event: &'a Announced,
    what: &'static str,
    reference: Option<&'a str>,
    counted: &mut HashSet<(&'static str, &'a str)>,
) -> bool {
    let key = reference.unwrap_or(&event.event_id);
    if counted.insert((what, key)) {
        return true;
    }
    report.find(
        Cause::Duplicate,
        Some(&event.user),
        &event.event_id,
        format!("a second {what} for {key}: not counted"),
    );
    false
}

#[cfg(test)]
#[path = "books_tests.rs"]
mod tests;
