//! The program as the operator and wallet commands see it: its accounts decoded, and
//! transactions whose failures say why in words (not deployed, not initialised, not
//! registered, the program's own error by name).
use super::{explain, rpc::RpcChain, Chain, ChainError};
use balance_payment::{
    sdk::{
        pda,
        spl::{self, MintInfo},
    },
    state::{AcceptedMint, Global, Namespace, TokenBalance, UserAccount},
};
use solana_commitment_config::CommitmentConfig;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_sdk::{instruction::Instruction, pubkey::Pubkey, signature::Keypair};

/// Why a command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the Solana RPC at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the program {program} is not deployed on {url} (deploy it with `anchor deploy`)")]
    NotDeployed { program: Pubkey, url: String },
    #[error("the program is not initialised on this cluster: run `indexer initialize` first")]
    NotInitialized,
    #[error("namespace {0} does not exist (see `indexer namespace show`)")]
    NoNamespace(u64),
    #[error("wallet {0} is not registered with the program: run `proxy register` first")]
    NotRegistered(Pubkey),
    #[error("account {0} does not hold the program data it should")]
    Unreadable(Pubkey),
    #[error("{0} is not a mint of the SPL Token or Token-2022 program")]
    NotAMint(Pubkey),
    #[error("namespace {namespace_id} does not accept the token {mint}")]
    MintNotAccepted { namespace_id: u64, mint: Pubkey },
    #[error("{0}")]
    Refused(String),
}

/// One cluster, one program.
pub struct ProgramClient {
    url: String,
    rpc: RpcClient,
    chain: RpcChain,
}

impl ProgramClient {
    /// Talks to the program `balance_payment::ID` through `url`, at `confirmed`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            rpc: RpcClient::new_with_commitment(url.to_owned(), CommitmentConfig::confirmed()),
            chain: RpcChain::new(
                url,
                None,
                balance_payment::ID,
                CommitmentConfig::confirmed(),
            ),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn unreachable(&self, error: impl std::fmt::Display) -> ClientError {
        ClientError::Unreachable {
            url: self.url.clone(),
            reason: error.to_string(),
        }
    }

    /// The node answers and the program is there, executable.
    pub async fn ensure_deployed(&self) -> Result<(), ClientError> {
        let account = self
            .rpc
            .get_account_with_commitment(&balance_payment::ID, CommitmentConfig::confirmed())
            .await
            .map_err(|e| self.unreachable(e))?
            .value;
        match account {
            Some(account) if account.executable => Ok(()),
            _ => Err(ClientError::NotDeployed {
                program: balance_payment::ID,
                url: self.url.clone(),
            }),
        }
    }

    /// The cluster's genesis hash: the tag `initialize` binds every signature to.
    pub async fn genesis_hash(&self) -> Result<[u8; 32], ClientError> {
        self.rpc
            .get_genesis_hash()
            .await
            .map(|hash| hash.to_bytes())
            .map_err(|e| self.unreachable(e))
    }

    async fn account<T: decodable::Decode>(
        &self,
        address: &Pubkey,
    ) -> Result<Option<T>, ClientError> {
        match self
            .chain
            .account_data(address)
            .await
            .map_err(|e| self.unreachable(e))?
        {
            None => Ok(None),
            Some(data) => T::decode(&data)
                .map(Some)
                .ok_or(ClientError::Unreadable(*address)),
        }
    }

    /// `Global`, if the program was initialised.
    pub async fn global(&self) -> Result<Option<Global>, ClientError> {
        self.account(&pda::global()).await
    }

    pub async fn namespace(&self, id: u64) -> Result<Option<Namespace>, ClientError> {
        self.account(&pda::namespace(id)).await
    }

    /// Namespace `id`, or `NoNamespace`.
    pub async fn require_namespace(&self, id: u64) -> Result<Namespace, ClientError> {
        self.namespace(id)
            .await?
            .ok_or(ClientError::NoNamespace(id))
    }

