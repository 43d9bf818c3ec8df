//! Money without float drift: an amount of US dollars as a whole number of pico-dollars
//! (10⁻¹² USD).
//!
//! Why picos: prices are quoted in USD per million tokens with at most six decimals
//! ($0.075 / M), so one token costs a whole number of picos (75 000), and the cost of any
//! request is exact. A `u64` of picos holds $18 million, far past any key's spend in a
//! period; sums saturate rather than wrap. Owns no state.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

/// Picos in one dollar.
const PER_USD: u64 = 1_000_000_000_000;

/// An amount of US dollars, exact to the pico-dollar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(u64);

impl Usd {
    pub const ZERO: Usd = Usd(0);

    pub const fn from_picos(picos: u64) -> Usd {
        Usd(picos)
    }

    pub const fn picos(self) -> u64 {
        self.0
    }

    /// A dollar amount written as a number (config, a provider's reported cost, a usage
    /// line read back), rounded to the nearest pico. `None` unless finite, non-negative and
    /// representable.
    pub fn from_f64(usd: f64) -> Option<Usd> {
        if !usd.is_finite() || usd < 0.0 {
            return None;
        }
        let picos = (usd * PER_USD as f64).round();
        // `as` saturates; the comparison keeps $18M+ out rather than clamped.
        (picos < u64::MAX as f64).then_some(Usd(picos as u64))
    }

    /// As a float, for display and for metrics (sums stay in picos). Exact below $1000 to
    /// the pico, since f64 carries 15 significant digits.
    pub fn as_f64(self) -> f64 {
        (self.0 / PER_USD) as f64 + (self.0 % PER_USD) as f64 / PER_USD as f64
    }

    pub fn saturating_sub(self, other: Usd) -> Usd {
        Usd(self.0.saturating_sub(other.0))
    }

    /// `tokens` at `picos_per_token`.
    pub fn of_tokens(tokens: u64, picos_per_token: u64) -> Usd {
        Usd(tokens.saturating_mul(picos_per_token))
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, other: Usd) {
        *self = *self + other;
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Add::add)
    }
}

/// Plain decimal dollars with up to twelve decimals, trailing zeros dropped: `0.000123`,
/// `20`, `1.5`. Exact: written from the integer, never through a float, and without
/// `format!` (it is on every request to a key with a budget).
impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = itoa::Buffer::new();
        f.write_str(digits.format(self.0 / PER_USD))?;
        let mut frac = self.0 % PER_USD;
        if frac == 0 {
            return Ok(());
        }
        let mut text = [b'0'; 13];
        text[0] = b'.';
        for slot in text[1..].iter_mut().rev() {
            *slot = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        let end = text.iter().rposition(|&b| b != b'0').map_or(1, |i| i + 1);
        // ASCII digits and a dot: always UTF-8.
        f.write_str(std::str::from_utf8(&text[..end]).unwrap_or(""))
    }
}

/// A usage line's `cost_usd`: a JSON number (the shortest text that reads back as the same
/// float, e.g. `0.000462` or `4.5e-7`); read back it gives the same picos for any amount a
/// request can cost.
impl serde::Serialize for Usd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_exactly() {
        assert_eq!(Usd::from_picos(0).to_string(), "0");
        assert_eq!(Usd::from_picos(20 * PER_USD).to_string(), "20");
        assert_eq!(Usd::from_picos(1_500_000_000_000).to_string(), "1.5");
        assert_eq!(Usd::from_picos(123).to_string(), "0.000000000123");
        assert_eq!(Usd::from_f64(0.000123).unwrap().to_string(), "0.000123");
    }

    #[test]
    fn read_from_numbers() {
        assert_eq!(Usd::from_f64(0.01), Some(Usd::from_picos(10_000_000_000)));
        assert_eq!(Usd::from_f64(-0.01), None);
        assert_eq!(Usd::from_f64(f64::NAN), None);
        assert_eq!(Usd::from_f64(f64::INFINITY), None);
        assert_eq!(Usd::from_f64(1e30), None);
    }

    /// The usage log writes `as_f64`; reading it back gives the same picos for any cost a
    /// request can have (below $1000).
    #[test]
    fn round_trips_through_a_json_number() {
        for picos in [
            1,
            7,
            75_000,
            123_456_789_012,
            999_999_999_999_999,
            5 * PER_USD + 1,
        ] {
            let usd = Usd::from_picos(picos);
            let text = serde_json::to_string(&usd).unwrap();
            let back: f64 = serde_json::from_str(&text).unwrap();
            assert_eq!(Usd::from_f64(back), Some(usd), "{text}");
        }
    }

    /// A million requests of 37 tokens at $0.075 / M sum exactly; the same in floats drifts.
    #[test]
    fn a_million_small_costs_sum_without_drift() {
        let one = Usd::of_tokens(37, 75_000);
        let total: Usd = std::iter::repeat_n(one, 1_000_000).sum();
        assert_eq!(total, Usd::from_picos(37 * 75_000 * 1_000_000));
        assert_eq!(total.to_string(), "2.775");
        let float: f64 = std::iter::repeat_n(one.as_f64(), 1_000_000).sum();
        assert_ne!(
            float.to_string(),
            "2.775",
            "floats would have been fine after all"
        );
    }
}
