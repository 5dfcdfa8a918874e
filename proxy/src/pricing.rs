//! What a call costs in ledger tokens, and the kind-30078 catalog that publishes the prices.
//!
//! Prices are integers per million LLM tokens; costs are computed in u128 and rounded up, so
//! nothing overflows, no float is involved, and a call is never cheaper than its price. The
//! same prices are quoted in every asset people pay with (SOL, each accepted token), at the
//! operator's rates, rounded up.
use crate::config::{CashuConfig, ModelConfig};
use common::{
    assets::{price_in_units, TokenAsset},
    wire::KIND_CATALOG,
};
use nostr_sdk::prelude::{Event, EventBuilder, Keys, Kind, Tag};
use serde::Serialize;

/// Ledger tokens per million prompt and completion tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Price {
    pub prompt: u64,
    pub completion: u64,
}

const PER: u128 = 1_000_000;

impl Price {
    /// The cost of `prompt` + `completion` tokens, rounded up. Beyond i64 (only for absurd
    /// inputs) it is i64::MAX, which no balance covers.
    pub fn cost(&self, prompt: u64, completion: u64) -> i64 {
        let micro = u128::from(prompt) * u128::from(self.prompt)
            + u128::from(completion) * u128::from(self.completion);
        i64::try_from(micro.div_ceil(PER)).unwrap_or(i64::MAX)
    }

    /// The most completion tokens that `available` pays for after `prompt` tokens.
    pub fn affordable_completion(&self, available: i64, prompt: u64) -> u64 {
        let budget = u128::try_from(available.max(0)).unwrap_or(0) * PER;
        let prompt_cost = u128::from(prompt) * u128::from(self.prompt);
        let Some(left) = budget.checked_sub(prompt_cost) else {
            return 0;
        };
        match self.completion {
            0 => u64::MAX,
            price => u64::try_from(left / u128::from(price)).unwrap_or(u64::MAX),
        }
    }
}

#[derive(Serialize)]
struct CatalogModel<'a> {
    id: &'a str,
    prompt_price: u64,
    completion_price: u64,
    max_output_tokens: u64,
}

/// A model's price in ecash: millisats per million prompt and completion tokens, rounded up.
#[derive(Serialize)]
struct SatPrice<'a> {
    id: &'a str,
    prompt_msat: u64,
    completion_msat: u64,
}

/// A price in one asset: base units (lamports, a token's smallest unit) per 1,000,000 prompt
/// and completion tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetPrice<'a> {
    /// `SOL`, or the token's mint.
    pub asset: &'a str,
    pub symbol: &'a str,
    pub decimals: u8,
    pub prompt: u64,
    pub completion: u64,
}

/// `price` in SOL and in each of `tokens`, rounded up.
pub fn asset_prices<'a>(
    price: Price,
    tokens_per_sol: u64,
    tokens: &'a [TokenAsset],
) -> Vec<AssetPrice<'a>> {
    let sol = AssetPrice {
        asset: "SOL",
        symbol: "SOL",
        decimals: 9,
        prompt: price_in_units(price.prompt, tokens_per_sol, 9),
        completion: price_in_units(price.completion, tokens_per_sol, 9),
    };
    let in_tokens = tokens.iter().map(|token| AssetPrice {
        asset: &token.mint,
        symbol: &token.symbol,
        decimals: token.decimals,
        prompt: price_in_units(price.prompt, token.tokens_per_unit, token.decimals),
        completion: price_in_units(price.completion, token.tokens_per_unit, token.decimals),
    });
    std::iter::once(sol).chain(in_tokens).collect()
}

/// Millisats for `tokens` ledger tokens at `tokens_per_sat`, rounded up.
pub fn msat(tokens: u64, tokens_per_sat: u64) -> u64 {
    let msat = (u128::from(tokens) * 1000).div_ceil(u128::from(tokens_per_sat.max(1)));
    u64::try_from(msat).unwrap_or(u64::MAX)
}

