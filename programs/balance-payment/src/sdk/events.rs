//! Decoding the program's events from the data of its `emit_cpi!` self-invocations.
//!
//! Such an inner instruction's data is: the 8-byte event-CPI tag, the event's 8-byte
//! discriminator, then the event's borsh body. That is all an indexer needs from a
//! transaction's `innerInstructions` (RPC) or a simulation's inner instructions (tests).
use crate::events::*;
use anchor_lang::{event::EVENT_IX_TAG_LE, AnchorDeserialize, Discriminator};

/// Any event the program emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramEvent {
    NamespaceCreated(NamespaceCreated),
    NamespaceUpdated(NamespaceUpdated),
    UserRegistered(UserRegistered),
    Deposited(Deposited),
    Withdrawn(Withdrawn),
    Paid(Paid),
    Locked(Locked),
    Settled(Settled),
    Released(Released),
    MintAccepted(MintAccepted),
    MintDelisted(MintDelisted),
    TokenVaultOpened(TokenVaultOpened),
    TokenDeposited(TokenDeposited),
    TokenWithdrawn(TokenWithdrawn),
    TokenPaid(TokenPaid),
    TokenLocked(TokenLocked),
    TokenSettled(TokenSettled),
    TokenReleased(TokenReleased),
}

/// The event in an inner instruction's data, or `None` when the data is not one of this
/// program's events (another instruction, or a malformed body).
pub fn decode_event(data: &[u8]) -> Option<ProgramEvent> {
    decode_logged_event(data.strip_prefix(EVENT_IX_TAG_LE)?)
}

/// The event in a `Program data:` log line's bytes (what `emit!` logs): the discriminator and
/// body, without the event-CPI tag.
pub fn decode_logged_event(data: &[u8]) -> Option<ProgramEvent> {
    let (discriminator, mut body) = (data.get(..8)?, data.get(8..)?);
    macro_rules! try_decode {
        ($($event:ident),*) => {
            $(if discriminator == $event::DISCRIMINATOR {
                return $event::deserialize(&mut body).ok().map(ProgramEvent::$event);
            })*
        };
    }
    try_decode!(
        NamespaceCreated,
        NamespaceUpdated,
        UserRegistered,
        Deposited,
        Withdrawn,
        Paid,
        Locked,
        Settled,
        Released,
        MintAccepted,
        MintDelisted,
        TokenVaultOpened,
        TokenDeposited,
        TokenWithdrawn,
        TokenPaid,
        TokenLocked,
        TokenSettled,
        TokenReleased
    );
    None
}
