//! The local stack on embedded defaults: a local validator running the program (reached only
//! through its JSON-RPC, by [`RpcChain`], as in production), a relay, a SQLite ledger, and the
//! indexer's services with a controller, set up with one operator. `indexer sandbox` and
//! `cargo run -p sandbox` run it; the end-to-end tests drive it.
pub mod cli;

use crate::{
    chain::{cluster::cluster_tag, rpc::RpcChain, watcher::PaymentRule, Chain},
    config::Commitment,
    controller::{Controller, ControllerConfig},
    ledger::Ledger,
    nostr::watcher::Trust,
    services::{Components, Services},
    wire::{RequestPayload, DEFAULT_SESSION},
};
use balance_payment::{
    authorization::{Asset, AuthorizationTerms},
    sdk::{accounts, instructions as ix, pda, spl, token_instructions as tix},
    state::UserAccount,
    CreateNamespaceArgs,
};
use common::assets::{parse_tokens, TokenAsset, TokenRate};
use localnet::{EmbeddedRelay, Validator, ValidatorConfig};
use nostr_sdk::prelude::{Client, Keys, PublicKey};
use solana_commitment_config::CommitmentConfig;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_sdk::{
    pubkey::Pubkey,
    signature::{Keypair, Signer},
};
use std::{path::PathBuf, sync::Arc, time::Duration};

/// SOL, in lamports.
pub const SOL: u64 = 1_000_000_000;

/// Decimals of the sandbox's USDC stand-in, as USDC's.
pub const USDC_DECIMALS: u8 = 6;

/// One USDC in base units.
pub const USDC: u64 = 1_000_000;

/// The sandbox's default rate for its USDC stand-in: ledger tokens per USDC.
pub const TOKENS_PER_USDC: u64 = 10_000;

/// The sandbox controller's `max_lamports_per_request`: larger top-ups are refused.
pub const MAX_LAMPORTS_PER_REQUEST: u64 = 100 * SOL;

/// Sandbox settings.
pub struct SandboxConfig {
    pub database_url: String,
    /// The validator's JSON-RPC port; its websocket is the next one. 0: two free ports.
    pub rpc_port: u16,
    /// Port of the relay (0: any free one).
    pub relay_port: u16,
    /// Where the relay keeps its events; `None` keeps them in memory (tests).
    pub relay_dir: Option<PathBuf>,
    pub tokens_per_sol: u64,
    /// Ledger tokens one USDC (of the stand-in) buys.
    pub tokens_per_usdc: u64,
    /// The proxy keys whose debits count (the sandbox makes one if empty).
    pub proxy_keys: Vec<Keys>,
}

impl SandboxConfig {
    /// A throwaway stack on `database_url`: free ports, events in memory, 1,000,000 tokens
    /// per SOL and 10,000 per USDC, one proxy key.
    pub fn new(database_url: &str) -> Self {
        Self {
            database_url: database_url.to_owned(),
            rpc_port: 0,
            relay_port: 0,
            relay_dir: None,
            tokens_per_sol: 1_000_000,
            tokens_per_usdc: TOKENS_PER_USDC,
            proxy_keys: vec![],
        }
    }
}

/// A running local stack.
pub struct Sandbox {
    /// The local validator; every read and write goes through its RPC.
    pub validator: Validator,
    /// The indexer's and controller's view of the chain: the production implementation.
    pub chain: Arc<RpcChain>,
    /// A plain RPC client on the validator, for what only the sandbox does (airdrops).
    pub rpc: RpcClient,
    pub relay: EmbeddedRelay,
    pub ledger: Ledger,
    pub authority: Keypair,
    pub bot: Keypair,
    pub treasury: Pubkey,
    pub namespace_id: u64,
    /// A USDC-like mint (classic SPL Token, 6 decimals) the namespace accepts; the authority
    /// mints it.
    pub usdc: Pubkey,
    /// The deployment's cluster tag (`Global::cluster`): the validator's genesis hash.
    pub cluster: [u8; 32],
    /// The controller's Nostr identity: signs credits and statuses.
    pub controller_keys: Keys,
    /// The gateway's Nostr address: every session event is `p`-tagged with it. Distinct from
    /// every signing key (relays do not index an author's tag of itself).
    pub machine: PublicKey,
    pub proxy_keys: Vec<Keys>,
    pub session: String,
    pub tokens_per_sol: u64,
    pub tokens_per_usdc: u64,
    /// [`Self::token_assets`], parsed as the indexer parses its config.
    token_rates: Arc<[TokenRate]>,
    services: Option<(Services, [Client; 2])>,
}

