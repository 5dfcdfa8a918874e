//! One builder per instruction, every account filled in from [`super::pda`].
use super::{authorization, pda};
use crate::{accounts, instruction, CreateNamespaceArgs, RecoverInfo, UpdateNamespaceArgs};
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

/// Creates the deployment's `Global` account (once per deployment). `cluster` is the
/// cluster's genesis hash (`solana genesis-hash`, `getGenesisHash`): authorisations must name it.
pub fn initialize(payer: Pubkey, cluster: [u8; 32]) -> Instruction {
    build(
        accounts::Initialize {
            payer,
            global: pda::global(),
            system_program: system_program::ID,
        },
        instruction::Initialize { cluster },
    )
}

/// Creates namespace number `next_id`, which must be the counter's current value
/// (`Global::namespace_count`).
pub fn create_namespace(authority: Pubkey, next_id: u64, args: CreateNamespaceArgs) -> Instruction {
    build(
        accounts::CreateNamespace {
            authority,
            global: pda::global(),
            namespace: pda::namespace(next_id),
            system_program: system_program::ID,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::CreateNamespace { args },
    )
}

/// Changes namespace `namespace_id`; signed by its authority.
pub fn update_namespace(
    authority: Pubkey,
    namespace_id: u64,
    args: UpdateNamespaceArgs,
) -> Instruction {
    build(
        accounts::UpdateNamespace {
            authority,
            namespace: pda::namespace(namespace_id),
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::UpdateNamespace { args },
    )
}

/// Creates `user`'s account; signed by `user`.
pub fn register(user: Pubkey) -> Instruction {
    build(
        accounts::Register {
            user,
            user_account: pda::user_account(&user),
            vault: pda::vault(&user),
            system_program: system_program::ID,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::Register {},
    )
}

/// Moves `amount` lamports from `depositor` into `user`'s vault.
pub fn deposit(depositor: Pubkey, user: Pubkey, amount: u64) -> Instruction {
    build(
        accounts::Deposit {
            depositor,
            user,
            user_account: pda::user_account(&user),
            vault: pda::vault(&user),
            system_program: system_program::ID,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::Deposit { amount },
    )
}

/// Returns `amount` lamports from `user`'s vault to `user`; signed by `user`.
pub fn withdraw(user: Pubkey, amount: u64) -> Instruction {
    build(
        accounts::Withdraw {
            user,
            user_account: pda::user_account(&user),
            vault: pda::vault(&user),
            system_program: system_program::ID,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::Withdraw { amount },
    )
}

/// The `pay` instruction alone; it must follow [`authorization::verify_instruction`]
/// (see [`pay_authorized`]).
pub fn pay(
    bot: Pubkey,
    namespace_id: u64,
    treasury: Pubkey,
    user: Pubkey,
    recover_info: RecoverInfo,
    amount: u64,
) -> Instruction {
    build(
        accounts::Pay {
            bot,
            namespace: pda::namespace(namespace_id),
            global: pda::global(),
            user,
            user_account: pda::user_account(&user),
            vault: pda::vault(&user),
            treasury,
            instructions: solana_instructions_sysvar::ID,
            system_program: system_program::ID,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::Pay {
            namespace_id,
            recover_info,
            amount,
        },
    )
}

/// The Ed25519 check followed by `pay`: what a controller sends to redeem an authorisation.
/// `cluster` is the deployment's `Global::cluster`; `amount` must equal the signed amount.
pub fn pay_authorized(
    cluster: [u8; 32],
    bot: Pubkey,
    namespace_id: u64,
    treasury: Pubkey,
    user: Pubkey,
    recover_info: RecoverInfo,
    amount: u64,
) -> [Instruction; 2] {
    let terms = authorization::terms_of(cluster, namespace_id, user, &recover_info);
    [
        authorization::verify_instruction(&terms, &recover_info),
        pay(bot, namespace_id, treasury, user, recover_info, amount),
    ]
}

/// The `lock` instruction alone; it must follow [`authorization::verify_instruction`]
/// (see [`lock_authorized`]).
pub fn lock(
    bot: Pubkey,
    namespace_id: u64,
    user: Pubkey,
    recover_info: RecoverInfo,
    amount: u64,
) -> Instruction {
    build(
        accounts::LockFunds {
            bot,
            namespace: pda::namespace(namespace_id),
            global: pda::global(),
            user,
            user_account: pda::user_account(&user),
            vault: pda::vault(&user),
            lock: pda::lock(&user, recover_info.nonce),
            instructions: solana_instructions_sysvar::ID,
            system_program: system_program::ID,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::Lock {
            namespace_id,
            recover_info,
            amount,
        },
    )
}

/// The Ed25519 check followed by `lock`; `cluster` is the deployment's `Global::cluster`.
pub fn lock_authorized(
    cluster: [u8; 32],
    bot: Pubkey,
    namespace_id: u64,
    user: Pubkey,
    recover_info: RecoverInfo,
    amount: u64,
) -> [Instruction; 2] {
    let terms = authorization::terms_of(cluster, namespace_id, user, &recover_info);
    [
        authorization::verify_instruction(&terms, &recover_info),
        lock(bot, namespace_id, user, recover_info, amount),
    ]
}

/// Settles `user`'s lock number `nonce`: `amount` to the treasury, the rest back to the user,
/// the lock's rent to `rent_payer` (the bot that locked).
pub fn settle(
    bot: Pubkey,
    namespace_id: u64,
    treasury: Pubkey,
    user: Pubkey,
    nonce: u64,
    rent_payer: Pubkey,
    amount: u64,
) -> Instruction {
    build(
        accounts::Settle {
            bot,
            namespace: pda::namespace(namespace_id),
            user,
            user_account: pda::user_account(&user),
            vault: pda::vault(&user),
            lock: pda::lock(&user, nonce),
            treasury,
            rent_payer,
            system_program: system_program::ID,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::Settle { amount },
    )
}

/// Releases `user`'s expired lock number `nonce`; signed by `user`.
pub fn release(user: Pubkey, nonce: u64, rent_payer: Pubkey) -> Instruction {
    build(
        accounts::Release {
            user,
            user_account: pda::user_account(&user),
            lock: pda::lock(&user, nonce),
            rent_payer,
            event_authority: pda::event_authority(),
            program: crate::ID,
        },
        instruction::Release {},
    )
}
