//! The SPL programs as a client of the token escrow meets them: their interface crates (so a
//! service reads token accounts and mints with the same types the program uses), and the
//! associated token account a wallet keeps each mint in.
use anchor_lang::prelude::Pubkey;
use anchor_lang::solana_program::instruction::Instruction;
pub use anchor_spl::{
    associated_token::{
        get_associated_token_address_with_program_id, spl_associated_token_account,
    },
    token::spl_token,
    token_2022::spl_token_2022,
};
use spl_token_2022::{
    extension::{BaseStateWithExtensions, ExtensionType, StateWithExtensions},
    state::{Account, Mint},
};

/// The classic SPL Token program.
pub const TOKEN_PROGRAM_ID: Pubkey = anchor_spl::token::ID;
/// The Token-2022 program.
pub const TOKEN_2022_PROGRAM_ID: Pubkey = anchor_spl::token_2022::ID;

/// `owner`'s associated token account of `mint`, under `token_program`.
pub fn associated_token_address(owner: &Pubkey, mint: &Pubkey, token_program: &Pubkey) -> Pubkey {
    get_associated_token_address_with_program_id(owner, mint, token_program)
}

/// Creates `owner`'s associated token account of `mint` unless it exists; `payer` pays.
pub fn create_associated_token_account(
    payer: &Pubkey,
    owner: &Pubkey,
    mint: &Pubkey,
    token_program: &Pubkey,
) -> Instruction {
    spl_associated_token_account::instruction::create_associated_token_account_idempotent(
        payer,
        owner,
        mint,
        token_program,
    )
}

/// What a client needs of a mint: the program that owns it and its decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MintInfo {
    pub token_program: Pubkey,
    pub decimals: u8,
}

/// The mint in `data` owned by `owner`, or `None` when it is not a mint of either token
/// program.
pub fn decode_mint(owner: &Pubkey, data: &[u8]) -> Option<MintInfo> {
    if *owner != TOKEN_PROGRAM_ID && *owner != TOKEN_2022_PROGRAM_ID {
        return None;
    }
    let mint = StateWithExtensions::<Mint>::unpack(data).ok()?;
    Some(MintInfo {
        token_program: *owner,
        decimals: mint.base.decimals,
    })
}

/// Why the mint in `data` (owned by `owner`) cannot be taken as payment, as the escrow refuses
/// it: a transfer fee (the recipient gets less than was sent), a transfer hook (another
/// program decides), a permanent delegate (another key can take the tokens back). `None`
/// when it can (every classic SPL Token mint).
pub fn refused_extension(owner: &Pubkey, data: &[u8]) -> Option<&'static str> {
    if *owner != TOKEN_2022_PROGRAM_ID {
        return None;
    }
    let mint = StateWithExtensions::<Mint>::unpack(data).ok()?;
    mint.get_extension_types()
        .ok()?
        .into_iter()
        .find_map(|extension| match extension {
            ExtensionType::TransferFeeConfig => Some("a transfer fee"),
            ExtensionType::TransferHook => Some("a transfer hook"),
            ExtensionType::PermanentDelegate => Some("a permanent delegate"),
            _ => None,
        })
}

/// The token amount a token account's `data` holds, or `None` when it is not a token account.
pub fn decode_token_amount(data: &[u8]) -> Option<u64> {
    StateWithExtensions::<Account>::unpack(data)
        .ok()
        .map(|account| account.base.amount)
}

/// Bytes of a mint without extensions (either token program).
pub const MINT_LEN: usize = 82;

/// Creates a mint at `mint` (a fresh keypair's address, which signs) with `decimals` and
/// `authority` as its mint authority and no freeze authority; `rent` is what [`MINT_LEN`]
/// bytes must hold. For local clusters and tests: a stand-in for USDC.
pub fn create_mint(
    payer: &Pubkey,
    mint: &Pubkey,
    authority: &Pubkey,
    decimals: u8,
    token_program: &Pubkey,
    rent: u64,
) -> Result<[Instruction; 2], anchor_lang::prelude::ProgramError> {
    Ok([
        anchor_lang::solana_program::system_instruction::create_account(
            payer,
            mint,
            rent,
            MINT_LEN as u64,
            token_program,
        ),
        spl_token_2022::instruction::initialize_mint2(
            token_program,
            mint,
            authority,
            None,
            decimals,
        )?,
    ])
}

/// Mints `amount` base units of `mint` into the token account `to`; signed by `authority`.
pub fn mint_to(
    token_program: &Pubkey,
    mint: &Pubkey,
    to: &Pubkey,
    authority: &Pubkey,
    amount: u64,
) -> Result<Instruction, anchor_lang::prelude::ProgramError> {
    spl_token_2022::instruction::mint_to(token_program, mint, to, authority, &[], amount)
}
