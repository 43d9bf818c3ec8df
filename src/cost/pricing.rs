//! Which price applies to a target's answers, in the contract's order: the first
//! `[[prices]]` entry whose glob matches `provider/upstream_model`; else a cost the upstream
//! reported itself (OpenRouter's `usage.cost`); else the first built-in entry
//! ([`super::builtin`]) for the upstream model; else unknown (`None`, written `null`, never
//! 0). The built-in `mock` provider is free unless a `[[prices]]` entry names it. The part
//! that depends only on the config ([`Pricing`]) is resolved once per target when the config
//! loads. Owns no state.

use super::price::{Price, PriceRule};
use super::{Usage, Usd};
use crate::glob::glob_match;

/// Where a request's price came from (the usage line records only the cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Config,
    Upstream,
    BuiltIn,
    Free,
}

/// Who answered a request: the provider's name and the model it was sent, and whether it is
/// the built-in `mock` (free).
#[derive(Debug, Clone, Copy)]
pub struct Answerer<'a> {
    pub provider: &'a str,
    pub upstream_model: &'a str,
    pub mock: bool,
}

/// The part of the price decision that depends only on the config: resolved once per
/// target when the config loads (no glob runs on a request), finished per request by
/// [`Pricing::cost`], which may still find a cost the upstream reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pricing {
    /// A `[[prices]]` entry matched.
    Config(Price),
    /// The built-in `mock`, with no `[[prices]]` entry: free.
    Free,
    /// Only the built-in table's price, if it has one: an upstream's own report comes first.
    BuiltIn(Option<&'static Price>),
}

impl Pricing {
    /// The contract's order: `[[prices]]`, then (the mock is free), then the upstream's own
    /// cost, then the built-in table.
    pub fn resolve(overrides: &[PriceRule], by: Answerer<'_>) -> Pricing {
        let Answerer {
            provider,
            upstream_model,
            mock,
        } = by;
        if !overrides.is_empty() {
            let name = format!("{provider}/{upstream_model}");
            if let Some(rule) = overrides.iter().find(|r| glob_match(&r.pattern, &name)) {
                return Pricing::Config(rule.price);
            }
        }
        if mock {
            // Free unless a `[[prices]]` entry prices it (a demo of what costs would look like).
            return Pricing::Free;
        }
        Pricing::BuiltIn(super::builtin::find(upstream_model).map(|e| &e.price))
    }

    /// What `usage` costs: `None` when no price is known.
    pub fn cost(&self, usage: &Usage) -> Option<(Usd, Source)> {
        match self {
            Pricing::Config(price) => Some((price.cost(usage), Source::Config)),
            Pricing::Free => Some((Usd::ZERO, Source::Free)),
            Pricing::BuiltIn(price) => match usage.reported_cost {
                Some(reported) => Some((reported, Source::Upstream)),
                None => price.map(|p| (p.cost(usage), Source::BuiltIn)),
            },
        }
    }
}

/// The cost of a request, with the config's `[[prices]]` overrides: `None` when no price is
/// known. ([`Pricing::resolve`] then [`Pricing::cost`].)
pub fn cost_of(overrides: &[PriceRule], by: Answerer<'_>, usage: &Usage) -> Option<(Usd, Source)> {
    Pricing::resolve(overrides, by).cost(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::price::RatesUsd;

    fn price(input: f64, output: f64) -> Price {
        let rates = RatesUsd {
            input,
            output,
            ..RatesUsd::default()
        };
        Price {
            base: rates.to_rates().unwrap(),
            tier: None,
        }
    }

    fn usage(prompt: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            ..Usage::default()
        }
    }

    #[test]
    fn precedence_is_config_then_reported_then_built_in() {
        let rule = PriceRule {
            pattern: "oa/gpt-4o-mini*".into(),
            price: price(1.0, 1.0),
        };
        let mut u = usage(1_000_000, 0);
        let of = |overrides: &[PriceRule], provider: &str, u: &Usage| {
            let by = Answerer {
                provider,
                upstream_model: "gpt-4o-mini",
                mock: false,
            };
            cost_of(overrides, by, u)
        };
        assert_eq!(
            of(std::slice::from_ref(&rule), "oa", &u),
            Some((Usd::from_f64(1.0).unwrap(), Source::Config))
        );
        u.reported_cost = Usd::from_f64(0.42);
        assert_eq!(
            of(std::slice::from_ref(&rule), "oa", &u),
            Some((Usd::from_f64(1.0).unwrap(), Source::Config))
        );
        assert_eq!(
            of(std::slice::from_ref(&rule), "other", &u),
            Some((Usd::from_f64(0.42).unwrap(), Source::Upstream))
        );
        u.reported_cost = None;
        assert!(matches!(of(&[], "oa", &u), Some((_, Source::BuiltIn))));
    }

    #[test]
    fn unknown_models_have_no_cost_and_mock_is_free() {
        let u = usage(100, 100);
        let mut by = Answerer {
            provider: "local",
            upstream_model: "my-finetune",
            mock: false,
        };
        assert_eq!(cost_of(&[], by, &u), None);
        by.mock = true;
        assert_eq!(cost_of(&[], by, &u), Some((Usd::ZERO, Source::Free)));
    }
}
