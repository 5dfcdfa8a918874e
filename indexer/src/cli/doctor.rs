//! `indexer doctor`: checks that a config can run — the RPC answers, the program is deployed
//! and initialised for this cluster, the namespace exists and names this bot and treasury, the
//! keys load, the relays answer and the ledger is migrated — and says what to fix.
use super::tokens::TokenCheck;
use crate::{
    chain::client::ProgramClient, config::Config, ledger::pending_migrations,
    solana_cli::read_keypair,
};
use nostr_sdk::prelude::{Client, Keys};
use solana_sdk::signature::Signer;
use std::time::Duration;

/// How long a relay may take to accept a connection.
const RELAY_TIMEOUT: Duration = Duration::from_secs(5);

/// One check's verdict.
struct Check {
    name: &'static str,
    outcome: Result<String, String>,
}

/// Runs every check, prints one line each, and returns whether all passed.
pub async fn run(config: &Config) -> bool {
    let mut checks = chain_checks(config).await;
    checks.extend(relay_checks(config).await);
    checks.push(Check {
        name: "ledger",
        outcome: match pending_migrations(&config.database_url).await {
            Ok(pending) if pending.is_empty() => Ok(format!("{} is migrated", config.database_url)),
            Ok(pending) => Err(format!(
                "{} lacks migrations {pending:?}: run `indexer migrate --database-url {}`",
                config.database_url, config.database_url
            )),
            Err(error) => Err(format!("cannot open {}: {error}", config.database_url)),
        },
    });
    let mut healthy = true;
    for check in &checks {
        match &check.outcome {
            Ok(detail) => println!("ok    {:<10} {detail}", check.name),
            Err(problem) => {
                healthy = false;
                println!("FAIL  {:<10} {problem}", check.name)
            }
        }
    }
    healthy
}

fn check(name: &'static str, outcome: Result<String, String>) -> Check {
    Check { name, outcome }
}

