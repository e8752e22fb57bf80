//! Money: amounts in millionths of the collective's token, so that sums are
//! exact.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;

/// Millionths per token.
pub const MICROS: u64 = 1_000_000;

/// An amount of the collective's token, in millionths.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or `None` if it would go below zero.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.0 / MICROS, self.0 % MICROS)
    }
}

impl FromStr for Amount {
    type Err = ProtocolError;

    /// Parses a decimal with at most six places: `12`, `0.005`, `3.250000`.
    fn from_str(text: &str) -> Result<Amount, ProtocolError> {
        let bad = || {
            ProtocolError::Malformed(format!(
                "'{text}' is not an amount (a non-negative decimal with at most 6 places)"
            ))
        };
        let (whole, frac) = match text.trim().split_once('.') {
            Some((w, f)) => (w, f),
            None => (text.trim(), ""),
        };
        if whole.is_empty() && frac.is_empty()
            || frac.len() > 6
            || !whole.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let frac: u64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
        whole
            .checked_mul(MICROS)
            .and_then(|w| w.checked_add(frac))
            .map(Amount)
            .ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        assert_eq!("0.005".parse::<Amount>().unwrap(), Amount(5_000));
        assert_eq!("12".parse::<Amount>().unwrap(), Amount(12_000_000));
        assert_eq!(Amount(1_250_000).to_string(), "1.250000");
        for bad in ["", ".", "-1", "1.0000001", "1e3", "x"] {
            assert!(bad.parse::<Amount>().is_err(), "{bad}");
        }
    }
}

/// Property-based fuzzing of amounts as people type them.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use c2ssi_fuzzing::config;

    proptest! {
        #![proptest_config(config())]

        /// Whatever parses is the exact decimal typed (checked in `u128`),
        /// and prints back to itself.
        #[test]
        fn amounts_parse_exactly_or_not_at_all(text in prop_oneof![
            ".*",
            " *[0-9]{0,22}(\\.[0-9]{0,8})? *",
            "[0-9.+-e]{0,12}",
        ]) {
            match text.parse::<Amount>() {
                Ok(amount) => {
                    let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
                    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().expect("digits") };
                    let frac: u128 = format!("{frac:0<6}").parse().expect("digits");
                    prop_assert_eq!(u128::from(amount.0), whole * u128::from(MICROS) + frac);
                    prop_assert_eq!(amount.to_string().parse::<Amount>(), Ok(amount));
                }
                Err(e) => prop_assert!(matches!(e, ProtocolError::Malformed(_)), "{e:?}"),
            }
        }
    }
}
