//! Token usage ([`Usage`], defined beside the prices in [`crate::cost`]) read from every shape an
//! upstream reports it in:
//! an OpenAI body or stream chunk (`usage`, or `response.usage` in the Responses API), an
//! Anthropic body or `message_start` / `message_delta` event. All usage extraction lives here;
//! translators and stream readers call it.
//!
//! Counters are believed only up to [`MAX_TOKEN_COUNT`], so sums never overflow, and anything
//! that is not a non-negative integer counts as 0. Owns no state.

use serde::Deserialize;

use super::scan::{ScanError, ScanErrorKind, Strings, members};
use serde_json::Value;

use crate::cost::{Usage, Usd};

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

/// A nested object of counters, read in one pass without building it: the counters named
/// by `N` (see [`Fields`]), each as [`Count`] reads it; any other field is skipped, and a
/// value that is not an object counts as absent (a provider's odd extra never makes the
/// whole `usage` unreadable).
struct Counters<N: Fields>(Option<[u64; 2]>, std::marker::PhantomData<N>);

/// The (at most two) counter names of a [`Counters`] object.
trait Fields {
    const NAMES: [&'static str; 2];
}

impl<N: Fields> Default for Counters<N> {
    fn default() -> Self {
        Counters(None, std::marker::PhantomData)
    }
}

impl<N: Fields> Counters<N> {
    fn get(&self, i: usize) -> u64 {
        self.0.map_or(0, |c| c[i])
    }
}

impl<'de, N: Fields> Deserialize<'de> for Counters<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Counters<N>, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct V<N>(std::marker::PhantomData<N>);
        impl<'de, N: Fields> Visitor<'de> for V<N> {
            type Value = Option<[u64; 2]>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of token counts")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = [0; 2];
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match N::NAMES.iter().position(|n| *n == key) {
                        Some(i) => out[i] = map.next_value::<Count>()?.0,
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Some(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        let counts = d.deserialize_any(V::<N>(std::marker::PhantomData))?;
        Ok(Counters(counts, std::marker::PhantomData))
    }
}

/// `{"cached_tokens": n}`: OpenAI's `prompt_tokens_details`, the Responses API's
/// `input_tokens_details`.
struct Details;

impl Fields for Details {
    const NAMES: [&'static str; 2] = ["cached_tokens", ""];
}

/// Anthropic's split of cache writes by lifetime.
struct CacheCreation;

impl Fields for CacheCreation {
    const NAMES: [&'static str; 2] = ["ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"];
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
    prompt_tokens_details: Counters<Details>,
    input_tokens_details: Counters<Details>,
    prompt_cache_hit_tokens: Count,
    cache_creation_input_tokens: Count,
    cache_read_input_tokens: Count,
    cache_creation: Counters<CacheCreation>,
    cost: ReportedCost,
}

impl UsageCounts {
    /// OpenAI's reading: `prompt_tokens` (or the Responses API's `input_tokens`) counts every
    /// input token, the cached ones among them.
    fn openai(&self) -> Usage {
        let prompt = self.prompt_tokens.0.max(self.input_tokens.0);
        let cached = self
            .prompt_tokens_details
            .get(0)
            .max(self.input_tokens_details.get(0))
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
        let written_1h = self.cache_creation.get(1);
        // When only the split is given, its sum is the total.
        let split = self.cache_creation.get(0) + written_1h;
        let written = self.cache_creation_input_tokens.0.max(split);
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
/// `usage` object, or the Responses API's `response.usage`. `Err` when the body is not one
/// JSON object (the caller passes the body on unchanged only once it is known to be JSON).
/// The body is checked whole by the strict scanner, which also finds the members: parsing it
/// into a struct with serde_json cost a tenth of a small request's instructions.
pub fn body_usage(body: &[u8], anthropic: bool) -> Result<Option<Usage>, ScanError> {
    let [usage, response] = members(body, ["usage", "response"], Strings::Strict)?;
    // Both values must be text, as serde_json's raw values were (the scanner checks no UTF-8
    // inside strings).
    let text = |span: Option<std::ops::Range<usize>>| {
        span.map(|r| std::str::from_utf8(&body[r]))
            .transpose()
            .map_err(|e| ScanError {
                kind: ScanErrorKind::BadString,
                at: e.valid_up_to(),
            })
    };
    let (usage, response) = (text(usage)?, text(response)?);
    let nested = || {
        let response = response?;
        let [usage] = members(response.as_bytes(), ["usage"], Strings::Strict).ok()?;
        response.get(usage?)
    };
    let Some(text) = usage.or_else(nested) else {
        return Ok(None);
    };
    Ok(usage_from_json(text, anthropic))
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

    /// An odd nested value (a string, an array, null, a number) reads as absent: the rest of
    /// the usage still counts.
    #[test]
    fn odd_details_do_not_hide_the_counts() {
        for odd in [
            json!("x"),
            json!([1, {"cached_tokens": 9}]),
            json!(null),
            json!(7),
        ] {
            let u = json!({"prompt_tokens": 10, "completion_tokens": 2,
                "prompt_tokens_details": odd, "cache_creation": odd});
            let got = usage_from_json(&u.to_string(), false).unwrap();
            assert_eq!((got.prompt_tokens, got.cache_read_tokens), (10, 0), "{u}");
            let got = usage_from_json(&u.to_string(), true).unwrap();
            assert_eq!(got.cache_write_tokens, 0, "{u}");
        }
        let u = json!({"input_tokens": 1, "cache_creation": {"x": {"y": 1},
            "ephemeral_1h_input_tokens": 4, "ephemeral_5m_input_tokens": "3"}});
        let got = usage_from_json(&u.to_string(), true).unwrap();
        assert_eq!((got.cache_write_tokens, got.cache_write_1h_tokens), (4, 4));
    }

    #[test]
    fn body_usage_finds_top_level_and_responses_usage_and_refuses_non_json() {
        let openai = br#"{"id":"x","choices":[{"message":{"content":"\"usage\":{}"}}],
            "usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        let got = body_usage(openai, false).unwrap().unwrap();
        assert_eq!((got.prompt_tokens, got.completion_tokens), (3, 4));
        let responses = br#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":5,"output_tokens":6}}}"#;
        let got = body_usage(responses, false).unwrap().unwrap();
        assert_eq!((got.prompt_tokens, got.completion_tokens), (5, 6));
        let anthropic = br#"{"type":"message","usage":{"input_tokens":2,"output_tokens":1,"cache_read_input_tokens":1}}"#;
        assert_eq!(
            body_usage(anthropic, true)
                .unwrap()
                .unwrap()
                .cache_read_tokens,
            1
        );
        for none in [
            &br#"{"choices":[]}"#[..],
            br#"{"response":null}"#,
            br#"{"usage":null}"#,
        ] {
            assert_eq!(body_usage(none, false).unwrap(), None);
        }
        for bad in [
            &b"not json"[..],
            b"[1]",
            br#"{"usage":{}"#,
            br#"{"usage":1,"usage":2}"#,
            b"{\"a\":\"\x01\"}",
            b"{\"usage\":{\"a\xff\":1}}",
        ] {
            assert!(body_usage(bad, false).is_err());
        }
    }
}
