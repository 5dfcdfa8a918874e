//! A native `solana-program-test` bank with the program loaded, one namespace and helpers to
//! send transactions, read accounts, move the clock and decode the emitted events.
#![allow(dead_code)]

mod errors;
mod tokens;
mod wallet;
pub use errors::*;
#[allow(unused_imports)] // only the token tests use them
pub use tokens::*;
pub use wallet::Wallet;

use anchor_lang::solana_program::system_instruction;
use anchor_lang::{AccountDeserialize, AccountSerialize};
use balance_payment::{
    authorization::{Asset, AuthorizationTerms, RecoverInfo},
    sdk::{
        authorization::sign_authorization,
        events::{decode_event, ProgramEvent},
        instructions as ix, native, pda,
    },
    state::{Global, Lock, Namespace, UserAccount},
    CreateNamespaceArgs,
};
use solana_program_test::{processor, ProgramTest, ProgramTestContext};
use solana_sdk::{
    clock::Clock,
    instruction::Instruction,
    pubkey::Pubkey,
    rent::Rent,
    signature::{Keypair, Signer},
    transaction::{Transaction, TransactionError},
};

pub const SOL: u64 = 1_000_000_000;

/// What a rejected transaction must leave untouched.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    user_account: Option<Vec<u8>>,
    vault: u64,
    treasury: u64,
    namespace: Option<Vec<u8>>,
}

pub struct Harness {
    pub ctx: ProgramTestContext,
    pub authority: Keypair,
    pub bot: Keypair,
    pub treasury: Pubkey,
    pub namespace_id: u64,
    pub rent_minimum: u64,
    /// The cluster tag this deployment was initialised with (`Global::cluster`).
    pub cluster: [u8; 32],
}

impl Harness {
    /// A bank with the program, `initialize` done for the bank's own genesis hash and
    /// namespace 0 created.
    pub async fn new() -> Self {
        Self::start(None).await
    }

    /// Like [`Harness::new`], but the deployment is initialised with `cluster` as its tag: a
    /// stand-in for the same program deployed on another cluster.
    pub async fn with_cluster(cluster: [u8; 32]) -> Self {
        Self::start(Some(cluster)).await
    }

    async fn start(cluster: Option<[u8; 32]>) -> Self {
        let mut program_test = ProgramTest::default();
        program_test.prefer_bpf(false);
        program_test.add_program(
            "balance_payment",
            balance_payment::ID,
            processor!(native::process_instruction),
        );
        let ctx = program_test.start_with_context().await;
        let rent_minimum = Rent::default().minimum_balance(0);
        let cluster = cluster.unwrap_or_else(|| ctx.genesis_config().hash().to_bytes());
        let mut harness = Self {
            ctx,
            authority: Keypair::new(),
            bot: Keypair::new(),
            treasury: Pubkey::new_unique(),
            namespace_id: 0,
            rent_minimum,
            cluster,
        };
        let (authority, bot) = (harness.authority.pubkey(), harness.bot.pubkey());
        harness.airdrop(&authority, 10 * SOL).await;
        harness.airdrop(&bot, 10 * SOL).await;
        // The treasury starts rent-exempt so that small payments into it are valid.
        let treasury = harness.treasury;
        harness.airdrop(&treasury, rent_minimum).await;
        let payer = harness.ctx.payer.pubkey();
        harness
            .send(&[ix::initialize(payer, cluster)], &[])
            .await
            .expect("initialize");
        let authority_kp = harness.authority.insecure_clone();
        harness
            .send(
                &[ix::create_namespace(
                    authority,
                    0,
                    CreateNamespaceArgs {
                        name: "test operator".into(),
                        bot,
                        treasury,
                    },
                )],
                &[&authority_kp],
            )
            .await
            .expect("create namespace");
        harness
    }

