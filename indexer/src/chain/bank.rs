//! An in-process chain: a `solana-program-test` bank running `balance_payment` natively.
//! It backs the local stack (`indexer sandbox`) and the end-to-end tests; its clock follows
//! wall time so that signed deadlines mean what they say.
use super::{Chain, ChainError, ChainEvent, EventBatch};
use async_trait::async_trait;
use balance_payment::sdk::{events::decode_event, native};
use solana_program_test::{processor, ProgramTest, ProgramTestContext};
use solana_sdk::{
    clock::Clock,
    instruction::Instruction,
    pubkey::Pubkey,
    signature::{Keypair, Signer},
    transaction::Transaction,
};
use tokio::sync::Mutex;

pub struct BankChain {
    state: Mutex<State>,
    payer: Keypair,
    genesis_hash: [u8; 32],
    activity: tokio::sync::Notify,
}

struct State {
    ctx: ProgramTestContext,
    events: Vec<ChainEvent>,
}

impl BankChain {
    /// A fresh bank with the program deployed (natively) and nothing else.
    pub async fn start() -> Self {
        let mut program_test = ProgramTest::default();
        program_test.prefer_bpf(false);
        program_test.add_program(
            "balance_payment",
            balance_payment::ID,
            processor!(native::process_instruction),
        );
        let ctx = program_test.start_with_context().await;
        let payer = ctx.payer.insecure_clone();
        let genesis_hash = ctx.genesis_config().hash().to_bytes();
        Self {
            state: Mutex::new(State {
                ctx,
                events: Vec::new(),
            }),
            payer,
            genesis_hash,
            activity: tokio::sync::Notify::new(),
        }
    }

    /// This bank's genesis hash: the cluster tag to `initialize` the program with here.
    pub fn genesis_hash(&self) -> [u8; 32] {
        self.genesis_hash
    }

    /// The bank's pre-funded genesis account: use it to fund others.
    pub fn faucet(&self) -> &Keypair {
        &self.payer
    }

    /// Moves `lamports` from the faucet to `to`.
    pub async fn airdrop(&self, to: &Pubkey, lamports: u64) -> Result<String, ChainError> {
        let transfer =
            solana_system_interface::instruction::transfer(&self.payer.pubkey(), to, lamports);
        self.submit(&[transfer], &[&self.payer]).await
    }
}

#[async_trait]
impl Chain for BankChain {
    async fn submit(
        &self,
        instructions: &[Instruction],
        signers: &[&Keypair],
    ) -> Result<String, ChainError> {
        let fee_payer = signers
            .first()
            .ok_or_else(|| ChainError::unavailable("no signer to pay the fee"))?;
        let mut state = self.state.lock().await;
        let mut clock: Clock = state
            .ctx
            .banks_client
            .get_sysvar()
            .await
            .map_err(ChainError::unavailable)?;
        clock.unix_timestamp = indexer_now();
        state.ctx.set_sysvar(&clock);
        let blockhash = state
            .ctx
            .banks_client
            .get_latest_blockhash()
            .await
            .map_err(ChainError::unavailable)?;
        let tx = Transaction::new_signed_with_payer(
            instructions,
            Some(&fee_payer.pubkey()),
            signers,
            blockhash,
        );
        let signature = tx.signatures[0].to_string();
        let simulation = state
            .ctx
            .banks_client
            .simulate_transaction(tx.clone())
            .await
            .map_err(ChainError::unavailable)?;
        if let Some(Err(error)) = simulation.result {
            return Err(ChainError::rejected(&error));
        }
        let slot = state
            .ctx
            .banks_client
            .get_root_slot()
            .await
            .map_err(ChainError::unavailable)?;
        let events: Vec<_> = simulation
            .simulation_details
            .and_then(|details| details.inner_instructions)
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .filter(|inner| {
                tx.message
                    .account_keys
                    .get(inner.instruction.program_id_index as usize)
                    == Some(&balance_payment::ID)
            })
            .filter_map(|inner| decode_event(&inner.instruction.data))
            .collect();
        state
            .ctx
            .banks_client
            .process_transaction(tx)
            .await
            .map_err(|error| match error {
                solana_banks_client::BanksClientError::TransactionError(error) => {
                    ChainError::rejected(&error)
                }
                other => ChainError::unavailable(other),
            })?;
        for (index, event) in events.into_iter().enumerate() {
            state.events.push(ChainEvent {
                signature: signature.clone(),
                index: index as u32,
                slot,
                event,
            });
        }
        self.activity.notify_one();
        Ok(signature)
    }

    /// The cursor is the number of events already read.
    async fn events_after(&self, cursor: Option<&str>) -> Result<EventBatch, ChainError> {
        let state = self.state.lock().await;
        let start = cursor
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(0)
            .min(state.events.len());
        Ok(EventBatch {
            events: state.events[start..].to_vec(),
            cursor: Some(state.events.len().to_string()),
        })
    }

    async fn lamports(&self, address: &Pubkey) -> Result<u64, ChainError> {
        let state = self.state.lock().await;
        state
            .ctx
            .banks_client
            .get_balance(*address)
            .await
            .map_err(ChainError::unavailable)
    }

    /// Raw data of `address`, if the account exists.
    async fn account_data(&self, address: &Pubkey) -> Result<Option<Vec<u8>>, ChainError> {
        let state = self.state.lock().await;
        let account = state
            .ctx
            .banks_client
            .get_account(*address)
            .await
            .map_err(ChainError::unavailable)?;
        Ok(account.map(|account| account.data))
    }

    async fn find_payment(
        &self,
        user: &Pubkey,
        namespace_id: u64,
        nonce: u64,
    ) -> Result<Option<ChainEvent>, ChainError> {
        let state = self.state.lock().await;
        Ok(state
            .events
            .iter()
            .find(|event| event.pays(user, namespace_id, nonce))
            .cloned())
    }

    async fn wait_for_activity(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.activity.notified()).await;
    }
}

fn indexer_now() -> i64 {
    crate::ledger::now()
}