impl Sandbox {
    pub async fn start(config: SandboxConfig) -> anyhow::Result<Self> {
        let validator = Validator::start(match config.rpc_port {
            0 => ValidatorConfig::free_ports()?,
            port => ValidatorConfig::on_port(port),
        })
        .await?;
        let chain = Arc::new(RpcChain::new(
            validator.rpc_url(),
            Some(validator.ws_url()),
            balance_payment::ID,
            Commitment::Finalized.into(), // the production default
        ));
        let rpc = RpcClient::new_with_commitment(
            validator.rpc_url().to_owned(),
            CommitmentConfig::confirmed(),
        );
        let (authority, bot, treasury) = (Keypair::new(), Keypair::new(), Keypair::new().pubkey());
        airdrop(&rpc, &authority.pubkey(), 10 * SOL).await?;
        airdrop(&rpc, &bot.pubkey(), 10 * SOL).await?;
        airdrop(&rpc, &treasury, SOL).await?;
        let genesis_hash = rpc.get_genesis_hash().await?.to_bytes();
        chain
            .submit(
                &[ix::initialize(authority.pubkey(), genesis_hash)],
                &[&authority],
            )
            .await?;
        let args = CreateNamespaceArgs {
            name: "sandbox".into(),
            bot: bot.pubkey(),
            treasury,
        };
        chain
            .submit(
                &[ix::create_namespace(authority.pubkey(), 0, args)],
                &[&authority],
            )
            .await?;

        let usdc = usdc_mint(&chain, &rpc, &authority, &treasury).await?;
        let token_rates = parse_tokens("tokens", &usdc_asset(&usdc, config.tokens_per_usdc))?;

        // Read back from the chain, as the indexer binary does.
        let cluster = cluster_tag(chain.as_ref()).await?;

        let relay = match &config.relay_dir {
            Some(dir) => EmbeddedRelay::open(config.relay_port, dir).await?,
            None => EmbeddedRelay::start(config.relay_port).await?,
        };
        let ledger = Ledger::connect(&config.database_url).await?;
        let controller_keys = Keys::generate();
        let proxy_keys = if config.proxy_keys.is_empty() {
            vec![Keys::generate()]
        } else {
            config.proxy_keys
        };
        let mut sandbox = Self {
            validator,
            chain,
            rpc,
            relay,
            ledger,
            authority,
            bot,
            treasury,
            namespace_id: 0,
            usdc,
            cluster,
            controller_keys,
            machine: Keys::generate().public_key(),
            proxy_keys,
            session: DEFAULT_SESSION.to_owned(),
            tokens_per_sol: config.tokens_per_sol,
            tokens_per_usdc: config.tokens_per_usdc,
            token_rates: token_rates.into(),
            services: None,
        };
        sandbox.services = Some(sandbox.spawn_services().await?);
        Ok(sandbox)
    }

    /// The `[[tokens]]` section an operator writes for this stack: the USDC stand-in.
    pub fn token_assets(&self) -> Vec<TokenAsset> {
        usdc_asset(&self.usdc, self.tokens_per_usdc)
    }

    /// A controller for this stack's namespace, as the services run it: tests drive it
    /// directly to see each request's outcome.
    pub fn controller(&self) -> Controller {
        Controller::new(
            ControllerConfig {
                bot: self.bot.insecure_clone(),
                namespace_id: self.namespace_id,
                cluster: self.cluster,
                treasury: self.treasury,
                nostr_keys: self.controller_keys.clone(),
                session: self.session.clone(),
                machine: self.machine,
                tokens_per_sol: self.tokens_per_sol,
                max_lamports_per_request: MAX_LAMPORTS_PER_REQUEST,
                tokens: self.token_rates.clone(),
            },
            self.ledger.clone(),
            self.chain.clone(),
        )
    }

