//! Token usage as the usage log records it, read from every shape an upstream reports it in:
//! an OpenAI body or stream chunk (`usage`, or `response.usage` in the Responses API), an
//! Anthropic body or `message_start` / `message_delta` event. All usage extraction lives here;
//! translators and stream readers call it.
//!
//! Counters are believed only up to [`MAX_TOKEN_COUNT`], so sums never overflow, and anything
//! that is not a non-negative integer counts as 0. Owns no state.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::cost::Usd;

/// Token counts of one exchange, as recorded in the usage log, and the cost the upstream
/// reported for it, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Every input token, those read from or written to the prompt cache included.
    pub prompt_tokens: u64,
    /// Every output token, reasoning included.
    pub completion_tokens: u64,
    /// The part of `prompt_tokens` read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// The part of `prompt_tokens` written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    /// The part of `cache_write_tokens` written to Anthropic's 1-hour cache (priced apart).
    pub cache_write_1h_tokens: u64,
    /// The cost the upstream reported itself (OpenRouter's `usage.cost`).
    pub reported_cost: Option<Usd>,
}

impl Usage {
    /// Folds in a later report of the same exchange (Anthropic's `message_start`, then
    /// `message_delta`): its counts are cumulative, so each counter keeps the larger value.
    pub fn absorb(&mut self, later: Usage) {
        self.prompt_tokens = self.prompt_tokens.max(later.prompt_tokens);
        self.completion_tokens = self.completion_tokens.max(later.completion_tokens);
        self.cache_read_tokens = self.cache_read_tokens.max(later.cache_read_tokens);
        self.cache_write_tokens = self.cache_write_tokens.max(later.cache_write_tokens);
        self.cache_write_1h_tokens = self.cache_write_1h_tokens.max(later.cache_write_1h_tokens);
        self.reported_cost = later.reported_cost.or(self.reported_cost);
    }

    /// Input tokens neither read from nor written to the cache.
    pub fn uncached_prompt_tokens(&self) -> u64 {
        self.prompt_tokens
            .saturating_sub(self.cache_read_tokens)
            .saturating_sub(self.cache_write_tokens)
    }
}

/// Usage of an OpenAI body: a `chat.completion`, a stream chunk carrying `usage`, an
/// embeddings or completions response, a Responses `response`. `None` when it has no
/// (non-null) `usage` object.
pub fn openai_usage(body: &Value) -> Option<Usage> {
    openai_usage_object(body.get("usage")?)
}

/// [`openai_usage`] of the `usage` object itself.
pub fn openai_usage_object(usage: &Value) -> Option<Usage> {
    usage.is_object().then_some(())?;
    Some(UsageCounts::deserialize(usage).ok()?.openai())
}

/// Usage of an Anthropic body: a Messages response, a `message_start` event (`message.usage`)
/// or a `message_delta` event (`usage`). Prompt tokens include cache writes and reads.
pub fn anthropic_usage(body: &Value) -> Option<Usage> {
    anthropic_usage_object(
        body.get("usage")
            .or_else(|| body.get("message")?.get("usage"))?,
    )
}

/// [`anthropic_usage`] of the `usage` object itself.
pub fn anthropic_usage_object(usage: &Value) -> Option<Usage> {
    usage.is_object().then_some(())?;
    Some(UsageCounts::deserialize(usage).ok()?.anthropic())
}

/// Largest token count believed from an upstream: sums of a few such counts can never
/// overflow (a hostile `u64::MAX` wrapped to a small count, or panicked a debug build).
pub const MAX_TOKEN_COUNT: u64 = u32::MAX as u64;

/// A token count as providers send it; anything but a non-negative integer counts as 0,
/// capped at [`MAX_TOKEN_COUNT`].
#[derive(Default, Clone, Copy)]
struct Count(u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        let n = Value::deserialize(d)?.as_u64().unwrap_or(0);
        Ok(Count(n.min(MAX_TOKEN_COUNT)))
    }
}

/// A cost as a provider reports it: a finite, non-negative number of USD, else none.
#[derive(Default, Clone, Copy)]
struct ReportedCost(Option<Usd>);

impl<'de> Deserialize<'de> for ReportedCost {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ReportedCost, D::Error> {
        let usd = Value::deserialize(d)?.as_f64().and_then(Usd::from_f64);
        Ok(ReportedCost(usd))
    }
}

/// A nested object read if it has the expected shape, else as absent (a provider's odd
/// extra never makes the whole `usage` unreadable).
struct Lenient<T>(Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Lenient<T>, D::Error> {
        Ok(Lenient(serde_json::from_value(Value::deserialize(d)?).ok()))
    }
}

/// `{"cached_tokens": n}`: OpenAI's `prompt_tokens_details`, the Responses API's
/// `input_tokens_details`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Details {
    cached_tokens: Count,
}

/// Anthropic's split of cache writes by lifetime.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CacheCreation {
    ephemeral_5m_input_tokens: Count,
    ephemeral_1h_input_tokens: Count,
}

/// The counters of a `usage` object any supported API uses; any other field is skipped
/// unread. One reader for every shape: OpenAI chat and completions, the Responses API,
/// Anthropic, and the OpenAI-compatible servers' additions (OpenRouter's `cost`, DeepSeek's
/// `prompt_cache_hit_tokens`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct UsageCounts {
    prompt_tokens: Count,
    completion_tokens: Count,
    input_tokens: Count,
    output_tokens: Count,
    prompt_tokens_details: Lenient<Details>,
    input_tokens_details: Lenient<Details>,
    prompt_cache_hit_tokens: Count,
    cache_creation_input_tokens: Count,
    cache_read_input_tokens: Count,
    cache_creation: Lenient<CacheCreation>,
    cost: ReportedCost,
}

