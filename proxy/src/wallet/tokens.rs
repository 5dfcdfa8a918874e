//! `deposit --mint` and `withdraw --mint`: the wallet's token escrow (USDC, or any SPL token a
//! namespace accepts) with the program. Tokens come from, and go back to, the wallet's
//! associated token account of the mint.
use super::{
    amount::{show, Decimal},
    Session, WalletArgs, Withdrawal,
};
use balance_payment::sdk::{pda, spl, token_instructions as tix};
use serde_json::json;
use solana_sdk::{pubkey::Pubkey, signature::Signer};

pub async fn deposit(args: &WalletArgs, amount: &Decimal, mint: Pubkey) -> anyhow::Result<()> {
    let session = Session::open(args, false).await?;
    let user = session.keypair.pubkey();
    session.client.user_account(&user).await?;
    let token = session.client.mint(&mint).await?;
    let units = amount.units(token.decimals).map_err(anyhow::Error::msg)?;
    let source = spl::associated_token_address(&user, &mint, &token.token_program);
    let held = session.client.token_amount(&source).await?;
    anyhow::ensure!(
        held >= units,
        "insufficient funds: wallet {user} holds {} of the token {mint} (in {source}); this deposit needs {}",
        show(held, token.decimals),
        show(units, token.decimals)
    );
    let mut instructions = Vec::new();
    if session.client.token_balance(&user, &mint).await?.is_none() {
        // A vault opens for a mint some namespace accepts: the gateway's.
        let namespace_id = session
            .info
            .as_ref()
            .map(|info| info.solana.namespace_id)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the first deposit of a token opens your vault for it, which needs the \
                     gateway's namespace: run it without --url"
                )
            })?;
        session.client.require_accepted(namespace_id, &mint).await?;
        instructions.push(tix::open_token_vault(
            user,
            user,
            mint,
            namespace_id,
            token.token_program,
        ));
    }
    instructions.push(tix::deposit_token(
        user,
        source,
        user,
        mint,
        token.token_program,
        units,
    ));
    let signature = session
        .client
        .send(&instructions, &[&session.keypair])
        .await?;
    let vault = session
        .client
        .token_amount(&pda::token_vault(&user, &mint))
        .await?;
    println!(
        "{}",
        json!({
            "mint": mint.to_string(),
            "deposited": show(units, token.decimals),
            "vault": show(vault, token.decimals),
            "transaction": signature,
        })
    );
    Ok(())
}

pub async fn withdraw(args: &WalletArgs, amount: Withdrawal, mint: Pubkey) -> anyhow::Result<()> {
    let session = Session::open(args, false).await?;
    let user = session.keypair.pubkey();
    let token = session.client.mint(&mint).await?;
    let balance = session
        .client
        .token_balance(&user, &mint)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!("you have no vault of the token {mint}: nothing to withdraw")
        })?;
    let held = session
        .client
        .token_amount(&pda::token_vault(&user, &mint))
        .await?;
    let free = held.saturating_sub(balance.locked_amount);
    let units = match amount {
        Withdrawal::All => free,
        Withdrawal::Amount(amount) => amount.units(token.decimals).map_err(anyhow::Error::msg)?,
    };
    anyhow::ensure!(
        units > 0 && units <= free,
        "insufficient funds: {} of the token {mint} can be withdrawn now (vault {}, locked {}{})",
        show(free, token.decimals),
        show(held, token.decimals),
        show(balance.locked_amount, token.decimals),
        match balance.locked_amount {
            0 => String::new(),
            _ => ", freed when the operator settles or the lock expires".into(),
        }
    );
    let destination = spl::associated_token_address(&user, &mint, &token.token_program);
    let instructions = [
        spl::create_associated_token_account(&user, &user, &mint, &token.token_program),
        tix::withdraw_token(user, destination, mint, token.token_program, units),
    ];
    let signature = session
        .client
        .send(&instructions, &[&session.keypair])
        .await?;
    println!(
        "{}",
        json!({
            "mint": mint.to_string(),
            "withdrawn": show(units, token.decimals),
            "vault": show(held - units, token.decimals),
            "to": destination.to_string(),
            "transaction": signature,
        })
    );
    Ok(())
}
