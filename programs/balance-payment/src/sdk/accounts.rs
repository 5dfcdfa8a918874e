//! Decoding the program's accounts from raw account data (what `getAccountInfo` returns), so
//! services read them without depending on Anchor themselves.
use anchor_lang::AccountDeserialize;

/// The account of type `T` in `data`, or `None` when the data is not one (wrong
/// discriminator, short or malformed body).
pub fn decode<T: AccountDeserialize>(data: &[u8]) -> Option<T> {
    T::try_deserialize(&mut &data[..]).ok()
}
