//! A program refusal in words: the operator and wallet commands, and the controller's `Status`
//! replies, name the program's error rather than print `custom program error: 0x1770`.
use balance_payment::errors::BalancePaymentError as E;

/// Every program error, in code order (6000 on): the IDL test below keeps it complete.
const PROGRAM_ERRORS: [E; 28] = [
    E::NameTooLong,
    E::ZeroAmount,
    E::AmountExceedsSignedMax,
    E::AuthorizationExpired,
    E::NonceMismatch,
    E::MissingSignatureVerification,
    E::MalformedSignatureVerification,
    E::SignerMismatch,
    E::SignatureMismatch,
    E::SignedMessageMismatch,
    E::NonCanonicalSignature,
    E::UnauthorizedBot,
    E::UnauthorizedAuthority,
    E::UnauthorizedUser,
    E::WrongTreasury,
    E::NamespaceMismatch,
    E::InsufficientFunds,
    E::FundsLocked,
    E::VaultBelowRentExempt,
    E::SettleExceedsLock,
    E::LockExpired,
    E::LockNotExpired,
    E::ArithmeticOverflow,
    E::AmountNotSigned,
    E::MintHasTransferFee,
    E::MintHasTransferHook,
    E::MintHasPermanentDelegate,
    E::WrongMint,
];

/// The program error with this custom code, if it is one of ours.
pub fn program_error(code: u32) -> Option<E> {
    PROGRAM_ERRORS.into_iter().find(|e| u32::from(*e) == code)
}

/// "refused by the program: `Name`: message", or Anchor's account checks by name, or the
/// chain's own words.
pub fn refusal(code: Option<u32>, message: &str) -> String {
    let anchor = |code| match code {
        2006 => Some("ConstraintSeeds: an account is not at the address its seeds give"),
        2012 => Some("ConstraintAddress: an account is not the expected one"),
        3002 => Some("AccountDiscriminatorMismatch: an account is of another type"),
        3012 => Some("AccountNotInitialized: an account the instruction needs does not exist"),
        _ => None,
    };
    match code {
        Some(code) => match program_error(code) {
            Some(error) => format!("refused by the program: {error:?}: {error}"),
            None => match anchor(code) {
                Some(text) => format!("refused by the program: {text}"),
                None => format!("refused by the chain: {message}"),
            },
        },
        None => format!("refused by the chain: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_error_of_the_idl_is_named_in_code_order() {
        let idl: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../programs/balance-payment/idl/balance_payment.json"
        ))
        .unwrap();
        let errors = idl["errors"].as_array().unwrap();
        assert_eq!(errors.len(), PROGRAM_ERRORS.len());
        for (error, ours) in errors.iter().zip(PROGRAM_ERRORS) {
            assert_eq!(error["code"].as_u64().unwrap(), u64::from(u32::from(ours)));
            assert_eq!(error["name"].as_str().unwrap(), format!("{ours:?}"));
        }
    }

    #[test]
    fn a_refusal_names_the_error() {
        assert_eq!(
            refusal(Some(6003), "custom program error: 0x1773"),
            "refused by the program: AuthorizationExpired: The authorisation's deadline has passed"
        );
        assert!(refusal(Some(3012), "x").contains("AccountNotInitialized"));
        assert_eq!(
            refusal(None, "blockhash not found"),
            "refused by the chain: blockhash not found"
        );
    }
}
