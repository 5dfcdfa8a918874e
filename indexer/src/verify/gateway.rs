//! What the gateway says, and where it disagrees with public data: its published document
//! (keys, program, namespace, relays, rates), and for one wallet with a login token its
//! balance and its statement, row by row, each row matched to its signed event.
use super::books::{Announced, Cause, Report};
use anyhow::Context;
use common::books::RatePeriod;
use ledger::StatementEntry;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};

/// The parts of `/.well-known/llm-gateway` a check needs (the rest is ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Published {
    pub solana: PublishedChain,
    pub nostr: PublishedNostr,
    #[serde(default)]
    pub rates: Vec<RatePeriod>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PublishedChain {
    pub rpc_url: Option<String>,
    pub program_id: String,
    pub namespace_id: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PublishedNostr {
    pub relays: Vec<String>,
    pub machine: String,
    pub session: String,
    #[serde(default)]
    pub controllers: Vec<String>,
    #[serde(default)]
    pub proxies: Vec<String>,
}

/// What `/v1/balance` reports.
#[derive(Debug, Clone, Deserialize)]
pub struct Reported {
    pub user: String,
    pub credited: i64,
    pub debited: i64,
}

#[derive(Debug, Deserialize)]
struct StatementPage {
    data: Vec<StatementEntry>,
    next: Option<String>,
}

/// Reads the gateway's published document.
pub async fn published(http: &reqwest::Client, gateway: &str) -> anyhow::Result<Published> {
    let url = format!("{}/.well-known/llm-gateway", gateway.trim_end_matches('/'));
    let response = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("reading {url}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "{url} answered {}",
        response.status()
    );
    response
        .json()
        .await
        .with_context(|| format!("{url} is not a gateway document"))
}

/// The wallet's balance and whole statement, as the gateway reports them to its login token.
pub async fn statement(
    http: &reqwest::Client,
    gateway: &str,
    token: &str,
) -> anyhow::Result<(Reported, Vec<StatementEntry>)> {
    let base = gateway.trim_end_matches('/');
    let get = |url: String| http.get(url).bearer_auth(token).send();
    let response = get(format!("{base}/v1/balance"))
        .await
        .context("reading /v1/balance")?;
    anyhow::ensure!(
        response.status().is_success(),
        "/v1/balance answered {}",
        response.status()
    );
    let reported: Reported = response.json().await.context("reading /v1/balance")?;
    let mut rows = Vec::new();
    let mut after = String::new();
    loop {
        let response = http
            .get(format!("{base}/v1/statement"))
            .query(&[("after", after.as_str())])
            .bearer_auth(token)
            .send()
            .await
            .context("reading /v1/statement")?;
        anyhow::ensure!(
            response.status().is_success(),
            "/v1/statement answered {}",
            response.status()
        );
        let page: StatementPage = response.json().await.context("reading /v1/statement")?;
        rows.extend(page.data);
        match page.next {
            Some(next) if next > after => after = next,
            _ => break,
        }
    }
    Ok((reported, rows))
}

/// Which entry an event or a row is: credit or debit, and the payment or request it names
/// (the event itself when it names none).
fn key_of_event(event: &Announced) -> (bool, String) {
    let named = event
        .reference
        .clone()
        .unwrap_or_else(|| event.event_id.clone());
    (event.tokens > 0, named)
}

/// Compares the gateway's statement and balance for `reported.user` with the public books,
/// adding a finding for every row without its event (never announced, or lost by the relays),
/// every row whose amount is not its event's, every counted event the ledger lacks, and a
/// balance that differs. A row written after `published_by` (unix seconds) whose event is not
/// on the relays is still being published: counted in, and listed as in flight.
pub fn compare(
    report: &mut Report,
    reported: &Reported,
    rows: &[StatementEntry],
    events: &[Announced],
    published_by: i64,
) {
    let user = reported.user.as_str();
    let mine: Vec<&Announced> = events.iter().filter(|e| e.user == user).collect();
    let by_id: HashMap<&str, &Announced> = mine.iter().map(|e| (e.event_id.as_str(), *e)).collect();
    let by_key: HashMap<(bool, String), &Announced> = mine
        .iter()
        .filter(|e| report.counted.contains(&e.event_id))
        .map(|e| (key_of_event(e), *e))
        .collect();
    let mut matched: HashSet<(bool, String)> = HashSet::new();
    let mut in_flight = 0;
    for row in rows
        .iter()
        .filter(|row| row.status == "applied" && row.tokens != 0)
    {
        let credit = row.kind == "credit";
        let named = row.reference.clone().or_else(|| {
            row.event_id
                .as_deref()
                .and_then(|id| by_id.get(id))
                .map(|e| e.event_id.clone())
        });
        let event = named
            .map(|named| (credit, named))
            .and_then(|key| by_key.get(&key).copied())
            .or_else(|| {
                row.event_id
                    .as_deref()
                    .and_then(|id| by_id.get(id).copied())
            });
        match event {
            Some(event) if !matched.insert(key_of_event(event)) => report.find(
                Cause::Unannounced,
                Some(user),
                &row.id,
                format!(
                    "a second ledger row ({}) for the entry of event {}",
                    row.tokens, event.event_id
                ),
            ),
            Some(event) => {
                if event.tokens != row.tokens {
                    report.find(
                        Cause::RowDiffers,
                        Some(user),
                        &row.id,
                        format!(
                            "the ledger row says {}, its signed event {} says {}",
                            row.tokens, event.event_id, event.tokens
                        ),
                    );
                }
            }
            None => match &row.event_id {
                Some(event_id) if row.created_at > published_by => {
                    in_flight += row.tokens;
                    report.find(
                        Cause::InFlight,
                        Some(user),
                        &row.id,
                        format!("the ledger row ({}) is being announced as {event_id}", row.tokens),
                    );
                }
                Some(event_id) => report.find(
                    Cause::MissingEvent,
                    Some(user),
                    &row.id,
                    format!(
                        "the ledger row ({}) names event {event_id}, which no relay has: incomplete data",
                        row.tokens
                    ),
                ),
                None => report.find(
                    Cause::Unannounced,
                    Some(user),
                    &row.id,
                    format!("the ledger row ({}) has no signed event behind it", row.tokens),
                ),
            },
        }
    }
    let counted: Vec<&Announced> = mine
        .iter()
        .filter(|e| report.counted.contains(&e.event_id))
        .copied()
        .collect();
    for event in counted {
        if !matched.contains(&key_of_event(event)) {
            report.find(
                Cause::NotInLedger,
                Some(user),
                &event.event_id,
                format!("a {} the gateway's ledger does not have", event.tokens),
            );
        }
    }
    let public = report.users.get(user).map_or(0, |books| books.balance()) + in_flight;
    let gateway = reported.credited - reported.debited;
    if public != gateway {
        report.find(
            Cause::BalanceDiffers,
            Some(user),
            user,
            format!(
                "the gateway reports {gateway} (credited − debited), public data gives {public}"
            ),
        );
    }
}