    /// The indexer's services with a fresh relay connection, as a new process would start them.
    async fn spawn_services(&self) -> anyhow::Result<(Services, [Client; 2])> {
        let connect = |keys: Keys| async {
            let client = Client::new(keys);
            client.add_relay(self.relay.url()).await?;
            client.connect().await;
            anyhow::Ok(client)
        };
        let (publisher, listener) = (
            connect(self.controller_keys.clone()).await?,
            connect(Keys::generate()).await?,
        );
        let controller = self.controller();
        let trust = Trust {
            controllers: [self.controller_keys.public_key()].into(),
            proxies: self.proxy_keys.iter().map(Keys::public_key).collect(),
        };
        let services = Services::spawn(Components {
            ledger: self.ledger.clone(),
            chain: self.chain.clone(),
            publisher: publisher.clone(),
            listener: listener.clone(),
            trust,
            session: self.session.clone(),
            recipients: vec![self.machine],
            payments: PaymentRule {
                namespace_id: self.namespace_id,
                tokens_per_sol: self.tokens_per_sol,
                tokens: self.token_rates.clone(),
            },
            chain_poll: Duration::from_secs(1),
            credit_grace: None,
            controller: Some(controller),
            settings: Default::default(),
            health_listener: None,
        });
        Ok((services, [publisher, listener]))
    }

    /// Stops the services and starts them again on the same chain, relay and ledger: what a
    /// process restart does.
    pub async fn restart_services(&mut self) -> anyhow::Result<()> {
        self.stop_services().await;
        self.services = Some(self.spawn_services().await?);
        Ok(())
    }

    pub async fn stop_services(&mut self) {
        if let Some((services, clients)) = self.services.take() {
            services.shutdown().await;
            for client in clients {
                client.shutdown().await;
            }
        }
    }
    /// The nonce `user`'s next authorisation must carry, read from their user account.
    pub async fn next_nonce(&self, user: &Pubkey) -> anyhow::Result<u64> {
        let data = self
            .chain
            .account_data(&pda::user_account(user))
            .await?
            .ok_or_else(|| anyhow::anyhow!("{user} is not registered"))?;
        accounts::decode::<UserAccount>(&data)
            .map(|account| account.nonce)
            .ok_or_else(|| anyhow::anyhow!("{user}'s user account is unreadable"))
    }

    /// A new wallet, funded, registered, with `deposit` lamports in its vault.
    pub async fn user(&self, deposit: u64) -> anyhow::Result<Keypair> {
        let user = Keypair::new();
        self.airdrop(&user.pubkey(), deposit + SOL).await?;
        self.chain
            .submit(&[ix::register(user.pubkey())], &[&user])
            .await?;
        self.chain
            .submit(
                &[ix::deposit(user.pubkey(), user.pubkey(), deposit)],
                &[&user],
            )
            .await?;
        Ok(user)
    }

    /// A user's kind-1573 `Request` to redeem `lamports` from their vault, as a wallet app
    /// would publish it: [`Sandbox::authorization_payload`] wrapped by [`Sandbox::request_event`].
    pub fn authorization_request(
        &self,
        user: &Keypair,
        nonce: u64,
        lamports: u64,
    ) -> anyhow::Result<nostr_sdk::Event> {
        self.request_event(&self.authorization_payload(user, nonce, lamports)?)
    }

    /// An authorisation for `nonce` (the user account's current nonce; 0 for a new user) of up
    /// to `lamports`, signed by the wallet, valid for ten minutes.
    pub fn authorization_payload(
        &self,
        user: &Keypair,
        nonce: u64,
        lamports: u64,
    ) -> anyhow::Result<RequestPayload> {
        self.signed_payload(user, nonce, lamports, Asset::Lamports)
    }

    /// An authorisation like [`Self::authorization_payload`] to spend `units` of the USDC
    /// stand-in from the wallet's token vault.
    pub fn usdc_authorization_payload(
        &self,
        user: &Keypair,
        nonce: u64,
        units: u64,
    ) -> anyhow::Result<RequestPayload> {
        self.signed_payload(user, nonce, units, Asset::Token(self.usdc))
    }

    /// The wallet's signed authorisation to spend `amount` of `asset` in this namespace.
    fn signed_payload(
        &self,
        user: &Keypair,
        nonce: u64,
        amount: u64,
        asset: Asset,
    ) -> anyhow::Result<RequestPayload> {
        let terms = AuthorizationTerms {
            program_id: balance_payment::ID,
            cluster: self.cluster,
            namespace_id: self.namespace_id,
            user: user.pubkey(),
            nonce,
            max_amount: amount,
            asset,
            deadline: crate::ledger::now() + 600,
            extra_data: [0; 32],
        };
        Ok(crate::topup::authorization_payload(user, &terms)?)
    }

