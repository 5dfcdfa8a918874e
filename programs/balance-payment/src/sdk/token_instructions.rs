//! One builder per token-escrow instruction, every account filled in from [`super::pda`].
//! `token_program` is the program that owns the mint (SPL Token or Token-2022); token accounts
//! outside the escrow (a depositor's source, a withdrawal's destination, the treasury's) are
//! the caller's to name.
use super::{authorization, pda};
use crate::{accounts, authorization::Asset, instruction, RecoverInfo};
use anchor_lang::{
    prelude::Pubkey,
    solana_program::{instruction::Instruction, system_program},
    InstructionData, ToAccountMetas,
};

fn build(accounts: impl ToAccountMetas, data: impl InstructionData) -> Instruction {
    Instruction {
        program_id: crate::ID,
        accounts: accounts.to_account_metas(None),
        data: data.data(),
    }
}

/// Lists `mint` as a token namespace `namespace_id` takes; signed by its authority.
pub fn accept_mint(authority: Pubkey, namespace_id: u64, mint: Pubkey) -> Instruction {
    build(
        accounts::AcceptMint {
            authority,
            namespace: pda::namespace(namespace_id),
            mint,
            accepted_mint: pda::accepted_mint(namespace_id, &mint),
            system_program: system_program::ID,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::AcceptMint { namespace_id },
    )
}

/// Stops namespace `namespace_id` taking `mint`; signed by its authority.
pub fn delist_mint(authority: Pubkey, namespace_id: u64, mint: Pubkey) -> Instruction {
    build(
        accounts::DelistMint {
            authority,
            namespace: pda::namespace(namespace_id),
            accepted_mint: pda::accepted_mint(namespace_id, &mint),
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::DelistMint {},
    )
}

/// Opens `user`'s vault of `mint`, which namespace `accepting_namespace` accepts; `payer` pays
/// the rent.
pub fn open_token_vault(
    payer: Pubkey,
    user: Pubkey,
    mint: Pubkey,
    accepting_namespace: u64,
    token_program: Pubkey,
) -> Instruction {
    build(
        accounts::OpenTokenVault {
            payer,
            user,
            user_account: pda::user_account(&user),
            mint,
            accepted_mint: pda::accepted_mint(accepting_namespace, &mint),
            token_balance: pda::token_balance(&user, &mint),
            vault: pda::token_vault(&user, &mint),
            token_program,
            system_program: system_program::ID,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::OpenTokenVault {},
    )
}

/// Moves `amount` base units from `depositor`'s token account `source` into `user`'s vault.
pub fn deposit_token(
    depositor: Pubkey,
    source: Pubkey,
    user: Pubkey,
    mint: Pubkey,
    token_program: Pubkey,
    amount: u64,
) -> Instruction {
    build(
        accounts::DepositToken {
            depositor,
            source,
            user,
            token_balance: pda::token_balance(&user, &mint),
            vault: pda::token_vault(&user, &mint),
            mint,
            token_program,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::DepositToken { amount },
    )
}

/// Returns `amount` base units from `user`'s vault to the token account `destination`; signed
/// by `user`.
pub fn withdraw_token(
    user: Pubkey,
    destination: Pubkey,
    mint: Pubkey,
    token_program: Pubkey,
    amount: u64,
) -> Instruction {
    build(
        accounts::WithdrawToken {
            user,
            token_balance: pda::token_balance(&user, &mint),
            vault: pda::token_vault(&user, &mint),
            destination,
            mint,
            token_program,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::WithdrawToken { amount },
    )
}

/// Who redeems a token authorisation, and where the tokens go.
#[derive(Clone, Copy, Debug)]
pub struct TokenRedeemer {
    /// The namespace's bot, which signs.
    pub bot: Pubkey,
    pub namespace_id: u64,
    pub mint: Pubkey,
    pub token_program: Pubkey,
    /// The treasury's token account of `mint` (`pay_token`, `settle_token`).
    pub treasury_tokens: Pubkey,
}

/// The `pay_token` instruction alone; it must follow the Ed25519 check (see
/// [`pay_token_authorized`]).
pub fn pay_token(
    redeemer: &TokenRedeemer,
    user: Pubkey,
    recover_info: RecoverInfo,
    amount: u64,
) -> Instruction {
    let TokenRedeemer {
        bot,
        namespace_id,
        mint,
        ..
    } = *redeemer;
    build(
        accounts::PayToken {
            bot,
            namespace: pda::namespace(namespace_id),
            accepted_mint: pda::accepted_mint(namespace_id, &mint),
            global: pda::global(),
            user,
            user_account: pda::user_account(&user),
            token_balance: pda::token_balance(&user, &mint),
            vault: pda::token_vault(&user, &mint),
            mint,
            treasury: redeemer.treasury_tokens,
            instructions: solana_instructions_sysvar::ID,
            token_program: redeemer.token_program,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::PayToken {
            namespace_id,
            recover_info,
            amount,
        },
    )
}

/// The Ed25519 check followed by `pay_token`; `cluster` is the deployment's `Global::cluster`.
/// They must be the transaction's first two instructions: the check reads the signature from
/// `pay_token`'s data, at index 1, which keeps the transaction under the size limit.
pub fn pay_token_authorized(
    cluster: [u8; 32],
    redeemer: &TokenRedeemer,
    user: Pubkey,
    recover_info: RecoverInfo,
    amount: u64,
) -> [Instruction; 2] {
    let pay = pay_token(redeemer, user, recover_info, amount);
    [check(cluster, redeemer, user, &recover_info, &pay), pay]
}

/// The `lock_token` instruction alone; it must follow the Ed25519 check (see
/// [`lock_token_authorized`]).
pub fn lock_token(
    redeemer: &TokenRedeemer,
    user: Pubkey,
    recover_info: RecoverInfo,
    amount: u64,
) -> Instruction {
    let TokenRedeemer {
        bot,
        namespace_id,
        mint,
        ..
    } = *redeemer;
    build(
        accounts::LockToken {
            bot,
            namespace: pda::namespace(namespace_id),
            accepted_mint: pda::accepted_mint(namespace_id, &mint),
            global: pda::global(),
            user,
            user_account: pda::user_account(&user),
            token_balance: pda::token_balance(&user, &mint),
            vault: pda::token_vault(&user, &mint),
            mint,
            token_lock: pda::token_lock(&user, recover_info.nonce),
            instructions: solana_instructions_sysvar::ID,
            system_program: system_program::ID,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::LockToken {
            namespace_id,
            recover_info,
            amount,
        },
    )
}

/// The Ed25519 check followed by `lock_token`, as the transaction's first two instructions
/// (see [`pay_token_authorized`]).
pub fn lock_token_authorized(
    cluster: [u8; 32],
    redeemer: &TokenRedeemer,
    user: Pubkey,
    recover_info: RecoverInfo,
    amount: u64,
) -> [Instruction; 2] {
    let lock = lock_token(redeemer, user, recover_info, amount);
    [check(cluster, redeemer, user, &recover_info, &lock), lock]
}

/// The Ed25519 check of a token authorisation, reading the signature from `redeeming` (at
/// index 1).
fn check(
    cluster: [u8; 32],
    redeemer: &TokenRedeemer,
    user: Pubkey,
    info: &RecoverInfo,
    redeeming: &Instruction,
) -> Instruction {
    let asset = Asset::Token(redeemer.mint);
    let terms = authorization::terms_in(cluster, redeemer.namespace_id, user, asset, info);
    authorization::verify_instruction_in_redeemer(&terms, info, redeeming, 1)
        .unwrap_or_else(|| authorization::verify_instruction(&terms, info))
}

/// Settles `user`'s token lock number `nonce`: `amount` to the treasury's token account, the
/// rest back to the user, the lock's rent to `rent_payer` (the bot that locked).
pub fn settle_token(
    redeemer: &TokenRedeemer,
    user: Pubkey,
    nonce: u64,
    rent_payer: Pubkey,
    amount: u64,
) -> Instruction {
    let mint = redeemer.mint;
    build(
        accounts::SettleToken {
            bot: redeemer.bot,
            namespace: pda::namespace(redeemer.namespace_id),
            user,
            token_balance: pda::token_balance(&user, &mint),
            vault: pda::token_vault(&user, &mint),
            mint,
            token_lock: pda::token_lock(&user, nonce),
            treasury: redeemer.treasury_tokens,
            rent_payer,
            token_program: redeemer.token_program,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::SettleToken { amount },
    )
}

/// Releases `user`'s expired token lock number `nonce` of `mint`; signed by `user`.
pub fn release_token(user: Pubkey, mint: Pubkey, nonce: u64, rent_payer: Pubkey) -> Instruction {
    build(
        accounts::ReleaseToken {
            user,
            token_balance: pda::token_balance(&user, &mint),
            token_lock: pda::token_lock(&user, nonce),
            rent_payer,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::ReleaseToken {},
    )
}
