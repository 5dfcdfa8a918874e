//! Every PDA seed prefix in one place, so the program, the SDK and the IDL agree.

/// Program-wide singleton that numbers namespaces.
pub const GLOBAL_SEED: &[u8] = b"GLOBAL";
/// One operator: `["NAMESPACE", id LE]`.
pub const NAMESPACE_SEED: &[u8] = b"NAMESPACE";
/// A user's nonce and locked total: `["USER", user]`.
pub const USER_SEED: &[u8] = b"USER";
/// The system-owned account holding a user's SOL: `["VAULT", user]`.
pub const VAULT_SEED: &[u8] = b"VAULT";
/// One hold on a user's funds: `["LOCK", user, nonce LE]`.
pub const LOCK_SEED: &[u8] = b"LOCK";
/// A mint a namespace accepts payment in: `["ACCEPTED_MINT", namespace id LE, mint]`.
pub const ACCEPTED_MINT_SEED: &[u8] = b"ACCEPTED_MINT";
/// A user's locked total in one mint, and the authority of that mint's vault:
/// `["TOKEN_BALANCE", user, mint]`.
pub const TOKEN_BALANCE_SEED: &[u8] = b"TOKEN_BALANCE";
/// The token account holding a user's tokens of one mint: `["TOKEN_VAULT", user, mint]`.
pub const TOKEN_VAULT_SEED: &[u8] = b"TOKEN_VAULT";
/// One hold on a user's tokens: `["TOKEN_LOCK", user, nonce LE]`.
pub const TOKEN_LOCK_SEED: &[u8] = b"TOKEN_LOCK";
