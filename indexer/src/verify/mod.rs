//! `indexer verify`: anyone's check of a gateway's books, from public data alone — the
//! program's events through any Solana RPC node and the signed events on the relays — with no
//! database and no operator secret. It rebuilds each wallet's balance ([`books`]), names
//! everything that does not reconcile, and with a wallet's login token compares the gateway's
//! own balance and statement with it, row by row ([`gateway`]). Exit status 0 only when
//! everything reconciles (events signed by keys the gateway does not publish are listed and
//! ignored: anyone may publish).
pub mod books;
pub mod gateway;
pub mod report;
pub mod sources;

use crate::chain::rpc::RpcChain;
use anyhow::Context;
use books::{Report, Trusted};
use nostr_sdk::prelude::PublicKey;
use solana_commitment_config::CommitmentConfig;
use std::time::Duration;

/// What to check, and against what.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The gateway's base URL: where its keys, program, namespace, relays and rates are
    /// published (`/.well-known/llm-gateway`).
    #[arg(long)]
    pub gateway: String,
    /// A Solana JSON-RPC URL to read the chain through. Default: the one the gateway publishes
    /// (use your own to depend on the operator for nothing).
    #[arg(long)]
    pub rpc_url: Option<String>,
    /// A relay to read the signed events from (repeat for several). Default: the gateway's.
    #[arg(long = "relay")]
    pub relays: Vec<String>,
    /// One wallet's login token (`proxy login`): also compare the gateway's balance and
    /// statement for that wallet, row by row.
    #[arg(long, env = "GATEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A payment younger than this (seconds) is not reported as never credited yet.
    #[arg(long, default_value_t = 600)]
    pub grace_seconds: i64,
    /// A ledger row younger than this (seconds) may still be on its way to the relays.
    #[arg(long, default_value_t = 60)]
    pub publish_grace_seconds: i64,
    /// Print only this wallet's books (everything is checked).
    #[arg(long)]
    pub user: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// How long a relay or the RPC node may stay silent.
    #[arg(long, default_value_t = 15)]
    pub timeout_seconds: u64,
}

/// Gathers the public facts, judges them, and (with a token) compares the gateway's word.
pub async fn check(args: &VerifyArgs, now: i64) -> anyhow::Result<Report> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_seconds))
        .build()?;
    let published = gateway::published(&http, &args.gateway).await?;
    let rpc_url = args
        .rpc_url
        .clone()
        .or(published.solana.rpc_url.clone())
        .context("the gateway publishes no RPC URL: pass --rpc-url")?;
    let relays = match args.relays.is_empty() {
        true => published.nostr.relays.clone(),
        false => args.relays.clone(),
    };
    let program_id = published
        .solana
        .program_id
        .parse()
        .context("the published program id")?;
    let machine = PublicKey::parse(&published.nostr.machine).context("the published machine")?;
    let keys = |list: &[String]| -> anyhow::Result<Vec<PublicKey>> {
        list.iter()
            .map(|key| PublicKey::parse(key).with_context(|| format!("published key {key}")))
            .collect()
    };
    let (controllers, proxies) = (
        keys(&published.nostr.controllers)?,
        keys(&published.nostr.proxies)?,
    );
    let trusted = Trusted {
        controllers: controllers.iter().map(|k| k.to_hex()).collect(),
        proxies: proxies.iter().map(|k| k.to_hex()).collect(),
    };
    let all_keys: Vec<PublicKey> = controllers.into_iter().chain(proxies).collect();
    let chain = RpcChain::new(&rpc_url, None, program_id, CommitmentConfig::confirmed());
    let timeout = Duration::from_secs(args.timeout_seconds);
    let chain_facts = sources::read_chain(&chain, published.solana.namespace_id).await?;
    let events = sources::read_relays(
        &relays,
        &published.nostr.session,
        &machine,
        &all_keys,
        timeout,
    )
    .await?;
    let announced = sources::transactions(&events);
    let facts = sources::gather(&chain, chain_facts, announced).await?;
    let mut report = books::reconcile(&facts, &trusted, &published.rates, now, args.grace_seconds);
    if let Some(token) = &args.token {
        let (reported, rows) = gateway::statement(&http, &args.gateway, token).await?;
        let published_by = now - args.publish_grace_seconds;
        gateway::compare(&mut report, &reported, &rows, &facts.events, published_by);
    }
    Ok(report)
}

/// `indexer verify`: prints the report; 0 when everything reconciles.
pub async fn run(args: VerifyArgs) -> anyhow::Result<i32> {
    let mut report = check(&args, ledger::now()).await?;
    if let Some(user) = &args.user {
        report.users.retain(|key, _| key == user);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.reconciles() { 0 } else { 1 })
}

/// The report as text: the books, then the findings, then the verdict.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "checked {} on-chain payments and {} signed events",
        report.payments, report.events
    );
    let _ = writeln!(
        out,
        "{:<46} {:>14} {:>14} {:>14} {:>12}",
        "wallet", "credited", "debited", "balance", "attested"
    );
    for (user, books) in &report.users {
        let _ = writeln!(
            out,
            "{user:<46} {:>14} {:>14} {:>14} {:>12}",
            books.credited,
            books.debited,
            books.balance(),
            books.attested
        );
    }
    for finding in &report.findings {
        let tag = if finding.cause.ignored() {
            "ignored"
        } else if finding.cause.incomplete() {
            "incomplete"
        } else {
            "wrong"
        };
        let cause = serde_json::to_value(finding.cause).unwrap_or_default();
        let _ = writeln!(
            out,
            "{tag:<10} {:<24} {} {}{}",
            cause.as_str().unwrap_or("?"),
            finding.subject,
            finding.detail,
            finding
                .user
                .as_deref()
                .map(|u| format!(" [{u}]"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if report.reconciles() {
            "everything reconciles: verified from chain and relays"
        } else {
            "does NOT reconcile"
        }
    );
    out
}
