//! `balance_payment`: an escrow for pay-per-use LLM credits.
//!
//! Users keep SOL in a vault PDA they alone can withdraw from. An operator ("namespace") can
//! only move it with the user's signed authorisation ([`authorization`]), which binds this
//! program, the cluster, the namespace, the user, a one-time nonce, an amount and a deadline.
//! Every state change is emitted as an event through `emit_cpi!` for indexers.
//!
//! SPL tokens (classic and Token-2022) are escrowed the same way beside SOL: a namespace lists
//! the mints it accepts, each user holds one vault per mint, and every SOL instruction has a
//! `_token` twin with the same rules; the signed authorisation names the mint.
#![allow(unexpected_cfgs)]

use anchor_lang::prelude::*;

pub mod authorization;
pub mod errors;
pub mod events;
pub mod instructions;
pub mod state;
mod token_vault;
mod vault;

#[cfg(feature = "sdk")]
pub mod sdk;

#[cfg(all(test, feature = "idl-build"))]
mod idl_freshness;

pub use authorization::RecoverInfo;
pub use instructions::*;

declare_id!("BrupoAJZ6RfKk5SrdABrLDbZgLJ4fhcv6ChY6ZrryLgA");

#[program]
pub mod balance_payment {
    use super::*;

    /// Creates the namespace counter and records the cluster tag (the cluster's genesis
    /// hash) that every authorisation must name; once per deployment.
    pub fn initialize(ctx: Context<Initialize>, cluster: [u8; 32]) -> Result<()> {
        Initialize::initialize(ctx, cluster)
    }

    /// Registers an operator; the signer becomes its authority.
    pub fn create_namespace(
        ctx: Context<CreateNamespace>,
        args: CreateNamespaceArgs,
    ) -> Result<()> {
        CreateNamespace::create_namespace(ctx, args)
    }

    /// Changes a namespace's name, authority, bot or treasury; authority only.
    pub fn update_namespace(
        ctx: Context<UpdateNamespace>,
        args: UpdateNamespaceArgs,
    ) -> Result<()> {
        UpdateNamespace::update_namespace(ctx, args)
    }

    /// Creates the signer's user account.
    pub fn register(ctx: Context<Register>) -> Result<()> {
        Register::register(ctx)
    }

    /// Adds SOL to a user's vault.
    pub fn deposit(ctx: Context<Deposit>, amount: u64) -> Result<()> {
        Deposit::deposit(ctx, amount)
    }

    /// Returns free SOL from the signer's vault.
    pub fn withdraw(ctx: Context<Withdraw>, amount: u64) -> Result<()> {
        Withdraw::withdraw(ctx, amount)
    }

    /// Holds up to the signed maximum in the user's vault until settled or expired; bot only.
    pub fn lock(
        ctx: Context<LockFunds>,
        namespace_id: u64,
        recover_info: RecoverInfo,
        amount: u64,
    ) -> Result<()> {
        LockFunds::lock(ctx, namespace_id, recover_info, amount)
    }

    /// Moves at most the locked amount to the treasury and closes the lock; bot only.
    pub fn settle(ctx: Context<Settle>, amount: u64) -> Result<()> {
        Settle::settle(ctx, amount)
    }

    /// Returns an expired lock's funds to the user's free balance; the user only.
    pub fn release(ctx: Context<Release>) -> Result<()> {
        Release::release(ctx)
    }

    /// Moves exactly the signed amount from the user's vault to the treasury; bot only.
    pub fn pay(
        ctx: Context<Pay>,
        namespace_id: u64,
        recover_info: RecoverInfo,
        amount: u64,
    ) -> Result<()> {
        Pay::pay(ctx, namespace_id, recover_info, amount)
    }

    /// Lists a mint the namespace takes payment in; authority only. Refuses Token-2022 mints
    /// with a transfer fee, a transfer hook or a permanent delegate.
    pub fn accept_mint(ctx: Context<AcceptMint>, namespace_id: u64) -> Result<()> {
        AcceptMint::accept_mint(ctx, namespace_id)
    }

    /// Stops the namespace taking a mint; authority only.
    pub fn delist_mint(ctx: Context<DelistMint>) -> Result<()> {
        DelistMint::delist_mint(ctx)
    }

    /// Creates a registered user's vault for a mint some namespace accepts.
    pub fn open_token_vault(ctx: Context<OpenTokenVault>) -> Result<()> {
        OpenTokenVault::open_token_vault(ctx)
    }

    /// Adds tokens to a user's vault of their mint.
    pub fn deposit_token(ctx: Context<DepositToken>, amount: u64) -> Result<()> {
        DepositToken::deposit_token(ctx, amount)
    }

    /// Returns free tokens from the signer's vault.
    pub fn withdraw_token(ctx: Context<WithdrawToken>, amount: u64) -> Result<()> {
        WithdrawToken::withdraw_token(ctx, amount)
    }

    /// Moves exactly the signed amount of a mint from the user's vault to the treasury's
    /// token account; bot only.
    pub fn pay_token(
        ctx: Context<PayToken>,
        namespace_id: u64,
        recover_info: RecoverInfo,
        amount: u64,
    ) -> Result<()> {
        PayToken::pay_token(ctx, namespace_id, recover_info, amount)
    }

    /// Holds up to the signed maximum of a mint in the user's vault; bot only.
    pub fn lock_token(
        ctx: Context<LockToken>,
        namespace_id: u64,
        recover_info: RecoverInfo,
        amount: u64,
    ) -> Result<()> {
        LockToken::lock_token(ctx, namespace_id, recover_info, amount)
    }

    /// Moves at most the locked tokens to the treasury and closes the lock; bot only.
    pub fn settle_token(ctx: Context<SettleToken>, amount: u64) -> Result<()> {
        SettleToken::settle_token(ctx, amount)
    }

    /// Returns an expired token lock to the user's free balance; the user only.
    pub fn release_token(ctx: Context<ReleaseToken>) -> Result<()> {
        ReleaseToken::release_token(ctx)
    }
}
