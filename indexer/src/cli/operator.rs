//! The operator's commands on the program: `initialize` once per cluster, then one namespace
//! per operator (`namespace create | update | show`, and the tokens it takes:
//! `accept-mint | delist-mint`, in [`super::tokens`]). Every one works against any RPC URL and
//! signs with a keypair file, as `solana` does.
use super::onchain::{connect, ensure_authority, ensure_fee_payer, with_transaction};
use crate::{
    chain::client::ClientError,
    solana_cli::{read_keypair, SolanaArgs},
};
use balance_payment::{
    sdk::instructions as ix, state::Namespace, CreateNamespaceArgs, UpdateNamespaceArgs,
};
use clap::Subcommand;
use serde_json::json;
use solana_sdk::{pubkey::Pubkey, signature::Signer};
use std::{path::Path, str::FromStr};

/// `indexer namespace …`
#[derive(Subcommand)]
pub enum NamespaceCommand {
    /// Create a namespace (one operator) with this keypair as its authority; prints its id.
    Create {
        /// Shown to users; at most 50 bytes.
        #[arg(long)]
        name: String,
        /// The controller's key, the only one that may redeem authorisations: a public key,
        /// or the keypair file the controller will use (`controller.bot_keypair`).
        #[arg(long, value_name = "PUBKEY_OR_KEYPAIR_FILE")]
        bot: String,
        /// Where redeemed SOL goes. Default: the authority.
        #[arg(long, value_name = "PUBKEY_OR_KEYPAIR_FILE")]
        treasury: Option<String>,
        #[command(flatten)]
        solana: SolanaArgs,
    },
    /// Change a namespace's name, authority, bot or treasury (signed by its authority).
    Update {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        name: Option<String>,
        /// Hand the namespace to another authority.
        #[arg(long, value_name = "PUBKEY_OR_KEYPAIR_FILE")]
        new_authority: Option<String>,
        #[arg(long, value_name = "PUBKEY_OR_KEYPAIR_FILE")]
        bot: Option<String>,
        #[arg(long, value_name = "PUBKEY_OR_KEYPAIR_FILE")]
        treasury: Option<String>,
        #[command(flatten)]
        solana: SolanaArgs,
    },
    /// Print one namespace (`--id`), or every namespace, as JSON.
    Show {
        #[arg(long)]
        id: Option<u64>,
        #[command(flatten)]
        solana: SolanaArgs,
    },
    /// Take an SPL token (USDC, …) beside SOL: users may escrow it and buy credit with it.
    /// Also gives the treasury its account of the token. Signed by the authority.
    AcceptMint {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        mint: Pubkey,
        #[command(flatten)]
        solana: SolanaArgs,
    },
    /// Stop taking a token: no new vaults or payments in it; open locks still settle.
    DelistMint {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        mint: Pubkey,
        #[command(flatten)]
        solana: SolanaArgs,
    },
}

/// `indexer initialize`: binds the deployment to this cluster (its genesis hash), once.
pub async fn initialize(solana: SolanaArgs) -> anyhow::Result<()> {
    let client = connect(&solana).await?;
    let genesis = client.genesis_hash().await?;
    if let Some(global) = client.global().await? {
        let tag = bs58::encode(global.cluster).into_string();
        anyhow::ensure!(
            global.cluster == genesis,
            "already initialised, with the cluster tag {tag}, which is NOT this cluster's \
             genesis hash {}: every signature will fail; deploy the program again under a new id",
            bs58::encode(genesis).into_string()
        );
        anyhow::bail!("already initialised on this cluster (cluster tag {tag})");
    }
    let payer = solana.keypair()?;
    ensure_fee_payer(&client, &payer.pubkey()).await?;
    let signature = client
        .send(&[ix::initialize(payer.pubkey(), genesis)], &[&payer])
        .await?;
    println!(
        "{}",
        json!({
            "initialized": true,
            "cluster": bs58::encode(genesis).into_string(),
            "transaction": signature,
        })
    );
    Ok(())
}

