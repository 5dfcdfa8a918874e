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
