//! The built-in price table: list prices of the major providers' current models, in one data
//! file compiled into the binary (`prices.toml` beside this file), each entry with the page
//! it was taken from and the date. `[[prices]]` in the config overrides any of it.
//!
//! An entry's glob is matched against the upstream model name, then against the part after
//! its last `/` (so OpenRouter's `openai/gpt-4o-mini` finds `gpt-4o-mini*`); the first
//! match wins. State owned: the parsed table, built on first use.

use std::sync::LazyLock;

use serde::Deserialize;

use super::price::{Price, RatesUsd, Tier};
use crate::glob::glob_match;

/// The data file, as compiled in.
const TABLE: &str = include_str!("prices.toml");

/// One built-in price.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Whose list price it is.
    pub provider: String,
    /// Glob over the upstream model name.
    pub pattern: String,
    pub price: Price,
    /// The pricing page it was taken from, and when.
    pub source: String,
    pub taken: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    model: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    provider: String,
    #[serde(rename = "match")]
    pattern: String,
    #[serde(flatten)]
    rates: RawRates,
    tier: Option<RawTier>,
    source: String,
    taken: String,
}

#[derive(Deserialize)]
struct RawRates {
    input: f64,
    output: f64,
    cache_read: Option<f64>,
    cache_write: Option<f64>,
    cache_write_1h: Option<f64>,
}

#[derive(Deserialize)]
struct RawTier {
    above_input_tokens: u64,
    #[serde(flatten)]
    rates: RawRates,
}

impl RawRates {
    fn usd(&self) -> RatesUsd {
        RatesUsd {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
            cache_write_1h: self.cache_write_1h,
        }
    }
}

/// The table, parsed; a unit test proves the compiled-in file parses whole.
fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let raw: RawTable = toml::from_str(text).map_err(|e| e.to_string())?;
    raw.model
        .into_iter()
        .map(|e| {
            let bad = |field| format!("{}: bad {field}", e.pattern);
            let tier = match &e.tier {
                Some(t) => Some(Tier {
                    above_input_tokens: t.above_input_tokens,
                    rates: t.rates.usd().to_rates().map_err(bad)?,
                }),
                None => None,
            };
            Ok(Entry {
                price: Price {
                    base: e.rates.usd().to_rates().map_err(bad)?,
                    tier,
                },
                provider: e.provider,
                pattern: e.pattern,
                source: e.source,
                taken: e.taken,
            })
        })
        .collect()
}

static ENTRIES: LazyLock<Vec<Entry>> = LazyLock::new(|| {
    parse(TABLE).unwrap_or_else(|e| {
        log::error!("the built-in price table does not parse ({e}); no built-in prices");
        Vec::new()
    })
});

/// Every built-in entry, in matching order.
pub fn entries() -> &'static [Entry] {
    &ENTRIES
}

/// The built-in entry for an upstream model, if any.
pub fn find(upstream_model: &str) -> Option<&'static Entry> {
    let tail = upstream_model.rsplit_once('/').map(|(_, tail)| tail);
    entries().iter().find(|e| {
        glob_match(&e.pattern, upstream_model) || tail.is_some_and(|t| glob_match(&e.pattern, t))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_table_parses_whole() {
        let entries = parse(TABLE).unwrap();
        assert!(entries.len() > 40, "{}", entries.len());
        for e in &entries {
            assert!(e.source.starts_with("https://"), "{}", e.pattern);
            assert!(e.taken.len() == 10, "{}", e.pattern);
            assert!(e.price.base.output > 0, "{}", e.pattern);
        }
        for provider in [
            "openai",
            "anthropic",
            "gemini",
            "mistral",
            "deepseek",
            "xai",
            "groq",
        ] {
            assert!(
                entries.iter().any(|e| e.provider == provider),
                "no {provider} prices"
            );
        }
    }

    /// A specific entry is never hidden behind a general one listed before it.
    #[test]
    fn no_entry_is_shadowed() {
        let entries = parse(TABLE).unwrap();
        for (i, later) in entries.iter().enumerate() {
            // The pattern itself, with its wildcards read as text, is a model it must match.
            let sample = later.pattern.replace(['*', '?'], "x");
            if let Some(first) = entries[..i]
                .iter()
                .find(|e| glob_match(&e.pattern, &sample))
            {
                panic!("{} is shadowed by {}", later.pattern, first.pattern);
            }
        }
    }

    #[test]
    fn openrouter_names_find_the_model_after_the_slash() {
        let direct = find("gpt-4o-mini").map(|e| e.pattern.clone());
        assert!(direct.is_some());
        assert_eq!(
            find("openai/gpt-4o-mini").map(|e| e.pattern.clone()),
            direct
        );
        assert!(find("my-own-finetune").is_none());
    }
}
