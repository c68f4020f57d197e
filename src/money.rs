//! Money: an exact decimal with at most two fraction digits. It is parsed
//! from text only, never rounded, and printed with exactly two digits.

use std::fmt;
use std::str::FromStr;

use bigdecimal::BigDecimal;

/// Digits before the point that `DECIMAL(15,2)` can hold.
const MAX_INTEGER_DIGITS: usize = 13;
const SCALE: i64 = 2;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(BigDecimal);

impl Money {
    /// Parses `123`, `123.4` or `123.45` (optionally negative). Exponents,
    /// signs other than a leading `-`, spaces, `NaN`, a third fraction digit
    /// and more than 13 integer digits are refused rather than rounded.
    pub fn parse(text: &str) -> Result<Self, String> {
        let refuse = || {
            format!(
                "{text:?} is not an amount: write digits with at most two after the point, e.g. \"150.00\""
            )
        };
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        let well_formed = !integer.is_empty()
            && digits_only(integer)
            && digits_only(fraction)
            && (!unsigned.contains('.') || !fraction.is_empty())
            && fraction.len() <= SCALE as usize;
        if !well_formed {
            return Err(refuse());
        }
        let significant = integer.trim_start_matches('0');
        if significant.len() > MAX_INTEGER_DIGITS {
            return Err(format!(
                "{text:?} is too large: amounts have at most {MAX_INTEGER_DIGITS} digits before the point"
            ));
        }
        let value = BigDecimal::from_str(text).map_err(|_| refuse())?;
        Ok(Self(value.with_scale(SCALE)))
    }

    /// A value read from a `DECIMAL(15,2)` column.
    pub fn from_stored(value: BigDecimal) -> Self {
        Self(value.with_scale(SCALE))
    }

    pub fn zero() -> Self {
        Self(BigDecimal::from(0).with_scale(SCALE))
    }

    pub fn from_cents(cents: i64) -> Self {
        Self(BigDecimal::new(cents.into(), SCALE))
    }

    pub fn as_decimal(&self) -> &BigDecimal {
        &self.0
    }

    pub fn into_decimal(self) -> BigDecimal {
        self.0
    }

    pub fn is_positive(&self) -> bool {
        self.0.sign() == bigdecimal::num_bigint::Sign::Plus
    }

    pub fn negated(&self) -> Self {
        Self(-self.0.clone())
    }

    pub fn sum<'a>(amounts: impl IntoIterator<Item = &'a Money>) -> Self {
        let total = amounts
            .into_iter()
            .fold(BigDecimal::from(0), |total, amount| total + &amount.0);
        Self(total.with_scale(SCALE))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.with_scale(SCALE).to_plain_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_amounts_parse_and_print_with_two_digits() {
        assert_eq!(
            Money::parse("15000").map(|m| m.to_string()),
            Ok("15000.00".into())
        );
        assert_eq!(
            Money::parse("0.5").map(|m| m.to_string()),
            Ok("0.50".into())
        );
        assert_eq!(
            Money::parse("-3.25").map(|m| m.to_string()),
            Ok("-3.25".into())
        );
        assert_eq!(
            Money::parse("9999999999999.99").map(|m| m.to_string()),
            Ok("9999999999999.99".into())
        );
    }

    #[test]
    fn anything_that_would_need_rounding_or_guessing_is_refused() {
        for text in [
            "",
            "-",
            ".",
            "1.",
            ".5",
            "0.001",
            "1e3",
            "1E3",
            "NaN",
            "inf",
            "+1",
            " 1",
            "1 ",
            "1,00",
            "0x10",
            "1.2.3",
            "--1",
            "12345678901234",
            "123456789012345678901234567890",
        ] {
            assert!(Money::parse(text).is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn minus_zero_parses_as_zero_so_range_checks_see_it() {
        let parsed = Money::parse("-0").map(|m| m.is_positive());
        assert_eq!(parsed, Ok(false));
    }

    #[test]
    fn sums_are_exact() {
        let parts = [Money::parse("0.10"), Money::parse("0.20")]
            .map(|m| m.unwrap_or_else(|_| Money::zero()));
        assert_eq!(Money::sum(&parts).to_string(), "0.30");
        assert_eq!(Money::from_cents(123456).to_string(), "1234.56");
    }
}
