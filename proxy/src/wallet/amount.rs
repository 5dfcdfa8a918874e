//! Amounts as a person types and reads them (`0.5` SOL, `2.25` USDC), converted to and from
//! base units exactly: no floating point anywhere.

/// An amount as typed: digits with at most one decimal point. Its base units depend on the
/// asset (9 decimals for SOL, the mint's for a token), so it is converted once those are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    text: String,
    whole: String,
    fraction: String,
}

impl Decimal {
    /// The amount in base units of an asset with `decimals` decimals; refuses zero, more
    /// decimals than the asset has, and more than a `u64` holds.
    pub fn units(&self, decimals: u8) -> Result<u64, String> {
        let text = &self.text;
        if self.fraction.len() > usize::from(decimals) {
            return Err(format!(
                "{text:?} has more than {decimals} decimals (the smallest unit is {})",
                show(1, decimals)
            ));
        }
        let scale = 10u128.pow(u32::from(decimals));
        let whole: u128 = match self.whole.as_str() {
            "" => 0,
            digits => digits
                .parse()
                .map_err(|_| format!("{text:?} is too large"))?,
        };
        let padded = format!("{:0<width$}", self.fraction, width = usize::from(decimals));
        let fraction: u128 = match padded.as_str() {
            "" => 0,
            digits => digits
                .parse()
                .map_err(|_| format!("{text:?} is too large"))?,
        };
        let units = whole
            .checked_mul(scale)
            .and_then(|units| units.checked_add(fraction))
            .and_then(|units| u64::try_from(units).ok())
            .ok_or_else(|| format!("{text:?} is too large"))?;
        match units {
            0 => Err("the amount must be more than 0".into()),
            units => Ok(units),
        }
    }
}

/// `2.5`, `10`, `.5` → a [`Decimal`]; anything else is refused with the text quoted.
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let refuse = || format!("{text:?} is not an amount (e.g. 0.25)");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return Err(refuse());
    }
    Ok(Decimal {
        text: text.to_owned(),
        whole: whole.to_owned(),
        fraction: fraction.to_owned(),
    })
}

/// SOL has 9 decimals: 1 lamport = 0.000000001 SOL.
pub const SOL_DECIMALS: u8 = 9;

/// `units` of an asset with `decimals` decimals as a person reads it: `2500000`, 6 → `2.5`.
pub fn show(units: u64, decimals: u8) -> String {
    let scale = 10u128.pow(u32::from(decimals));
    let (whole, fraction) = (u128::from(units) / scale, u128::from(units) % scale);
    let fraction = format!("{fraction:0width$}", width = usize::from(decimals));
    let fraction = fraction.trim_end_matches('0');
    match fraction.is_empty() {
        true => format!("{whole}"),
        false => format!("{whole}.{fraction}"),
    }
}

/// Lamports as SOL, exactly: `10000000` → `0.01`.
pub fn sol(lamports: u64) -> String {
    show(lamports, SOL_DECIMALS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `0.5` SOL → lamports, exactly.
    fn parse_sol(text: &str) -> Result<u64, String> {
        parse_decimal(text)?.units(SOL_DECIMALS)
    }

    #[test]
    fn sol_amounts_convert_exactly_both_ways() {
        assert_eq!(parse_sol("0.01"), Ok(10_000_000));
        assert_eq!(parse_sol("1"), Ok(1_000_000_000));
        assert_eq!(parse_sol("0.000000001"), Ok(1));
        assert!(parse_sol("0").is_err());
        assert!(parse_sol("-1").is_err());
        assert!(parse_sol("abc").is_err());
        assert!(parse_sol("0.0000000015").is_err());
        assert_eq!(sol(10_000_000), "0.01");
        assert_eq!(sol(1_500_000_000), "1.5");
        assert_eq!(sol(0), "0");
    }

    #[test]
    fn token_amounts_follow_the_mints_decimals() {
        let usdc = |text: &str| parse_decimal(text).and_then(|amount| amount.units(6));
        assert_eq!(usdc("2.5"), Ok(2_500_000));
        assert_eq!(usdc(".5"), Ok(500_000));
        assert_eq!(usdc("7."), Ok(7_000_000));
        assert_eq!(usdc("0.000001"), Ok(1));
        assert!(usdc("0.0000001")
            .unwrap_err()
            .contains("more than 6 decimals"));
        assert!(usdc("18446744073709.551616")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(usdc("18446744073709.551615"), Ok(u64::MAX));
        assert!(usdc("0.000").is_err());
        assert!(usdc(".").is_err());
        assert!(usdc("1.2.3").is_err());
        assert!(usdc("1e6").is_err());
        assert_eq!(
            parse_decimal("12").and_then(|amount| amount.units(0)),
            Ok(12)
        );
        assert_eq!(show(2_500_000, 6), "2.5");
        assert_eq!(show(7, 0), "7");
        assert_eq!(show(u64::MAX, 6), "18446744073709.551615");
    }
}