    /// Sends `instructions` paid by the bank's payer and signed by `signers`; returns the
    /// program events they emitted, or the transaction error (nothing applied).
    pub async fn send(
        &mut self,
        instructions: &[Instruction],
        signers: &[&Keypair],
    ) -> Result<Vec<ProgramEvent>, TransactionError> {
        let blockhash = self
            .ctx
            .get_new_latest_blockhash()
            .await
            .expect("blockhash");
        let mut all_signers: Vec<&Keypair> = vec![&self.ctx.payer];
        all_signers.extend_from_slice(signers);
        let tx = Transaction::new_signed_with_payer(
            instructions,
            Some(&self.ctx.payer.pubkey()),
            &all_signers,
            blockhash,
        );
        let simulation = self
            .ctx
            .banks_client
            .simulate_transaction(tx.clone())
            .await
            .expect("simulate");
        if let Some(Err(error)) = simulation.result {
            return Err(error);
        }
        let events = simulation
            .simulation_details
            .and_then(|details| details.inner_instructions)
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .filter_map(|inner| decode_event(&inner.instruction.data))
            .collect();
        self.ctx
            .banks_client
            .process_transaction(tx)
            .await
            .expect("a simulated success must commit");
        Ok(events)
    }

    pub async fn airdrop(&mut self, to: &Pubkey, lamports: u64) {
        let payer = self.ctx.payer.pubkey();
        self.send(&[system_instruction::transfer(&payer, to, lamports)], &[])
            .await
            .expect("airdrop");
    }

    /// A funded wallet with a registered user account and `deposit` lamports in its vault.
    pub async fn user_with_deposit(&mut self, deposit: u64) -> Wallet {
        let wallet = Wallet::new();
        self.register_with_deposit(&wallet, deposit).await;
        wallet
    }

    /// Funds and registers `wallet` in this deployment and deposits `deposit` into its vault.
    pub async fn register_with_deposit(&mut self, wallet: &Wallet, deposit: u64) {
        self.airdrop(&wallet.pubkey(), 100 * SOL).await;
        self.send(&[ix::register(wallet.pubkey())], &[&wallet.keypair])
            .await
            .expect("register");
        if deposit > 0 {
            self.send(
                &[ix::deposit(wallet.pubkey(), wallet.pubkey(), deposit)],
                &[&wallet.keypair],
            )
            .await
            .expect("deposit");
        }
    }

    /// Creates another namespace with its own authority, bot and treasury; returns its id.
    pub async fn another_namespace(&mut self, bot: &Keypair, treasury: Pubkey) -> u64 {
        let authority = Keypair::new();
        self.airdrop(&authority.pubkey(), SOL).await;
        self.airdrop(&treasury, self.rent_minimum).await;
        let id = self.global_namespace_count().await;
        self.send(
            &[ix::create_namespace(
                authority.pubkey(),
                id,
                CreateNamespaceArgs {
                    name: "other operator".into(),
                    bot: bot.pubkey(),
                    treasury,
                },
            )],
            &[&authority],
        )
        .await
        .expect("create namespace");
        id
    }

    pub async fn now(&mut self) -> i64 {
        self.clock().await.unix_timestamp
    }

    async fn clock(&mut self) -> Clock {
        self.ctx
            .banks_client
            .get_sysvar::<Clock>()
            .await
            .expect("clock")
    }

    /// Moves the bank's clock to `unix_timestamp`.
    pub async fn set_time(&mut self, unix_timestamp: i64) {
        let mut clock = self.clock().await;
        clock.unix_timestamp = unix_timestamp;
        self.ctx.set_sysvar(&clock);
    }

    pub async fn lamports(&mut self, address: &Pubkey) -> u64 {
        self.ctx
            .banks_client
            .get_balance(*address)
            .await
            .expect("balance")
    }

    pub async fn raw(&mut self, address: &Pubkey) -> Option<Vec<u8>> {
        self.ctx
            .banks_client
            .get_account(*address)
            .await
            .expect("account")
            .map(|account| account.data)
    }

    pub async fn decode<T: AccountDeserialize>(&mut self, address: &Pubkey) -> Option<T> {
        let data = self.raw(address).await?;
        Some(T::try_deserialize(&mut data.as_slice()).expect("account data"))
    }

    pub async fn user_account(&mut self, user: &Pubkey) -> UserAccount {
        self.decode(&pda::user_account(user))
            .await
            .expect("user account")
    }