/// The catalog's content: models, prices and the lamports→tokens ratio (CypherFlow's idea),
/// and, when the gateway takes ecash, the same prices in sats beside it.
pub fn catalog_content(
    models: &[ModelConfig],
    tokens_per_sol: u64,
    cashu: &CashuConfig,
    tokens: &[TokenAsset],
) -> serde_json::Value {
    let models: Vec<CatalogModel> = models
        .iter()
        .map(|m| CatalogModel {
            id: &m.id,
            prompt_price: m.prompt_price,
            completion_price: m.completion_price,
            max_output_tokens: m.max_output_tokens,
        })
        .collect();
    let mut content = serde_json::json!({
        "price_unit": "ledger tokens per 1,000,000 model tokens",
        "tokens_per_sol": tokens_per_sol,
        "models": models,
    });
    if !tokens.is_empty() {
        let priced: Vec<serde_json::Value> = tokens
            .iter()
            .map(|token| {
                let models: Vec<serde_json::Value> = models
                    .iter()
                    .map(|m| {
                        let units =
                            |price| price_in_units(price, token.tokens_per_unit, token.decimals);
                        serde_json::json!({
                            "id": m.id,
                            "prompt_price": units(m.prompt_price),
                            "completion_price": units(m.completion_price),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "mint": token.mint,
                    "symbol": token.symbol,
                    "decimals": token.decimals,
                    "tokens_per_unit": token.tokens_per_unit,
                    "price_unit": "base units per 1,000,000 model tokens",
                    "models": models,
                })
            })
            .collect();
        content["tokens"] = serde_json::Value::Array(priced);
    }
    if !cashu.mints.is_empty() {
        let prices: Vec<SatPrice> = models
            .iter()
            .map(|m| SatPrice {
                id: m.id,
                prompt_msat: msat(m.prompt_price, cashu.tokens_per_sat),
                completion_msat: msat(m.completion_price, cashu.tokens_per_sat),
            })
            .collect();
        content["cashu"] = serde_json::json!({
            "unit": "sat",
            "price_unit": "millisats per 1,000,000 model tokens",
            "tokens_per_sat": cashu.tokens_per_sat,
            "mints": cashu.mints,
            "models": prices,
        });
    }
    content
}

/// The signed kind-30078 catalog event, `d` = `name`.
pub fn catalog_event(
    keys: &Keys,
    name: &str,
    content: &serde_json::Value,
) -> Result<Event, nostr_sdk::event::builder::Error> {
    EventBuilder::new(Kind::Custom(KIND_CATALOG), content.to_string())
        .tags([Tag::identifier(name)])
        .sign_with_keys(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_round_up_and_never_overflow() {
        let price = Price {
            prompt: 150_000,
            completion: 600_000,
        };
        assert_eq!(price.cost(0, 0), 0);
        assert_eq!(price.cost(1, 0), 1); // 0.15 rounds up
        assert_eq!(price.cost(1_000, 1_000), 750);
        assert_eq!(price.cost(u64::MAX, u64::MAX), i64::MAX);
    }

    #[test]
    fn the_catalog_prices_models_in_sats_beside_the_lamport_rate() {
        let model = ModelConfig {
            id: "m".into(),
            prompt_price: 1_500,
            completion_price: 2_000,
            max_output_tokens: 8,
            upstreams: vec![],
        };
        let mut cashu = CashuConfig::default();
        let plain = catalog_content(std::slice::from_ref(&model), 7, &cashu, &[]);
        assert!(plain.get("cashu").is_none());
        cashu.mints = vec!["http://127.0.0.1:3338".into()];
        cashu.tokens_per_sat = 1_000;
        let content = catalog_content(&[model], 7, &cashu, &[]);
        assert_eq!(content["tokens_per_sol"], 7);
        assert_eq!(content["cashu"]["tokens_per_sat"], 1_000);
        assert_eq!(content["cashu"]["models"][0]["prompt_msat"], 1_500);
        assert_eq!(content["cashu"]["models"][0]["completion_msat"], 2_000);
        assert_eq!(msat(1, 3), 334, "rounded up, never cheaper than the price");
    }

    #[test]
    fn affordable_completion_is_the_largest_that_fits() {
        let price = Price {
            prompt: 1_000_000,
            completion: 2_000_000,
        };
        let tokens = price.affordable_completion(100, 10);
        assert_eq!(tokens, 45);
        assert!(price.cost(10, tokens) <= 100 && price.cost(10, tokens + 1) > 100);
        assert_eq!(price.affordable_completion(5, 10), 0);
        assert_eq!(price.affordable_completion(-3, 0), 0);
    }

    fn usdc() -> TokenAsset {
        TokenAsset {
            mint: "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v".into(),
            symbol: "USDC".into(),
            decimals: 6,
            tokens_per_unit: 10_000,
            token_program: common::assets::spl_token_program(),
        }
    }

    #[test]
    fn prices_are_quoted_in_sol_and_in_each_token_rounded_up() {
        let price = Price {
            prompt: 1_500,
            completion: 3,
        };
        let tokens = [usdc()];
        let prices = asset_prices(price, 1_000_000, &tokens);
        // 1,500 ledger tokens at 1,000,000 per SOL: 1,500,000 lamports; at 10,000 per USDC:
        // 150,000 base units (0.15 USDC). 3 ledger tokens: 300 base units.
        assert_eq!(
            prices,
            vec![
                AssetPrice {
                    asset: "SOL",
                    symbol: "SOL",
                    decimals: 9,
                    prompt: 1_500_000,
                    completion: 3_000,
                },
                AssetPrice {
                    asset: &tokens[0].mint,
                    symbol: "USDC",
                    decimals: 6,
                    prompt: 150_000,
                    completion: 300,
                },
            ]
        );
        // A rate that does not divide evenly rounds the asset's price up, never down.
        let odd = asset_prices(price, 7, &[]);
        assert_eq!(odd[0].completion, 428_571_429);
    }

    #[test]
    fn the_catalog_lists_each_accepted_token_with_its_prices() {
        let model = ModelConfig {
            id: "m".into(),
            prompt_price: 1_500,
            completion_price: 2_000,
            max_output_tokens: 8,
            upstreams: vec![],
        };
        let content = catalog_content(&[model], 7, &CashuConfig::default(), &[usdc()]);
        let usdc = &content["tokens"][0];
        assert_eq!(usdc["symbol"], "USDC");
        assert_eq!(usdc["tokens_per_unit"], 10_000);
        assert_eq!(usdc["models"][0]["prompt_price"], 150_000);
        assert_eq!(usdc["models"][0]["completion_price"], 200_000);
    }
}
