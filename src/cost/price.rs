//! Prices and the cost of one request.
//!
//! A price is quoted in USD per million tokens; stored as picos per token (the same digits:
//! $0.075 / M is 75 000 picos per token), so a request's cost is an exact integer:
//!
//! ```text
//! cost = (prompt − cache_read − cache_write) × input
//!      + cache_read × cache_read
//!      + (cache_write − cache_write_1h) × cache_write + cache_write_1h × cache_write_1h
//!      + completion × output
//! ```
//!
//! with the rates of the price's tier when the request's prompt (all input tokens, cached
//! ones included) is above the tier's threshold. Which price applies is
//! [`super::pricing`]'s decision. Owns no state.

use super::{Usage, Usd};

/// Per-token rates, in picos per token (USD per million tokens × 10⁶).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub cache_write_1h: u64,
}

/// A model's price: its rates, and optionally other rates for requests whose prompt is
/// longer than a threshold (e.g. a long-context surcharge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub base: Rates,
    pub tier: Option<Tier>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// The tier applies when a request's prompt tokens exceed this.
    pub above_input_tokens: u64,
    pub rates: Rates,
}

/// USD-per-million-token figures as written in a config or the built-in table; the cache
/// prices default as the contract says (reads and writes to `input`, 1-hour writes to
/// `cache_write`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RatesUsd {
    pub input: f64,
    pub output: f64,
    pub cache_read: Option<f64>,
    pub cache_write: Option<f64>,
    pub cache_write_1h: Option<f64>,
}

impl RatesUsd {
    /// The rates in picos per token (figures with more than six decimals are rounded to the
    /// nearest pico per token); `Err` names the first figure that is negative or not a
    /// number.
    pub fn to_rates(self) -> Result<Rates, &'static str> {
        let per_token = |usd_per_m: f64, name: &'static str| {
            // USD per million tokens × 10⁶ = picos per token.
            Usd::from_f64(usd_per_m / 1_000_000.0)
                .map(Usd::picos)
                .ok_or(name)
        };
        let input = per_token(self.input, "input")?;
        let cache_write = match self.cache_write {
            Some(v) => per_token(v, "cache_write")?,
            None => input,
        };
        Ok(Rates {
            input,
            output: per_token(self.output, "output")?,
            cache_read: match self.cache_read {
                Some(v) => per_token(v, "cache_read")?,
                None => input,
            },
            cache_write,
            cache_write_1h: match self.cache_write_1h {
                Some(v) => per_token(v, "cache_write_1h")?,
                None => cache_write,
            },
        })
    }
}

impl Price {
    /// What `usage` costs at this price.
    pub fn cost(&self, usage: &Usage) -> Usd {
        let rates = match self.tier {
            Some(tier) if usage.prompt_tokens > tier.above_input_tokens => tier.rates,
            _ => self.base,
        };
        let written_1h = usage.cache_write_1h_tokens.min(usage.cache_write_tokens);
        Usd::of_tokens(usage.uncached_prompt_tokens(), rates.input)
            + Usd::of_tokens(usage.cache_read_tokens, rates.cache_read)
            + Usd::of_tokens(usage.cache_write_tokens - written_1h, rates.cache_write)
            + Usd::of_tokens(written_1h, rates.cache_write_1h)
            + Usd::of_tokens(usage.completion_tokens, rates.output)
    }
}

/// One `[[prices]]` entry: a glob over `provider/upstream_model` and its price.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceRule {
    pub pattern: String,
    pub price: Price,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(input: f64, output: f64, read: Option<f64>, write: Option<f64>) -> Price {
        let rates = RatesUsd {
            input,
            output,
            cache_read: read,
            cache_write: write,
            cache_write_1h: None,
        };
        Price {
            base: rates.to_rates().unwrap(),
            tier: None,
        }
    }

    fn usage(prompt: u64, completion: u64, read: u64, write: u64, write_1h: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cache_read_tokens: read,
            cache_write_tokens: write,
            cache_write_1h_tokens: write_1h,
            reported_cost: None,
        }
    }

    /// Anthropic: reads at 0.1×, 5-minute writes at 1.25×, 1-hour writes at 2× input.
    #[test]
    fn anthropic_cache_reads_and_writes() {
        let p = Price {
            base: RatesUsd {
                input: 3.0,
                output: 15.0,
                cache_read: Some(0.30),
                cache_write: Some(3.75),
                cache_write_1h: Some(6.0),
            }
            .to_rates()
            .unwrap(),
            tier: None,
        };
        // 1000 uncached + 50 000 read + 2000 written (500 of them for an hour), 800 out.
        let u = usage(53_000, 800, 50_000, 2_000, 500);
        let expected =
            1_000.0 * 3.0 + 50_000.0 * 0.30 + 1_500.0 * 3.75 + 500.0 * 6.0 + 800.0 * 15.0;
        assert_eq!(p.cost(&u), Usd::from_f64(expected / 1e6).unwrap());
        assert_eq!(p.cost(&u).to_string(), "0.038625");
    }

    /// OpenAI: `cached_tokens` at the cached-input price, the rest at input.
    #[test]
    fn openai_cached_tokens() {
        let p = price(0.15, 0.60, Some(0.075), None);
        let u = usage(10_000, 1_000, 4_000, 0, 0);
        assert_eq!(p.cost(&u).to_string(), "0.0018"); // 6000×0.15 + 4000×0.075 + 1000×0.60
    }

    #[test]
    fn cache_prices_default_to_input() {
        let p = price(2.0, 8.0, None, None);
        assert_eq!(p.base.cache_read, p.base.input);
        assert_eq!(p.base.cache_write, p.base.input);
        assert_eq!(p.base.cache_write_1h, p.base.input);
        let u = usage(1_000, 0, 300, 200, 0);
        assert_eq!(p.cost(&u), Usd::of_tokens(1_000, 2_000_000));
    }

    #[test]
    fn a_tier_applies_past_its_threshold() {
        let mut p = price(1.25, 10.0, None, None);
        p.tier = Some(Tier {
            above_input_tokens: 200_000,
            rates: RatesUsd {
                input: 2.5,
                output: 15.0,
                ..RatesUsd::default()
            }
            .to_rates()
            .unwrap(),
        });
        assert_eq!(p.cost(&usage(200_000, 1_000, 0, 0, 0)).to_string(), "0.26");
        assert_eq!(
            p.cost(&usage(200_001, 1_000, 0, 0, 0)).to_string(),
            "0.5150025"
        );
    }

    #[test]
    fn figures_that_are_not_prices_are_refused() {
        let bad = RatesUsd {
            input: -1.0,
            ..RatesUsd::default()
        };
        assert_eq!(bad.to_rates(), Err("input"));
        let nan = RatesUsd {
            output: f64::NAN,
            ..RatesUsd::default()
        };
        assert_eq!(nan.to_rates(), Err("output"));
    }
}
