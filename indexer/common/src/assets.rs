//! The SPL tokens an operator takes beside SOL, and what each buys: one rate per asset, fixed
//! by the operator, turns a payment into ledger tokens. The ledger keeps one balance per wallet
//! in ledger tokens (so a hold stays one conditional update of one row, whatever paid for it);
//! what each asset paid in is kept per payment, and prices are quoted in every asset by the
//! same rates. The indexer (what a payment is worth) and the gateway (what it publishes) read
//! the same section, so they cannot disagree.
use crate::config::ConfigError;
use serde::{Deserialize, Serialize};
use solana_sdk::pubkey::Pubkey;

/// One accepted token, as configured (`[[tokens]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAsset {
    /// The mint (base58); the namespace must accept it on chain too (`accept_mint`).
    pub mint: String,
    /// What people call it ("USDC"); shown, never trusted.
    pub symbol: String,
    /// The mint's decimals (USDC: 6).
    pub decimals: u8,
    /// Ledger tokens one whole token buys (one USDC = `10^decimals` base units).
    pub tokens_per_unit: u64,
    /// The program that owns the mint: SPL Token (default) or Token-2022.
    #[serde(default = "spl_token_program")]
    pub token_program: String,
}

/// The classic SPL Token program, which USDC's mint belongs to: the default.
pub fn spl_token_program() -> String {
    balance_payment::sdk::spl::TOKEN_PROGRAM_ID.to_string()
}

/// A [`TokenAsset`] checked and parsed once: what the controller and the chain watcher use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRate {
    pub mint: Pubkey,
    pub decimals: u8,
    pub tokens_per_unit: u64,
    pub token_program: Pubkey,
}

impl TokenRate {
    /// Ledger tokens for `amount` base units, rounded down; `None` when it overflows.
    pub fn tokens_for(&self, amount: u64) -> Option<i64> {
        ledger::tokens_for_units(amount, self.tokens_per_unit, self.decimals)
    }
}

/// The highest rate at which any amount (up to `u64::MAX` base units) is still worth an `i64`
/// of ledger tokens, so no payment can overflow the ledger: half a ledger token per base unit.
pub fn max_tokens_per_unit(decimals: u8) -> u64 {
    10u64.saturating_pow(u32::from(decimals)) / 2
}

/// Checks the section (`field` names it in errors) and parses it: distinct mints and programs
/// that are addresses, decimals a mint can have, and a rate no payment overflows.
pub fn parse_tokens(field: &str, tokens: &[TokenAsset]) -> Result<Vec<TokenRate>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid(format!("{field}: {message}"));
    let mut rates: Vec<TokenRate> = Vec::with_capacity(tokens.len());
    for token in tokens {
        let address = |value: &str, what: &str| {
            value
                .parse::<Pubkey>()
                .map_err(|_| invalid(format!("{what} is not a Solana address: {value}")))
        };
        let mint = address(&token.mint, "mint")?;
        let token_program = address(&token.token_program, "token_program")?;
        if token.decimals > 18 {
            return Err(invalid(format!(
                "{} decimals for {}: a mint has at most 18",
                token.decimals, token.symbol
            )));
        }
        let max = max_tokens_per_unit(token.decimals);
        if !(1..=max).contains(&token.tokens_per_unit) {
            return Err(invalid(format!(
                "tokens_per_unit of {} must be between 1 and {max} (half a ledger token per \
                 base unit, so no payment overflows the ledger)",
                token.symbol
            )));
        }
        if rates.iter().any(|rate| rate.mint == mint) {
            return Err(invalid(format!("{} is listed twice", token.mint)));
        }
        rates.push(TokenRate {
            mint,
            decimals: token.decimals,
            tokens_per_unit: token.tokens_per_unit,
            token_program,
        });
    }
    Ok(rates)
}

/// What `credits` ledger tokens cost in base units of an asset with `decimals` decimals at
/// `tokens_per_unit`, rounded up: a price quoted in the asset never undercharges.
pub fn price_in_units(credits: u64, tokens_per_unit: u64, decimals: u8) -> u64 {
    let units = 10u128
        .checked_pow(u32::from(decimals))
        .and_then(|scale| u128::from(credits).checked_mul(scale))
        .map(|scaled| scaled.div_ceil(u128::from(tokens_per_unit.max(1))));
    units
        .and_then(|units| u64::try_from(units).ok())
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usdc(tokens_per_unit: u64) -> TokenAsset {
        TokenAsset {
            mint: Pubkey::new_unique().to_string(),
            symbol: "USDC".into(),
            decimals: 6,
            tokens_per_unit,
            token_program: spl_token_program(),
        }
    }

    #[test]
    fn a_rate_is_whole_tokens_and_never_overflows_at_its_maximum() {
        let rates = parse_tokens("tokens", &[usdc(10_000)]).unwrap();
        // 2.5 USDC at 10,000 per USDC; 1 base unit is worth a hundredth: rounded down.
        assert_eq!(rates[0].tokens_for(2_500_000), Some(25_000));
        assert_eq!(rates[0].tokens_for(99), Some(0));
        let max = parse_tokens("tokens", &[usdc(max_tokens_per_unit(6))]).unwrap();
        assert_eq!(max[0].tokens_for(u64::MAX), Some(i64::MAX));
    }

    #[test]
    fn bad_sections_are_refused_with_what_is_wrong() {
        let refused = |tokens: &[TokenAsset]| match parse_tokens("tokens", tokens) {
            Err(ConfigError::Invalid(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(refused(&[usdc(0)]).contains("between 1 and 500000"));
        assert!(refused(&[usdc(500_001)]).contains("between 1 and 500000"));
        let mut bad_mint = usdc(1);
        bad_mint.mint = "not-a-mint".into();
        assert!(refused(&[bad_mint]).contains("mint is not a Solana address"));
        let twice = usdc(1);
        assert!(refused(&[twice.clone(), twice]).contains("listed twice"));
        let mut many_decimals = usdc(1);
        many_decimals.decimals = 19;
        assert!(refused(&[many_decimals]).contains("at most 18"));
    }

    #[test]
    fn a_price_in_an_asset_rounds_up() {
        // 15 ledger tokens at 10,000 per USDC: 1,500 base units exactly.
        assert_eq!(price_in_units(15, 10_000, 6), 1_500);
        // 1 ledger token at 3 per unit of a 0-decimal token: a whole unit, not a third.
        assert_eq!(price_in_units(1, 3, 0), 1);
        assert_eq!(price_in_units(0, 3, 0), 0);
    }
}