    pub async fn namespace(&mut self, id: u64) -> Namespace {
        self.decode(&pda::namespace(id)).await.expect("namespace")
    }

    pub async fn lock(&mut self, user: &Pubkey, nonce: u64) -> Option<Lock> {
        self.decode(&pda::lock(user, nonce)).await
    }

    pub async fn global(&mut self) -> Global {
        self.decode(&pda::global()).await.expect("global")
    }

    pub async fn global_namespace_count(&mut self) -> u64 {
        self.global().await.namespace_count
    }

    /// Writes a program-owned account holding `global` at `address`: what an attacker who
    /// could pass any account would forge (a `Global` naming the cluster they want).
    pub fn forge_global(&mut self, address: &Pubkey, global: &Global) {
        let mut data = Vec::new();
        global.try_serialize(&mut data).expect("serialize");
        let account = solana_account::Account {
            lamports: Rent::default().minimum_balance(data.len()),
            data,
            owner: balance_payment::ID,
            executable: false,
            rent_epoch: 0,
        };
        self.ctx.set_account(address, &account.into());
    }

    pub async fn vault_balance(&mut self, user: &Pubkey) -> u64 {
        self.lamports(&pda::vault(user)).await
    }

    pub async fn snapshot(&mut self, user: &Pubkey) -> Snapshot {
        let treasury = self.treasury;
        let namespace_id = self.namespace_id;
        Snapshot {
            user_account: self.raw(&pda::user_account(user)).await,
            vault: self.vault_balance(user).await,
            treasury: self.lamports(&treasury).await,
            namespace: self.raw(&pda::namespace(namespace_id)).await,
        }
    }

    /// Terms for `user`'s current nonce in this harness's namespace, live for a minute.
    pub async fn terms(&mut self, user: &Pubkey, max_amount: u64) -> AuthorizationTerms {
        let nonce = self.user_account(user).await.nonce;
        let deadline = self.now().await + 60;
        AuthorizationTerms {
            program_id: balance_payment::ID,
            cluster: self.cluster,
            namespace_id: self.namespace_id,
            user: *user,
            nonce,
            max_amount,
            asset: Asset::Lamports,
            deadline,
            extra_data: [7; 32],
        }
    }

    /// The user signs terms for their current nonce.
    pub async fn authorize(&mut self, wallet: &Wallet, max_amount: u64) -> RecoverInfo {
        let terms = self.terms(&wallet.pubkey(), max_amount).await;
        sign_authorization(&wallet.signing_key, &terms)
    }

    /// The bot redeems `info` with `pay`.
    pub async fn pay(
        &mut self,
        user: &Pubkey,
        info: RecoverInfo,
        amount: u64,
    ) -> Result<Vec<ProgramEvent>, TransactionError> {
        let bot = self.bot.insecure_clone();
        let instructions = ix::pay_authorized(
            self.cluster,
            bot.pubkey(),
            self.namespace_id,
            self.treasury,
            *user,
            info,
            amount,
        );
        self.send(&instructions, &[&bot]).await
    }

    /// The bot redeems `info` with `lock`.
    pub async fn lock_funds(
        &mut self,
        user: &Pubkey,
        info: RecoverInfo,
        amount: u64,
    ) -> Result<Vec<ProgramEvent>, TransactionError> {
        let bot = self.bot.insecure_clone();
        let instructions = ix::lock_authorized(
            self.cluster,
            bot.pubkey(),
            self.namespace_id,
            *user,
            info,
            amount,
        );
        self.send(&instructions, &[&bot]).await
    }

    /// The bot settles `user`'s lock `nonce` for `amount`.
    pub async fn settle(
        &mut self,
        user: &Pubkey,
        nonce: u64,
        amount: u64,
    ) -> Result<Vec<ProgramEvent>, TransactionError> {
        let bot = self.bot.insecure_clone();
        let instruction = ix::settle(
            bot.pubkey(),
            self.namespace_id,
            self.treasury,
            *user,
            nonce,
            bot.pubkey(),
            amount,
        );
        self.send(&[instruction], &[&bot]).await
    }
}