    /// A new wallet like [`Self::user`] (with 1 SOL in its vault) whose USDC vault is open
    /// and holds `units`.
    pub async fn usdc_user(&self, units: u64) -> anyhow::Result<Keypair> {
        let user = self.user(SOL).await?;
        let owner = user.pubkey();
        let program = spl::TOKEN_PROGRAM_ID;
        self.fund_usdc(&owner, units).await?;
        let source = spl::associated_token_address(&owner, &self.usdc, &program);
        let instructions = [
            tix::open_token_vault(owner, owner, self.usdc, self.namespace_id, program),
            tix::deposit_token(owner, source, owner, self.usdc, program, units),
        ];
        self.chain.submit(&instructions, &[&user]).await?;
        Ok(user)
    }

    /// The `Request` event carrying `payload`, addressed to the gateway, from a fresh key.
    pub fn request_event(&self, payload: &RequestPayload) -> anyhow::Result<nostr_sdk::Event> {
        Ok(crate::topup::request_event(
            payload,
            &self.session,
            &self.machine,
        )?)
    }

    /// Publishes `event` to the embedded relay from a fresh connection, as a user's app would.
    pub async fn publish(&self, event: &nostr_sdk::Event) -> anyhow::Result<()> {
        let client = Client::new(Keys::generate());
        client.add_relay(self.relay.url()).await?;
        client.connect().await;
        let sent = client.send_event(event).await;
        client.shutdown().await;
        sent?;
        Ok(())
    }

    /// Mints `units` of the USDC stand-in into `owner`'s associated token account (created if
    /// needed): what a faucet does on devnet.
    pub async fn fund_usdc(&self, owner: &Pubkey, units: u64) -> anyhow::Result<()> {
        let program = spl::TOKEN_PROGRAM_ID;
        let payer = self.authority.pubkey();
        let account = spl::associated_token_address(owner, &self.usdc, &program);
        let instructions = [
            spl::create_associated_token_account(&payer, owner, &self.usdc, &program),
            spl::mint_to(&program, &self.usdc, &account, &payer, units)?,
        ];
        self.chain.submit(&instructions, &[&self.authority]).await?;
        Ok(())
    }

    /// Gives `to` `lamports` from the validator's faucet.
    pub async fn airdrop(&self, to: &Pubkey, lamports: u64) -> anyhow::Result<()> {
        airdrop(&self.rpc, to, lamports).await
    }

    /// Stops the services, the relay and the validator (the ledger stays open for inspection).
    pub async fn stop(&mut self) {
        self.stop_services().await;
        self.relay.shutdown().await;
        self.validator.shutdown();
    }
}

/// The `[[tokens]]` section listing the USDC stand-in `mint` at `tokens_per_usdc`.
fn usdc_asset(mint: &Pubkey, tokens_per_usdc: u64) -> Vec<TokenAsset> {
    vec![TokenAsset {
        mint: mint.to_string(),
        symbol: "USDC".into(),
        decimals: USDC_DECIMALS,
        tokens_per_unit: tokens_per_usdc,
        token_program: spl::TOKEN_PROGRAM_ID.to_string(),
    }]
}

/// Creates the USDC stand-in, has namespace 0 accept it and gives the treasury an account of
/// it: what an operator does with real USDC's mint on a public cluster.
async fn usdc_mint(
    chain: &RpcChain,
    rpc: &RpcClient,
    authority: &Keypair,
    treasury: &Pubkey,
) -> anyhow::Result<Pubkey> {
    let mint = Keypair::new();
    let program = spl::TOKEN_PROGRAM_ID;
    let payer = authority.pubkey();
    let rent = rpc
        .get_minimum_balance_for_rent_exemption(spl::MINT_LEN)
        .await?;
    let create = spl::create_mint(
        &payer,
        &mint.pubkey(),
        &payer,
        USDC_DECIMALS,
        &program,
        rent,
    )?;
    chain.submit(&create, &[authority, &mint]).await?;
    let setup = [
        tix::accept_mint(payer, 0, mint.pubkey()),
        spl::create_associated_token_account(&payer, treasury, &mint.pubkey(), &program),
    ];
    chain.submit(&setup, &[authority]).await?;
    Ok(mint.pubkey())
}

/// `requestAirdrop`, waited for until confirmed.
async fn airdrop(rpc: &RpcClient, to: &Pubkey, lamports: u64) -> anyhow::Result<()> {
    let signature = rpc.request_airdrop(to, lamports).await?;
    rpc.poll_for_signature_with_commitment(&signature, CommitmentConfig::confirmed())
        .await?;
    Ok(())
}