/// RPC, program, `Global`, namespace, bot and treasury: stops at the first that fails, since
/// each later one needs it.
async fn chain_checks(config: &Config) -> Vec<Check> {
    let mut checks = vec![];
    if config.chain.program_id != balance_payment::ID.to_string() {
        checks.push(check(
            "program",
            Err(format!(
                "chain.program_id {} is not the id this build was made for ({})",
                config.chain.program_id,
                balance_payment::ID
            )),
        ));
        return checks;
    }
    let client = ProgramClient::new(&config.chain.rpc_url);
    let genesis = match client.genesis_hash().await {
        Ok(genesis) => genesis,
        Err(error) => {
            checks.push(check("rpc", Err(error.to_string())));
            return checks;
        }
    };
    checks.push(check(
        "rpc",
        Ok(format!("{} answers", config.chain.rpc_url)),
    ));
    if let Err(error) = client.ensure_deployed().await {
        checks.push(check("program", Err(error.to_string())));
        return checks;
    }
    checks.push(check(
        "program",
        Ok(format!("{} is deployed", balance_payment::ID)),
    ));
    match client.global().await {
        Ok(Some(global)) if global.cluster == genesis => checks.push(check(
            "cluster",
            Ok(format!(
                "initialised for this cluster ({})",
                bs58::encode(genesis).into_string()
            )),
        )),
        Ok(Some(global)) => {
            checks.push(check(
                "cluster",
                Err(format!(
                    "initialised with the tag {}, but this cluster's genesis hash is {}: \
                     every signature will fail",
                    bs58::encode(global.cluster).into_string(),
                    bs58::encode(genesis).into_string()
                )),
            ));
            return checks;
        }
        Ok(None) => {
            checks.push(check(
                "cluster",
                Err("the program is not initialised: run `indexer initialize`".into()),
            ));
            return checks;
        }
        Err(error) => {
            checks.push(check("cluster", Err(error.to_string())));
            return checks;
        }
    }
    let id = config.chain.namespace_id;
    let namespace = match client.namespace(id).await {
        Ok(Some(namespace)) => namespace,
        Ok(None) => {
            checks.push(check(
                "namespace",
                Err(format!(
                    "namespace {id} does not exist: run `indexer namespace create`"
                )),
            ));
            return checks;
        }
        Err(error) => {
            checks.push(check("namespace", Err(error.to_string())));
            return checks;
        }
    };
    checks.push(check(
        "namespace",
        Ok(format!("{id} ({:?}) exists", namespace.name)),
    ));
    for token in super::tokens::check_tokens(config, &client).await {
        checks.push(check(
            "token",
            match token {
                TokenCheck::Ready(detail) => Ok(detail),
                TokenCheck::NotReady(problem) | TokenCheck::Wrong(problem) => Err(problem),
            },
        ));
    }
    let Some(controller) = &config.controller else {
        checks.push(check(
            "controller",
            Ok("none configured (read-only indexer)".into()),
        ));
        return checks;
    };
    checks.push(check(
        "bot",
        match read_keypair(&controller.bot_keypair) {
            Err(error) => Err(error.to_string()),
            Ok(bot) if bot.pubkey() != namespace.bot => Err(format!(
                "{} holds {}, but namespace {id}'s bot is {}: `indexer namespace update --id {id} --bot {}`",
                controller.bot_keypair.display(),
                bot.pubkey(),
                namespace.bot,
                controller.bot_keypair.display()
            )),
            Ok(bot) => match client.lamports(&bot.pubkey()).await {
                Ok(0) => Err(format!(
                    "{} is the namespace's bot but holds no SOL for transaction fees",
                    bot.pubkey()
                )),
                Ok(lamports) => Ok(format!(
                    "{} is the namespace's bot ({lamports} lamports for fees)",
                    bot.pubkey()
                )),
                Err(error) => Err(error.to_string()),
            },
        },
    ));
    checks.push(check(
        "treasury",
        if controller.treasury == namespace.treasury.to_string() {
            Ok(format!(
                "{} is the namespace's treasury",
                namespace.treasury
            ))
        } else {
            Err(format!(
                "controller.treasury {} is not namespace {id}'s treasury {}",
                controller.treasury, namespace.treasury
            ))
        },
    ));
    checks.push(check(
        "nostr key",
        match std::fs::read_to_string(&controller.nostr_secret_key_file)
            .map_err(|e| e.to_string())
            .and_then(|text| Keys::parse(text.trim()).map_err(|e| e.to_string()))
        {
            Ok(keys)
                if config
                    .nostr
                    .controller_pubkeys
                    .contains(&keys.public_key().to_hex()) =>
            {
                Ok(format!("{} signs credits", keys.public_key().to_hex()))
            }
            Ok(keys) => Err(format!(
                "{} is not in nostr.controller_pubkeys: its credits would be ignored",
                keys.public_key().to_hex()
            )),
            Err(error) => Err(format!(
                "{}: {error}",
                controller.nostr_secret_key_file.display()
            )),
        },
    ));
    checks
}

/// Each relay accepts a connection.
async fn relay_checks(config: &Config) -> Vec<Check> {
    if config.nostr.relays.is_empty() {
        return vec![check("relay", Err("nostr.relays is empty".into()))];
    }
    let client = Client::new(Keys::generate());
    let mut checks = vec![];
    for url in &config.nostr.relays {
        let outcome = match client.add_relay(url.as_str()).await {
            Err(error) => Err(format!("{url}: {error}")),
            Ok(_) => match client.try_connect_relay(url.as_str(), RELAY_TIMEOUT).await {
                Ok(()) => Ok(format!("{url} accepts connections")),
                Err(error) => Err(format!("{url} does not answer: {error}")),
            },
        };
        checks.push(check("relay", outcome));
    }
    client.shutdown().await;
    checks
}
