//! `register`, `deposit`, `withdraw` and `balance`: the wallet's account with the program.
use super::{
    amount::{show, SOL_DECIMALS},
    login, sol, Session, WalletArgs, Withdrawal,
};
use balance_payment::sdk::{instructions as ix, pda, spl};
use serde_json::json;
use solana_sdk::{pubkey::Pubkey, signature::Signer};

/// Lamports kept in the wallet for the transaction fee when checking a deposit.
const FEE_RESERVE: u64 = 10_000;

pub async fn register(args: &WalletArgs) -> anyhow::Result<()> {
    let session = Session::open(args, false).await?;
    let user = session.keypair.pubkey();
    if session.client.is_registered(&user).await? {
        println!(
            "{}",
            json!({ "wallet": user.to_string(), "registered": true, "new": false })
        );
        return Ok(());
    }
    ensure_wallet_holds(&session, FEE_RESERVE, "registering").await?;
    let signature = session
        .client
        .send(&[ix::register(user)], &[&session.keypair])
        .await?;
    println!(
        "{}",
        json!({
            "wallet": user.to_string(),
            "registered": true,
            "new": true,
            "vault": pda::vault(&user).to_string(),
            "transaction": signature,
        })
    );
    Ok(())
}

pub async fn deposit(args: &WalletArgs, lamports: u64) -> anyhow::Result<()> {
    let session = Session::open(args, false).await?;
    let user = session.keypair.pubkey();
    session.client.user_account(&user).await?;
    ensure_wallet_holds(
        &session,
        lamports.saturating_add(FEE_RESERVE),
        "this deposit",
    )
    .await?;
    let signature = session
        .client
        .send(&[ix::deposit(user, user, lamports)], &[&session.keypair])
        .await?;
    let vault = session.client.lamports(&pda::vault(&user)).await?;
    println!(
        "{}",
        json!({ "deposited_sol": sol(lamports), "vault_sol": sol(vault), "transaction": signature })
    );
    Ok(())
}

pub async fn withdraw(args: &WalletArgs, amount: Withdrawal) -> anyhow::Result<()> {
    let session = Session::open(args, false).await?;
    let user = session.keypair.pubkey();
    let vault = Vault::read(&session).await?;
    let lamports = match amount {
        Withdrawal::All => vault.withdrawable(),
        Withdrawal::Amount(amount) => amount.units(SOL_DECIMALS).map_err(anyhow::Error::msg)?,
    };
    anyhow::ensure!(
        lamports > 0 && lamports <= vault.withdrawable(),
        "insufficient funds: {} SOL can be withdrawn now (vault {} SOL, locked {} SOL{})",
        sol(vault.withdrawable()),
        sol(vault.held),
        sol(vault.locked),
        match vault.locked {
            0 => String::new(),
            _ => ", freed when the operator settles or the lock expires".into(),
        }
    );
    // The program leaves a vault either rent-exempt or empty.
    anyhow::ensure!(
        vault.held - lamports == 0 || vault.held - lamports >= vault.rent_exempt,
        "the vault must keep at least {} SOL (rent) or be emptied: withdraw `all` or at most {} SOL",
        sol(vault.rent_exempt),
        sol(vault.held.saturating_sub(vault.locked.max(vault.rent_exempt)))
    );
    let signature = session
        .client
        .send(&[ix::withdraw(user, lamports)], &[&session.keypair])
        .await?;
    let left = session.client.lamports(&pda::vault(&user)).await?;
    println!(
        "{}",
        json!({ "withdrawn_sol": sol(lamports), "vault_sol": sol(left), "transaction": signature })
    );
    Ok(())
}

pub async fn balance(args: &WalletArgs) -> anyhow::Result<()> {
    let session = Session::open(args, true).await?;
    let info = session.info()?;
    let user = session.keypair.pubkey();
    let vault = Vault::read(&session).await?;
    let wallet = session.client.lamports(&user).await?;
    let token = login::login(
        &session.http,
        &args.gateway,
        &session.keypair,
        Some(&info.audience),
    )
    .await?;
    let ledger = login::ledger_balance(&session.http, &args.gateway, &token).await?;
    let mut tokens = Vec::with_capacity(info.tokens.len());
    for listed in &info.tokens {
        tokens.push(token_vault(&session, listed).await?);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "wallet": user.to_string(),
            "wallet_sol": sol(wallet),
            "vault": {
                "address": pda::vault(&user).to_string(),
                "held_sol": sol(vault.held),
                "locked_sol": sol(vault.locked),
                "free_sol": sol(vault.free()),
                "withdrawable_sol": sol(vault.withdrawable()),
                "next_nonce": vault.nonce,
            },
            "tokens": tokens,
            "gateway": ledger,
        }))?
    );
    Ok(())
}

/// The wallet's and its vault's holdings of a token the gateway lists, as a person reads them.
async fn token_vault(
    session: &Session,
    listed: &common::assets::TokenAsset,
) -> anyhow::Result<serde_json::Value> {
    let user = session.keypair.pubkey();
    let mint: Pubkey = listed.mint.parse()?;
    let program: Pubkey = listed.token_program.parse()?;
    let wallet = session
        .client
        .token_amount(&spl::associated_token_address(&user, &mint, &program))
        .await?;
    let held = session
        .client
        .token_amount(&pda::token_vault(&user, &mint))
        .await?;
    let locked = session
        .client
        .token_balance(&user, &mint)
        .await?
        .map_or(0, |balance| balance.locked_amount);
    let shown = |units| show(units, listed.decimals);
    Ok(json!({
        "symbol": listed.symbol,
        "mint": listed.mint,
        "wallet": shown(wallet),
        "held": shown(held),
        "locked": shown(locked),
        "free": shown(held.saturating_sub(locked)),
    }))
}

/// The wallet must hold `lamports` for `what`.
async fn ensure_wallet_holds(session: &Session, lamports: u64, what: &str) -> anyhow::Result<()> {
    let user = session.keypair.pubkey();
    let held = session.client.lamports(&user).await?;
    anyhow::ensure!(
        held >= lamports,
        "insufficient funds: wallet {user} holds {} SOL; {what} needs {} SOL with the fee",
        sol(held),
        sol(lamports)
    );
    Ok(())
}

/// A user's vault as the program sees it.
pub(super) struct Vault {
    pub held: u64,
    pub locked: u64,
    /// What the vault must keep unless emptied.
    pub rent_exempt: u64,
    /// The nonce the next authorisation must carry.
    pub nonce: u64,
}

impl Vault {
    /// Reads the user account (or says it is not registered) and the vault.
    pub async fn read(session: &Session) -> anyhow::Result<Self> {
        let user = session.keypair.pubkey();
        let account = session.client.user_account(&user).await?;
        Ok(Self {
            held: session.client.lamports(&pda::vault(&user)).await?,
            locked: account.locked_amount,
            rent_exempt: session.client.rent_exempt_minimum(0).await?,
            nonce: account.nonce,
        })
    }

    /// What an operator may take (`pay`): held − locked − the rent-exempt minimum.
    pub fn free(&self) -> u64 {
        self.held
            .saturating_sub(self.locked)
            .saturating_sub(self.rent_exempt)
    }

    /// What the user may take back now: everything unlocked, when nothing is locked the vault
    /// may be emptied; otherwise what leaves it rent-exempt.
    pub fn withdrawable(&self) -> u64 {
        match self.locked {
            0 => self.held,
            locked => self.held.saturating_sub(locked.max(self.rent_exempt)),
        }
    }
}