/// `indexer namespace …`
pub async fn namespace(command: NamespaceCommand) -> anyhow::Result<()> {
    match command {
        NamespaceCommand::Create {
            name,
            bot,
            treasury,
            solana,
        } => {
            let client = connect(&solana).await?;
            let global = client.global().await?.ok_or(ClientError::NotInitialized)?;
            let authority = solana.keypair()?;
            ensure_fee_payer(&client, &authority.pubkey()).await?;
            let id = global.namespace_count;
            let args = CreateNamespaceArgs {
                name,
                bot: pubkey_or_keypair(&bot)?,
                treasury: match treasury {
                    Some(treasury) => pubkey_or_keypair(&treasury)?,
                    None => authority.pubkey(),
                },
            };
            let signature = client
                .send(
                    &[ix::create_namespace(authority.pubkey(), id, args)],
                    &[&authority],
                )
                .await?;
            let created = client.require_namespace(id).await?;
            println!("{}", with_transaction(namespace_json(&created), &signature));
        }
        NamespaceCommand::Update {
            id,
            name,
            new_authority,
            bot,
            treasury,
            solana,
        } => {
            let client = connect(&solana).await?;
            let current = client.require_namespace(id).await?;
            let authority = solana.keypair()?;
            ensure_authority(&current, id, &authority.pubkey())?;
            let parse = |value: Option<String>| value.as_deref().map(pubkey_or_keypair).transpose();
            let args = UpdateNamespaceArgs {
                name,
                authority: parse(new_authority)?,
                bot: parse(bot)?,
                treasury: parse(treasury)?,
            };
            anyhow::ensure!(
                args.name.is_some()
                    || args.authority.is_some()
                    || args.bot.is_some()
                    || args.treasury.is_some(),
                "nothing to change: give --name, --new-authority, --bot or --treasury"
            );
            let signature = client
                .send(
                    &[ix::update_namespace(authority.pubkey(), id, args)],
                    &[&authority],
                )
                .await?;
            let updated = client.require_namespace(id).await?;
            println!("{}", with_transaction(namespace_json(&updated), &signature));
        }
        NamespaceCommand::Show { id, solana } => {
            let client = connect(&solana).await?;
            match id {
                Some(id) => {
                    let namespace = client.require_namespace(id).await?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&namespace_json(&namespace))?
                    );
                }
                None => {
                    let global = client.global().await?.ok_or(ClientError::NotInitialized)?;
                    let mut all = Vec::new();
                    for id in 0..global.namespace_count {
                        if let Some(namespace) = client.namespace(id).await? {
                            all.push(namespace_json(&namespace));
                        }
                    }
                    println!("{}", serde_json::to_string_pretty(&all)?);
                }
            }
        }
        NamespaceCommand::AcceptMint { id, mint, solana } => {
            super::tokens::accept_mint(id, mint, solana).await?
        }
        NamespaceCommand::DelistMint { id, mint, solana } => {
            super::tokens::delist_mint(id, mint, solana).await?
        }
    }
    Ok(())
}

fn namespace_json(namespace: &Namespace) -> serde_json::Value {
    json!({
        "id": namespace.id,
        "name": namespace.name,
        "authority": namespace.authority.to_string(),
        "bot": namespace.bot.to_string(),
        "treasury": namespace.treasury.to_string(),
        "created_at": namespace.created_at,
        "updated_at": namespace.updated_at,
    })
}

/// A base58 public key, or the public key of a keypair file.
pub fn pubkey_or_keypair(value: &str) -> anyhow::Result<Pubkey> {
    if let Ok(pubkey) = Pubkey::from_str(value) {
        return Ok(pubkey);
    }
    let path = Path::new(value);
    anyhow::ensure!(
        path.exists(),
        "{value:?} is neither a public key (base58) nor a keypair file"
    );
    Ok(read_keypair(path)?.pubkey())
}
