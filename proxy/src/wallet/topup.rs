//! `proxy topup`: buy gateway credit with SOL (or, with `--mint`, a token such as USDC) from
//! the vault. The wallet signs an authorisation for exactly AMOUNT of that asset (its next
//! nonce, a deadline), publishes it as a `Request` to the gateway's relays, waits for the
//! controller's `Status`, checks on chain that the nonce was used, and waits until the
//! gateway's ledger shows the credit.
use super::{
    account::Vault,
    amount::{show, Decimal},
    login, sol, Session, WalletArgs,
};
use anyhow::Context;
use balance_payment::authorization::{Asset, AuthorizationTerms};
use balance_payment::sdk::pda;
use common::{
    chain::client::ClientError,
    events::session_filter,
    topup::{authorization_payload, request_event},
    wire::{DsProxyMessage, StatusPayload},
};
use ledger::now;
use nostr_sdk::prelude::{Client, Event, Keys, PublicKey, RelayPoolNotification};
use serde_json::json;
use solana_sdk::{pubkey::Pubkey, signature::Signer};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// How long the relays may take to accept the connection.
const RELAY_CONNECT: Duration = Duration::from_secs(10);

/// How often the gateway's balance is read while waiting for the credit.
const BALANCE_POLL: Duration = Duration::from_millis(250);

/// What a top-up spends from the vault.
pub enum Spend {
    /// Lamports from the SOL vault.
    Sol(u64),
    /// An amount of a token the gateway takes, from the wallet's vault of it.
    Token { mint: Pubkey, amount: Decimal },
}

/// The asset, base units and decimals a top-up spends, checked against what the vault holds.
struct Checked {
    asset: Asset,
    units: u64,
    decimals: u8,
}

/// Checks `spend` against the gateway's terms and the vault, before anything is signed.
async fn check(session: &Session, spend: &Spend) -> anyhow::Result<Checked> {
    let info = session.info()?;
    let vault = Vault::read(session).await?;
    match spend {
        Spend::Sol(lamports) => {
            if let Some(max) = info.max_topup_lamports {
                anyhow::ensure!(
                    *lamports <= max,
                    "this gateway takes at most {} SOL per top-up: top up in parts",
                    sol(max)
                );
            }
            anyhow::ensure!(
                *lamports <= vault.free(),
                "insufficient funds: the vault has {} SOL free for top-ups (held {}, locked {}, \
                 rent-exempt minimum {}); add some with `proxy deposit`",
                sol(vault.free()),
                sol(vault.held),
                sol(vault.locked),
                sol(vault.rent_exempt)
            );
            Ok(Checked {
                asset: Asset::Lamports,
                units: *lamports,
                decimals: 9,
            })
        }
        Spend::Token { mint, amount } => {
            let taken: Vec<&str> = info.tokens.iter().map(|t| t.symbol.as_str()).collect();
            anyhow::ensure!(
                info.tokens.iter().any(|t| t.mint == mint.to_string()),
                "this gateway does not take the token {mint} (it takes SOL{})",
                taken.iter().map(|s| format!(", {s}")).collect::<String>()
            );
            let user = session.keypair.pubkey();
            let token = session.client.mint(mint).await?;
            let units = amount.units(token.decimals).map_err(anyhow::Error::msg)?;
            let balance = session
                .client
                .token_balance(&user, mint)
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "you have no vault of the token {mint}: `proxy deposit --mint` first"
                    )
                })?;
            let held = session
                .client
                .token_amount(&pda::token_vault(&user, mint))
                .await?;
            let free = held.saturating_sub(balance.locked_amount);
            anyhow::ensure!(
                units > 0 && units <= free,
                "insufficient funds: the vault has {} of the token {mint} free for top-ups \
                 (held {}, locked {}); add some with `proxy deposit --mint`",
                show(free, token.decimals),
                show(held, token.decimals),
                show(balance.locked_amount, token.decimals)
            );
            Ok(Checked {
                asset: Asset::Token(*mint),
                units,
                decimals: token.decimals,
            })
        }
    }
}

