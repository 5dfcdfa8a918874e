//! Token escrow: which mints may be held, how much of a vault is free, and moving tokens out
//! of a vault.
//!
//! A user's tokens of one mint sit in a token account PDA (`["TOKEN_VAULT", user, mint]`)
//! whose authority is the user's `TokenBalance` PDA, so only this program can move them, and
//! only as `withdraw_token` (the user), `pay_token` and `settle_token` (a namespace's bot with
//! the user's signature) allow. Unlike the SOL vault, a token account's rent is separate from
//! its balance, so every token in it is the user's to spend.
use crate::{
    errors::BalancePaymentError,
    state::{seeds::TOKEN_BALANCE_SEED, TokenBalance},
};
use anchor_lang::prelude::*;
use anchor_spl::{
    token_2022::spl_token_2022::{
        extension::{BaseStateWithExtensions, ExtensionType, StateWithExtensions},
        state::Mint as MintState,
    },
    token_interface::{self, Mint, TokenAccount, TokenInterface, TransferChecked},
};

/// Refuses a Token-2022 mint whose extensions would break the escrow's arithmetic (a fee) or
/// let another program or key decide what happens to the vault's tokens (a hook, a permanent
/// delegate). Classic SPL Token mints have no extensions and always pass.
pub fn refuse_unsupported_mint(mint: &AccountInfo) -> Result<()> {
    if *mint.owner != anchor_spl::token_2022::ID {
        return Ok(());
    }
    let data = mint.try_borrow_data()?;
    let state = StateWithExtensions::<MintState>::unpack(&data)?;
    for extension in state.get_extension_types()? {
        match extension {
            ExtensionType::TransferFeeConfig => {
                return err!(BalancePaymentError::MintHasTransferFee)
            }
            ExtensionType::TransferHook => return err!(BalancePaymentError::MintHasTransferHook),
            ExtensionType::PermanentDelegate => {
                return err!(BalancePaymentError::MintHasPermanentDelegate)
            }
            _ => {}
        }
    }
    Ok(())
}

/// Base units an operator may pay or lock out of a vault holding `vault_amount` right now.
pub fn spendable_tokens(vault_amount: u64, locked_amount: u64) -> Result<u64> {
    vault_amount
        .checked_sub(locked_amount)
        .ok_or_else(|| error!(BalancePaymentError::InsufficientFunds))
}

/// A user's vault of one mint, with what it takes to sign a transfer out of it.
pub struct TokenVault<'a, 'info> {
    pub vault: &'a InterfaceAccount<'info, TokenAccount>,
    pub mint: &'a InterfaceAccount<'info, Mint>,
    /// The vault's authority, whose seeds sign.
    pub balance: &'a Account<'info, TokenBalance>,
    pub token_program: &'a Interface<'info, TokenInterface>,
}

impl<'info> TokenVault<'_, 'info> {
    /// Moves `amount` base units to the token account `to` (`transfer_checked`, so the mint
    /// and its decimals are checked by the token program too).
    pub fn transfer_to(&self, to: &AccountInfo<'info>, amount: u64) -> Result<()> {
        let (owner, mint) = (self.balance.owner, self.balance.mint);
        let seeds: &[&[u8]] = &[
            TOKEN_BALANCE_SEED,
            owner.as_ref(),
            mint.as_ref(),
            &[self.balance.bump],
        ];
        token_interface::transfer_checked(
            CpiContext::new_with_signer(
                self.token_program.key(),
                TransferChecked {
                    from: self.vault.to_account_info(),
                    mint: self.mint.to_account_info(),
                    to: to.clone(),
                    authority: self.balance.to_account_info(),
                },
                &[seeds],
            ),
            amount,
            self.mint.decimals,
        )
    }
}