    /// `user`'s account, or `NotRegistered`.
    pub async fn user_account(&self, user: &Pubkey) -> Result<UserAccount, ClientError> {
        self.account(&pda::user_account(user))
            .await?
            .ok_or(ClientError::NotRegistered(*user))
    }

    pub async fn is_registered(&self, user: &Pubkey) -> Result<bool, ClientError> {
        Ok(self
            .account::<UserAccount>(&pda::user_account(user))
            .await?
            .is_some())
    }

    pub async fn lamports(&self, address: &Pubkey) -> Result<u64, ClientError> {
        self.chain
            .lamports(address)
            .await
            .map_err(|e| self.unreachable(e))
    }

    /// Whether an account exists at `address` (with data).
    pub async fn account_exists(&self, address: &Pubkey) -> Result<bool, ClientError> {
        Ok(self
            .chain
            .account_data(address)
            .await
            .map_err(|e| self.unreachable(e))?
            .is_some())
    }

    /// What an account of `len` data bytes must hold to stay (a vault has none).
    pub async fn rent_exempt_minimum(&self, len: usize) -> Result<u64, ClientError> {
        self.rpc
            .get_minimum_balance_for_rent_exemption(len)
            .await
            .map_err(|e| self.unreachable(e))
    }

    /// `mint`'s token program and decimals, or `NotAMint`.
    pub async fn mint(&self, mint: &Pubkey) -> Result<MintInfo, ClientError> {
        let account = self
            .rpc
            .get_account_with_commitment(mint, CommitmentConfig::confirmed())
            .await
            .map_err(|e| self.unreachable(e))?
            .value
            .ok_or(ClientError::NotAMint(*mint))?;
        spl::decode_mint(&account.owner, &account.data).ok_or(ClientError::NotAMint(*mint))
    }

    /// The tokens token account `address` holds; 0 when it does not exist yet.
    pub async fn token_amount(&self, address: &Pubkey) -> Result<u64, ClientError> {
        match self
            .chain
            .account_data(address)
            .await
            .map_err(|e| self.unreachable(e))?
        {
            None => Ok(0),
            Some(data) => spl::decode_token_amount(&data).ok_or(ClientError::Unreadable(*address)),
        }
    }

    /// `user`'s escrow of `mint` (locked total), if its vault was opened.
    pub async fn token_balance(
        &self,
        user: &Pubkey,
        mint: &Pubkey,
    ) -> Result<Option<TokenBalance>, ClientError> {
        self.account(&pda::token_balance(user, mint)).await
    }

    /// Namespace `namespace_id`'s listing of `mint`, or `MintNotAccepted`.
    pub async fn require_accepted(
        &self,
        namespace_id: u64,
        mint: &Pubkey,
    ) -> Result<AcceptedMint, ClientError> {
        self.account(&pda::accepted_mint(namespace_id, mint))
            .await?
            .ok_or(ClientError::MintNotAccepted {
                namespace_id,
                mint: *mint,
            })
    }

    /// Signs, sends and confirms; a refusal names the program's error.
    pub async fn send(
        &self,
        instructions: &[Instruction],
        signers: &[&Keypair],
    ) -> Result<String, ClientError> {
        self.chain
            .submit(instructions, signers)
            .await
            .map_err(|error| match error {
                ChainError::Rejected { code, message } => {
                    ClientError::Refused(explain::refusal(code, &message))
                }
                ChainError::Unavailable(reason) => self.unreachable(reason),
            })
    }
}

/// The program's account types this client reads (anchor-lang stays out of our dependencies).
mod decodable {
    use balance_payment::state::{AcceptedMint, Global, Namespace, TokenBalance, UserAccount};

    pub trait Decode: Sized {
        fn decode(data: &[u8]) -> Option<Self>;
    }

    macro_rules! decodable {
        ($($t:ty),*) => {$(
            impl Decode for $t {
                fn decode(data: &[u8]) -> Option<Self> {
                    balance_payment::sdk::accounts::decode(data)
                }
            }
        )*};
    }
    decodable!(AcceptedMint, Global, Namespace, TokenBalance, UserAccount);
}
