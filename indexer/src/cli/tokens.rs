//! The tokens a namespace takes beside SOL: `indexer namespace accept-mint | delist-mint` (on
//! chain), and the checks that the config's `[[tokens]]` agree with the chain — run by
//! `doctor`, and by `run` before it starts. A `[[tokens]]` entry with the wrong decimals would
//! credit every payment a power of ten off, so `run` refuses it rather than warn.
use super::onchain::{connect, ensure_authority, ensure_fee_payer, with_transaction};
use crate::{
    assets::TokenRate,
    chain::client::{ClientError, ProgramClient},
    config::Config,
    solana_cli::SolanaArgs,
};
use balance_payment::sdk::{spl, token_instructions as tix};
use serde_json::json;
use solana_sdk::{pubkey::Pubkey, signature::Signer};

/// `namespace accept-mint`: lists `mint` (so users may open vaults of it and pay with it) and
/// gives the treasury its associated token account of it, where `pay_token` pays. Running it
/// again only makes sure of the treasury's account.
pub async fn accept_mint(id: u64, mint: Pubkey, solana: SolanaArgs) -> anyhow::Result<()> {
    let client = connect(&solana).await?;
    let namespace = client.require_namespace(id).await?;
    let authority = solana.keypair()?;
    ensure_authority(&namespace, id, &authority.pubkey())?;
    ensure_fee_payer(&client, &authority.pubkey()).await?;
    let token = client.mint(&mint).await?;
    let treasury_account =
        spl::associated_token_address(&namespace.treasury, &mint, &token.token_program);
    let already = match client.require_accepted(id, &mint).await {
        Ok(_) => true,
        Err(ClientError::MintNotAccepted { .. }) => false,
        Err(error) => return Err(error.into()),
    };
    let mut instructions = vec![];
    if !already {
        instructions.push(tix::accept_mint(authority.pubkey(), id, mint));
    }
    instructions.push(spl::create_associated_token_account(
        &authority.pubkey(),
        &namespace.treasury,
        &mint,
        &token.token_program,
    ));
    let signature = client.send(&instructions, &[&authority]).await?;
    let listed = json!({
        "namespace": id,
        "mint": mint.to_string(),
        "token_program": token.token_program.to_string(),
        "decimals": token.decimals,
        "treasury_account": treasury_account.to_string(),
        "newly_accepted": !already,
    });
    println!("{}", with_transaction(listed, &signature));
    Ok(())
}

/// `namespace delist-mint`: no new vaults of `mint` and no payments in it; open token locks
/// still settle or release, and users still withdraw.
pub async fn delist_mint(id: u64, mint: Pubkey, solana: SolanaArgs) -> anyhow::Result<()> {
    let client = connect(&solana).await?;
    let namespace = client.require_namespace(id).await?;
    let authority = solana.keypair()?;
    ensure_authority(&namespace, id, &authority.pubkey())?;
    client.require_accepted(id, &mint).await?;
    ensure_fee_payer(&client, &authority.pubkey()).await?;
    let signature = client
        .send(
            &[tix::delist_mint(authority.pubkey(), id, mint)],
            &[&authority],
        )
        .await?;
    let delisted = json!({ "namespace": id, "mint": mint.to_string(), "delisted": true });
    println!("{}", with_transaction(delisted, &signature));
    Ok(())
}

/// What one `[[tokens]]` entry is on this cluster.
pub enum TokenCheck {
    /// Accepted, with the treasury's account: top-ups in it are paid.
    Ready(String),
    /// Right, but not usable yet (not accepted, no treasury account), and how to fix it.
    NotReady(String),
    /// The mint is not what the entry says (absent, another token program, other decimals):
    /// a config `run` refuses. Also the chain not answering.
    Wrong(String),
}

/// Checks one `[[tokens]]` entry against the chain; `treasury` (the controller's) must hold
/// an account of the mint.
pub async fn check_token(
    client: &ProgramClient,
    namespace_id: u64,
    treasury: Option<&Pubkey>,
    rate: &TokenRate,
) -> TokenCheck {
    let mint = rate.mint;
    let token = match client.mint(&mint).await {
        Ok(token) => token,
        Err(error) => return TokenCheck::Wrong(format!("[[tokens]] {mint}: {error}")),
    };
    if token.token_program != rate.token_program {
        return TokenCheck::Wrong(format!(
            "[[tokens]] {mint}: token_program {} but the mint belongs to {}",
            rate.token_program, token.token_program
        ));
    }
    if token.decimals != rate.decimals {
        return TokenCheck::Wrong(format!(
            "[[tokens]] {mint}: decimals {} but the mint has {}: every credit would be off by \
             a power of ten",
            rate.decimals, token.decimals
        ));
    }
    match client.require_accepted(namespace_id, &mint).await {
        Ok(_) => {}
        Err(ClientError::MintNotAccepted { .. }) => {
            return TokenCheck::NotReady(format!(
                "namespace {namespace_id} does not accept {mint}: \
                 `indexer namespace accept-mint --id {namespace_id} --mint {mint}`"
            ))
        }
        Err(error) => return TokenCheck::Wrong(error.to_string()),
    }
    if let Some(treasury) = treasury {
        let account = spl::associated_token_address(treasury, &mint, &token.token_program);
        match client.account_exists(&account).await {
            Ok(true) => {}
            Ok(false) => {
                return TokenCheck::NotReady(format!(
                    "the treasury {treasury} has no account of {mint} ({account}), so \
                     `pay_token` cannot pay it: `indexer namespace accept-mint --id \
                     {namespace_id} --mint {mint}` creates it"
                ))
            }
            Err(error) => return TokenCheck::Wrong(error.to_string()),
        }
    }
    TokenCheck::Ready(format!(
        "{mint} ({} decimals, {} ledger tokens per unit) is accepted",
        rate.decimals, rate.tokens_per_unit
    ))
}

/// Every `[[tokens]]` entry of `config` against the chain, as the doctor reports them: the
/// controller's treasury must hold an account of each.
pub async fn check_tokens(config: &Config, client: &ProgramClient) -> Vec<TokenCheck> {
    let rates = match config.token_rates() {
        Ok(rates) => rates,
        Err(error) => return vec![TokenCheck::Wrong(error.to_string())],
    };
    let treasury: Option<Pubkey> = config
        .controller
        .as_ref()
        .and_then(|controller| controller.treasury.parse().ok());
    let mut checks = Vec::with_capacity(rates.len());
    for rate in &rates {
        let namespace_id = config.chain.namespace_id;
        checks.push(check_token(client, namespace_id, treasury.as_ref(), rate).await);
    }
    checks
}

/// Before `run` starts: refuses a `[[tokens]]` entry the chain contradicts (it would credit
/// wrong amounts), and warns of one that is not usable yet.
pub async fn verify_tokens(config: &Config) -> anyhow::Result<()> {
    if config.tokens.is_empty() {
        return Ok(());
    }
    let client = ProgramClient::new(&config.chain.rpc_url);
    for check in check_tokens(config, &client).await {
        match check {
            TokenCheck::Ready(detail) => tracing::info!(%detail, "tokens"),
            TokenCheck::NotReady(problem) => tracing::warn!(%problem, "tokens: not usable yet"),
            TokenCheck::Wrong(problem) => anyhow::bail!("{problem}"),
        }
    }
    Ok(())
}
