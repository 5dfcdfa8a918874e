//! What anyone needs to check a gateway's books from public data: the rates it announced, over
//! time, which turn a payment into ledger tokens. Published at `/.well-known/llm-gateway` and
//! in the signed catalog; `indexer verify` checks every credit against them.
use serde::{Deserialize, Serialize};

/// The rates of one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    /// Ledger tokens one SOL buys.
    pub tokens_per_sol: u64,
    /// Ledger tokens one sat of ecash buys, when the gateway takes ecash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_sat: Option<u64>,
    /// The SPL tokens taken, each with what one whole token buys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenRateInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRateInfo {
    pub mint: String,
    pub decimals: u8,
    pub tokens_per_unit: u64,
}

/// Rates from `since` (unix seconds) until the next period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatePeriod {
    pub since: i64,
    #[serde(flatten)]
    pub rates: Rates,
}

impl Rates {
    /// Ledger tokens `amount` of `mint` (lamports when `None`) is worth, as the controller and
    /// the gateway compute it; `None` for a mint these rates do not take, or an overflow.
    pub fn worth(&self, mint: Option<&str>, amount: u64) -> Option<i64> {
        match mint {
            None => ledger::tokens_for_lamports(amount, self.tokens_per_sol),
            Some(mint) => {
                let token = self.tokens.iter().find(|token| token.mint == mint)?;
                ledger::tokens_for_units(amount, token.tokens_per_unit, token.decimals)
            }
        }
    }
}

/// The rates in force at `at`: the last period that started by then (the first, for anything
/// older than every period).
pub fn rates_at(periods: &[RatePeriod], at: i64) -> Option<&Rates> {
    periods
        .iter()
        .rev()
        .find(|period| period.since <= at)
        .or(periods.first())
        .map(|period| &period.rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_of_a_moment_is_the_last_period_started_by_then() {
        let period = |since, tokens_per_sol| RatePeriod {
            since,
            rates: Rates {
                tokens_per_sol,
                tokens_per_sat: None,
                tokens: vec![],
            },
        };
        let periods = [period(100, 1), period(200, 2)];
        let at = |t| rates_at(&periods, t).map(|r| r.tokens_per_sol);
        assert_eq!(at(50), Some(1));
        assert_eq!(at(150), Some(1));
        assert_eq!(at(200), Some(2));
        assert_eq!(at(10_000), Some(2));
        assert_eq!(rates_at(&[], 5), None);
    }
}