pub async fn run(
    args: &WalletArgs,
    spend: Spend,
    valid_for: i64,
    wait: Duration,
) -> anyhow::Result<()> {
    let session = Session::open(args, true).await?;
    let info = session.info()?.clone();
    let user = session.keypair.pubkey();
    let global = session
        .client
        .global()
        .await?
        .ok_or(ClientError::NotInitialized)?;
    let spend = check(&session, &spend).await?;
    let vault = Vault::read(&session).await?;
    anyhow::ensure!(valid_for > 0, "--valid-for must be positive");
    let machine = PublicKey::parse(&info.nostr.machine)
        .with_context(|| format!("the gateway's Nostr address {:?}", info.nostr.machine))?;
    let controllers = info
        .nostr
        .controllers
        .iter()
        .map(|key| PublicKey::parse(key))
        .collect::<Result<Vec<_>, _>>()
        .context("the gateway's controller keys")?;
    anyhow::ensure!(
        !info.nostr.relays.is_empty(),
        "the gateway publishes no relay"
    );

    let token = login::login(
        &session.http,
        &args.gateway,
        &session.keypair,
        Some(&info.audience),
    )
    .await?;
    let credited_before = credited(&session, &args.gateway, &token).await?;

    let terms = AuthorizationTerms {
        program_id: balance_payment::ID,
        cluster: global.cluster,
        namespace_id: info.solana.namespace_id,
        user,
        nonce: vault.nonce,
        max_amount: spend.units,
        asset: spend.asset,
        deadline: now() + valid_for,
        extra_data: [0; 32],
    };
    let request = request_event(
        &authorization_payload(&session.keypair, &terms)?,
        &info.nostr.session,
        &machine,
    )?;
    let give_up = Instant::now() + wait;
    let relays = connect(&info.nostr.relays).await?;
    let status = publish_and_wait(
        &relays,
        &request,
        &info.nostr.session,
        machine,
        &controllers,
        give_up,
    )
    .await;
    relays.shutdown().await;
    let status = status.map_err(|e| {
        if now() > terms.deadline {
            return anyhow::anyhow!(
                "{e:#}. The authorisation expired (its deadline, {}, has passed) before the \
                 controller redeemed it: run `proxy topup` again, with a longer --valid-for if \
                 the gateway is slow.",
                terms.deadline
            );
        }
        anyhow::anyhow!(
            "{e:#}. The authorisation (nonce {}) stays redeemable until {}; running `proxy topup` \
             again is safe: every authorisation for one nonce can be redeemed at most once.",
            terms.nonce,
            terms.deadline
        )
    })?;
    if let Some(error) = status.error {
        let expired = error.contains("AuthorizationExpired");
        anyhow::bail!(
            "the controller refused the top-up: {error}{}",
            if expired {
                " (the authorisation expired before it was redeemed: try a longer --valid-for)"
            } else {
                ""
            }
        );
    }
    let (signature, tokens) = match (status.signature, status.tokens) {
        (Some(signature), Some(tokens)) => (signature, tokens),
        _ => anyhow::bail!("the controller's answer names no payment"),
    };
    // The controller's word is checked against the chain: the nonce was used.
    let after = Vault::read(&session).await?;
    anyhow::ensure!(
        after.nonce > terms.nonce,
        "the controller says it paid ({signature}), but nonce {} is still unused on chain",
        terms.nonce
    );
    let balance = wait_for_credit(
        &session,
        &args.gateway,
        &token,
        credited_before + tokens,
        give_up,
    )
    .await
    .with_context(|| {
        format!(
            "paid on chain ({signature}) but the gateway has not credited {tokens} tokens \
                 yet: it does once the payment is final; see `proxy balance` shortly"
        )
    })?;
    let mut report = json!({
        "nonce": terms.nonce,
        "request": request.id.to_hex(),
        "transaction": signature,
        "tokens": tokens,
        "gateway": balance,
    });
    match spend.asset {
        Asset::Lamports => {
            report["paid_sol"] = json!(sol(spend.units));
            report["vault_sol"] = json!(sol(after.held));
        }
        Asset::Token(mint) => {
            let vault = session
                .client
                .token_amount(&pda::token_vault(&user, &mint))
                .await?;
            report["mint"] = json!(mint.to_string());
            report["paid"] = json!(show(spend.units, spend.decimals));
            report["vault"] = json!(show(vault, spend.decimals));
        }
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn connect(relays: &[String]) -> anyhow::Result<Client> {
    let client = Client::new(Keys::generate());
    for relay in relays {
        client
            .add_relay(relay.as_str())
            .await
            .with_context(|| format!("relay {relay}"))?;
    }
    client.connect().await;
    client.wait_for_connection(RELAY_CONNECT).await;
    Ok(client)
}

/// Publishes `request` and returns the controller's `Status` for it.
async fn publish_and_wait(
    client: &Client,
    request: &Event,
    session: &str,
    machine: PublicKey,
    controllers: &[PublicKey],
    give_up: Instant,
) -> anyhow::Result<StatusPayload> {
    let mut notifications = client.notifications();
    client
        .subscribe(
            session_filter(session, &[machine], request.created_at - 60),
            None,
        )
        .await
        .context("subscribing at the gateway's relays")?;
    let sent = client
        .send_event(request)
        .await
        .context("publishing the top-up request")?;
    anyhow::ensure!(
        !sent.success.is_empty(),
        "no relay accepted the top-up request: {:?}",
        sent.failed
    );
    let request_id = request.id.to_hex();
    loop {
        let notification = timeout_at(give_up, notifications.recv())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no answer from the gateway's controller in time (it drops, without \
                     answering, requests it cannot redeem: check `proxy balance`)"
                )
            })?
            .context("the relay connection closed")?;
        let RelayPoolNotification::Event { event, .. } = notification else {
            continue;
        };
        if event.verify().is_err()
            || (!controllers.is_empty() && !controllers.contains(&event.pubkey))
        {
            continue;
        }
        if let Ok(DsProxyMessage::Status {
            initial_request,
            payload,
            ..
        }) = serde_json::from_str(&event.content)
        {
            if initial_request == request_id {
                return serde_json::from_str(&payload).context("the controller's answer");
            }
        }
    }
}

async fn credited(session: &Session, gateway: &str, token: &str) -> anyhow::Result<i64> {
    let balance = login::ledger_balance(&session.http, gateway, token).await?;
    balance["credited"]
        .as_i64()
        .context("the gateway's balance has no `credited`")
}

/// Reads the gateway's balance until `credited` reaches `target`.
async fn wait_for_credit(
    session: &Session,
    gateway: &str,
    token: &str,
    target: i64,
    give_up: Instant,
) -> anyhow::Result<serde_json::Value> {
    loop {
        let balance = login::ledger_balance(&session.http, gateway, token).await?;
        if balance["credited"].as_i64().is_some_and(|c| c >= target) {
            return Ok(balance);
        }
        anyhow::ensure!(Instant::now() < give_up, "timed out waiting for the credit");
        tokio::time::sleep(BALANCE_POLL).await;
    }
}
