//! Every way the program refuses, each with its own code so clients can tell them apart.
use anchor_lang::prelude::*;

#[error_code]
pub enum BalancePaymentError {
    #[msg("Namespace name is longer than 50 bytes")]
    NameTooLong,
    #[msg("Amount must be greater than zero")]
    ZeroAmount,
    #[msg("Amount is above the maximum the user signed")]
    AmountExceedsSignedMax,
    #[msg("The authorisation's deadline has passed")]
    AuthorizationExpired,
    #[msg("The authorisation is for another nonce (already used, or not yet current)")]
    NonceMismatch,
    #[msg("The instruction before this one must be an Ed25519 signature check")]
    MissingSignatureVerification,
    #[msg("The Ed25519 instruction must verify exactly one signature over its own data")]
    MalformedSignatureVerification,
    #[msg("The signature was not made by the user's wallet")]
    SignerMismatch,
    #[msg("The verified signature is not the one in the authorisation")]
    SignatureMismatch,
    #[msg("The signed message does not match this program, cluster, namespace, user, nonce, maximum, deadline and extra data")]
    SignedMessageMismatch,
    #[msg("The signature is not in canonical form")]
    NonCanonicalSignature,
    #[msg("Signer is not the namespace's bot")]
    UnauthorizedBot,
    #[msg("Signer is not the namespace's authority")]
    UnauthorizedAuthority,
    #[msg("Signer is not the owner of this user account")]
    UnauthorizedUser,
    #[msg("Treasury account is not the namespace's treasury")]
    WrongTreasury,
    #[msg("The lock belongs to another namespace")]
    NamespaceMismatch,
    #[msg("The vault does not hold enough free funds")]
    InsufficientFunds,
    #[msg("Those funds are locked")]
    FundsLocked,
    #[msg("The vault would be left below the rent-exempt minimum without being emptied")]
    VaultBelowRentExempt,
    #[msg("Settle amount is above the locked amount")]
    SettleExceedsLock,
    #[msg("The lock has expired: it can only be released")]
    LockExpired,
    #[msg("The lock has not expired yet")]
    LockNotExpired,
    #[msg("Arithmetic overflow")]
    ArithmeticOverflow,
    #[msg("Pay must redeem exactly the amount the user signed")]
    AmountNotSigned,
    #[msg("Token-2022 mints with a transfer fee are not accepted: the vault would hold less than was paid in")]
    MintHasTransferFee,
    #[msg("Token-2022 mints with a transfer hook are not accepted: the hook's program could block or change every transfer")]
    MintHasTransferHook,
    #[msg("Token-2022 mints with a permanent delegate are not accepted: the delegate could empty the vault")]
    MintHasPermanentDelegate,
    #[msg("The token account is for another mint")]
    WrongMint,
}