impl UsageCounts {
    /// OpenAI's reading: `prompt_tokens` (or the Responses API's `input_tokens`) counts every
    /// input token, the cached ones among them.
    fn openai(&self) -> Usage {
        let prompt = self.prompt_tokens.0.max(self.input_tokens.0);
        let cached = [&self.prompt_tokens_details.0, &self.input_tokens_details.0]
            .into_iter()
            .flatten()
            .map(|d| d.cached_tokens.0)
            .max()
            .unwrap_or(0)
            .max(self.prompt_cache_hit_tokens.0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: self.completion_tokens.0.max(self.output_tokens.0),
            cache_read_tokens: cached.min(prompt),
            cache_write_tokens: 0,
            cache_write_1h_tokens: 0,
            reported_cost: self.cost.0,
        }
    }

    /// Anthropic's reading: `input_tokens` counts only the tokens after the last cache
    /// breakpoint; cache reads and writes come on top.
    fn anthropic(&self) -> Usage {
        let written = self.cache_creation_input_tokens.0;
        let written_1h = self
            .cache_creation
            .0
            .as_ref()
            .map_or(0, |c| c.ephemeral_1h_input_tokens.0);
        // When only the split is given, its sum is the total.
        let split = self.cache_creation.0.as_ref().map_or(0, |c| {
            c.ephemeral_5m_input_tokens.0 + c.ephemeral_1h_input_tokens.0
        });
        let written = written.max(split);
        let read = self.cache_read_input_tokens.0;
        Usage {
            prompt_tokens: self.input_tokens.0 + written + read,
            completion_tokens: self.output_tokens.0,
            cache_read_tokens: read,
            cache_write_tokens: written,
            cache_write_1h_tokens: written_1h.min(written),
            reported_cost: self.cost.0,
        }
    }
}

/// [`openai_usage_object`] (or, with `anthropic`, [`anthropic_usage_object`]) of a `usage`
/// object's JSON text, read without building it as a `Value` (a map and a string per
/// field, on every non-streamed answer). `None` unless it is an object.
pub fn usage_from_json(raw: &str, anthropic: bool) -> Option<Usage> {
    if !raw.trim_start().starts_with('{') {
        return None;
    }
    let counts: UsageCounts = serde_json::from_str(raw).ok()?;
    Some(if anthropic {
        counts.anthropic()
    } else {
        counts.openai()
    })
}

/// Usage of a whole non-streamed upstream body, read without building it as a `Value`: its
/// `usage` object, or the Responses API's `response.usage`. `Err` when the body is not JSON
/// (the caller passes the body on unchanged only once it is known to be JSON).
pub fn body_usage(body: &[u8], anthropic: bool) -> Result<Option<Usage>, serde_json::Error> {
    #[derive(Deserialize)]
    struct UsageOnly<'a> {
        #[serde(borrow, default)]
        usage: Option<&'a RawValue>,
        #[serde(borrow, default)]
        response: Option<Nested<'a>>,
    }
    #[derive(Deserialize)]
    struct Nested<'a> {
        #[serde(borrow, default)]
        usage: Option<&'a RawValue>,
    }
    let probe: UsageOnly<'_> = serde_json::from_slice(body)?;
    Ok(probe
        .usage
        .or(probe.response.and_then(|r| r.usage))
        .and_then(|u| usage_from_json(u.get(), anthropic)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_from_json_reads_as_the_value_helpers_do() {
        let cases = [
            json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                   "prompt_tokens_details": {"cached_tokens": 1}}),
            json!({"input_tokens": 5, "output_tokens": 6, "cache_creation_input_tokens": 2,
                   "cache_read_input_tokens": 1, "server_tool_use": {"web_search_requests": 0}}),
            json!({"input_tokens": 5, "prompt_tokens": 9, "output_tokens": 2}),
            json!({"prompt_tokens": -1, "completion_tokens": 1.5, "input_tokens": null,
                   "output_tokens": "7"}),
            json!({}),
            json!([1, 2]),
            json!(null),
            json!(12),
            json!("usage"),
        ];
        for case in cases {
            let raw = case.to_string();
            assert_eq!(
                usage_from_json(&raw, false),
                openai_usage_object(&case),
                "{raw}"
            );
            assert_eq!(
                usage_from_json(&raw, true),
                anthropic_usage_object(&case),
                "{raw}"
            );
        }
    }

    #[test]
    fn usage_helpers_read_all_shapes() {
        let o = json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}});
        assert_eq!(
            openai_usage(&o),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                ..Usage::default()
            })
        );
        assert_eq!(openai_usage(&json!({"usage": null})), None);
        let start = json!({"type": "message_start", "message": {"usage": {"input_tokens": 5,
            "cache_read_input_tokens": 2, "output_tokens": 1}}});
        assert_eq!(
            anthropic_usage(&start),
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 1,
                cache_read_tokens: 2,
                ..Usage::default()
            })
        );
        let delta = json!({"type": "message_delta", "usage": {"output_tokens": 9}});
        assert_eq!(
            anthropic_usage(&delta).map(|u| u.completion_tokens),
            Some(9)
        );
    }
}
